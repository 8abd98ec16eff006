"""Who is browsing: the browser sessions of the memory browser, their bearer tokens, and their CSRF tokens.

Without configured tokens the browser serves only on loopback, for the users its operator named at start. With
tokens, a person signs in with one (checked by the HTTP server's verifier on every request, so a revoked token stops
working at once) and acts only as that token may. Every form carries a token derived from the browser session, and
a POST without the right one is refused: another site cannot make the browser submit a form here.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from engram.auth.principal import Access, Principal
from engram.auth.verifier import EngramTokenVerifier, principal_of
from engram.core.errors import AccessDenied

#: The browser-session cookie (an opaque random id; the token it signed in with stays on the server).
COOKIE = "engram_ui"
#: Most browser sessions held at once; the oldest is dropped beyond it (its browser signs in again).
MAX_SESSIONS = 1000


@dataclass(frozen=True)
class Viewer:
    """The person browsing: the local operator (tokenless, limited to the users named at start) or a token."""

    principal: Principal | None
    local_users: tuple[str, ...] = ()

    @property
    def operator(self) -> bool:
        """Whether this is the tokenless local operator, or a token with the admin scope."""
        return self.principal is None or "admin" in self.principal.scopes

    def users(self) -> list[str]:
        """The users this viewer may pick from (an admin token may name any user)."""
        if self.principal is None:
            return list(self.local_users)
        return sorted(self.principal.users)

    def acting_for(self, user_id: str | None, access: Access) -> tuple[str, str | None]:
        """The (user, agent) a request for `user_id` acts as, or AccessDenied saying why it may not."""
        if self.principal is not None:
            return self.principal.acting_for(user_id or None, None, access)
        if not self.local_users:
            raise AccessDenied("no user to show: start `engram ui` with --user (or set ENGRAM_DEFAULT_USER).")
        chosen = user_id or self.local_users[0]
        if chosen not in self.local_users:
            raise AccessDenied(
                "this memory browser serves only the users it was started for (engram ui --user ...); "
                "restart it naming this user, or sign in with a token."
            )
        return chosen, None


class BrowserSessions:
    """Browser sessions by their cookie id: the token each signed in with, and each one's CSRF token."""

    def __init__(self, verifier: EngramTokenVerifier | None, local_users: Sequence[str]) -> None:
        self._verifier = verifier
        self._local_users = tuple(dict.fromkeys(local_users))
        self._tokens: OrderedDict[str, str] = OrderedDict()
        self._key = secrets.token_bytes(32)

    @property
    def tokenless(self) -> bool:
        """Whether the browser serves without sign-in (no token is configured; loopback only)."""
        return self._verifier is None

    @staticmethod
    def new_id() -> str:
        """A fresh, unguessable browser-session id."""
        return secrets.token_urlsafe(32)

    def csrf_token(self, session_id: str) -> str:
        """The token every form of this browser session carries (derived, so nothing is stored per form)."""
        return hmac.new(self._key, session_id.encode(), hashlib.sha256).hexdigest()

    def csrf_valid(self, session_id: str | None, presented: str | None) -> bool:
        """Whether a POST came from one of this server's own forms in the same browser session."""
        if not session_id or not presented:
            return False
        return hmac.compare_digest(self.csrf_token(session_id), presented)

    async def sign_in(self, session_id: str, token: str) -> bool:
        """Check `token` and bind it to the browser session; False (and nothing bound) if it is not valid."""
        if self._verifier is None or await self._verifier.verify_token(token.strip()) is None:
            return False
        self._tokens[session_id] = token.strip()
        self._tokens.move_to_end(session_id)
        while len(self._tokens) > MAX_SESSIONS:
            self._tokens.popitem(last=False)
        return True

    def sign_out(self, session_id: str | None) -> None:
        """Forget the token of a browser session."""
        if session_id:
            self._tokens.pop(session_id, None)

    async def viewer(self, session_id: str | None) -> Viewer | None:
        """Who this browser session is, or None if it must sign in (no token, or one no longer valid)."""
        if self._verifier is None:
            return Viewer(principal=None, local_users=self._local_users)
        token = self._tokens.get(session_id or "")
        if token is None:
            return None
        verified = await self._verifier.verify_token(token)
        if verified is None:
            self.sign_out(session_id)  # expired or revoked since sign-in
            return None
        return Viewer(principal=principal_of(verified))
