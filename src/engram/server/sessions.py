"""Limits on streamable-HTTP sessions: at most so many per token and in all, and idle ones end.

The SDK's session manager keeps every handshake-era session in memory until the client deletes it; its own idle
timeout runs on the event loop's clock, which tests cannot move. Engram admits sessions in front of it (per token
and in all, with a message naming the setting) and ends idle ones itself, on an injectable clock.

This reads two private members of `StreamableHTTPSessionManager` (mcp 2.3): `_server_instances` (session id ->
transport) and `_session_owners` (session id -> the principal that opened it), and calls its `_discard_session`,
the same call its own idle timeout makes. tests/test_http_sessions.py fails if an SDK upgrade changes them.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import anyio
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import principal_components
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

Owner = tuple[str, str | None, str | None]
_SESSION_HEADER = MCP_SESSION_ID_HEADER.lower().encode()
_VERSION_HEADER = b"mcp-protocol-version"


def _owner_key(owner: object) -> Owner | None:
    if isinstance(owner, dict):
        return (str(owner.get("client_id")), owner.get("issuer"), owner.get("subject"))
    return None


class SessionLimits:
    """Admission of new sessions and the end of idle ones, for one app's session manager."""

    def __init__(
        self,
        manager: StreamableHTTPSessionManager,
        *,
        max_sessions: int,
        per_token: int,
        idle_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._manager = manager
        self.max_sessions = max_sessions
        self.per_token = per_token
        self.idle_seconds = idle_seconds
        self._clock = clock
        self._last_active: dict[str, float] = {}
        self._busy: Counter[str] = Counter()
        # Openings admitted but not yet answered: counted so that concurrent openings cannot pass a cap together.
        self._opening: Counter[Owner | None] = Counter()

    def open_sessions(self, owner: Owner | None = None) -> int:
        """Sessions open now, in all or of one principal."""
        if owner is None:
            return len(self._manager._server_instances)
        return sum(1 for held in self._manager._session_owners.values() if _owner_key(held) == owner)

    def refusal(self, owner: Owner | None) -> tuple[int, str] | None:
        """Why a new session for `owner` may not open now (HTTP status and a one-line message), or None."""
        opening_all = sum(self._opening.values())
        if self.open_sessions() + opening_all >= self.max_sessions:
            return 503, (
                f"The server has {self.max_sessions} open MCP sessions, its limit (ENGRAM_MAX_SESSIONS); "
                f"try again later: sessions idle for {self.idle_seconds:g} s end."
            )
        if owner is not None and self.open_sessions(owner) + self._opening[owner] >= self.per_token:
            return 429, (
                f"This token has {self.per_token} open MCP sessions, its limit (ENGRAM_MAX_SESSIONS_PER_TOKEN); "
                f"end one (HTTP DELETE with its Mcp-Session-Id) or reuse it; sessions idle for "
                f"{self.idle_seconds:g} s end."
            )
        return None

    @contextmanager
    def opening(self, owner: Owner | None) -> Iterator[None]:
        """Hold a place for a session being opened until its opening request is answered."""
        self._opening[owner] += 1
        try:
            yield
        finally:
            self._opening[owner] -= 1
            if not self._opening[owner]:
                del self._opening[owner]

    @contextmanager
    def in_flight(self, session_id: str) -> Iterator[None]:
        """Mark a session busy while a request (an open event stream included) is served; idle from its end."""
        self._busy[session_id] += 1
        try:
            yield
        finally:
            self._busy[session_id] -= 1
            if not self._busy[session_id]:
                del self._busy[session_id]
            self.touch(session_id)

    def touch(self, session_id: str) -> None:
        """Restart a session's idle period."""
        self._last_active[session_id] = self._clock()

    async def expire_idle(self) -> int:
        """End every session without a request in flight for `idle_seconds`; return how many ended."""
        now = self._clock()
        live = dict(self._manager._server_instances)
        for gone in self._last_active.keys() - live.keys():
            del self._last_active[gone]
        ended = 0
        for session_id, transport in live.items():
            if self._busy[session_id]:
                continue
            last = self._last_active.setdefault(session_id, now)
            if now - last >= self.idle_seconds:
                logger.info("ending MCP session %s after %g s idle", session_id[:8], now - last)
                await self._manager._discard_session(session_id, transport)
                self._last_active.pop(session_id, None)
                ended += 1
        return ended

    async def expire_forever(self) -> None:
        """Check for idle sessions every few seconds until cancelled (the app's lifespan runs this)."""
        interval = min(max(self.idle_seconds / 4, 1.0), 30.0)
        while True:
            await anyio.sleep(interval)
            try:
                await self.expire_idle()
            except Exception:
                logger.exception("ending idle MCP sessions failed; retrying at the next check")


class SessionGuard:
    """ASGI guard on the streamable-HTTP endpoint: admits new sessions within the limits, tracks activity."""

    def __init__(self, app: ASGIApp, *, limits: SessionLimits, path: str) -> None:
        self.app = app
        self._limits = limits
        self._path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse a session over a limit; mark requests of existing sessions as activity."""
        if scope["type"] != "http" or scope["path"].rstrip("/") != self._path:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        session_id = headers.get(_SESSION_HEADER)
        if session_id is not None:
            with self._limits.in_flight(session_id.decode("latin-1")):
                await self.app(scope, receive, send)
            return
        version = headers.get(_VERSION_HEADER)
        opens_session = scope["method"] == "POST" and (
            version is None or version.decode("latin-1") in HANDSHAKE_PROTOCOL_VERSIONS
        )
        if not opens_session:  # the 2026 leg: no session
            await self.app(scope, receive, send)
            return
        user = scope.get("user")
        owner = principal_components(user.access_token) if isinstance(user, AuthenticatedUser) else None
        refusal = self._limits.refusal(owner)
        if refusal is not None:
            status, message = refusal
            logger.warning("refused a new MCP session: %s", message)
            body = {"jsonrpc": "2.0", "id": None, "error": {"code": -32000, "message": message}}
            await JSONResponse(body, status_code=status, headers={"retry-after": "60"})(scope, receive, send)
            return

        async def noting_session(message: Message) -> None:
            if message["type"] == "http.response.start":
                for name, value in message.get("headers", []):
                    if name.lower() == _SESSION_HEADER:
                        self._limits.touch(value.decode("latin-1"))
            await send(message)

        with self._limits.opening(owner):
            await self.app(scope, receive, noting_session)
