"""Who a bearer token speaks for: the users it may act for, its agent, its scopes, and the rules that follow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from engram.core.errors import AccessDenied

#: What a request needs: read memory, write (or erase) it, or administer the server.
Access = Literal["read", "write", "admin"]
#: Every scope a token can carry: the three accesses, plus `metrics` (scrape /metrics and nothing else).
Scope = Literal["read", "write", "admin", "metrics"]
SCOPES: tuple[str, ...] = get_args(Scope)
#: Scopes that open the MCP endpoint at all; a token with none of them gets HTTP 403 there.
MEMORY_SCOPES = frozenset({"read", "write", "admin"})


@dataclass(frozen=True)
class Principal:
    """The identity a verified token carries. `admin` may act for any user and needs no other scope."""

    token_id: str
    users: frozenset[str]
    agent: str | None
    scopes: frozenset[str]

    def allows(self, access: Access) -> bool:
        """Whether the token's scopes cover `access` (admin covers everything)."""
        return "admin" in self.scopes or access in self.scopes

    def acting_for(self, user_id: str | None, agent_id: str | None, access: Access) -> tuple[str, str | None]:
        """The (user, agent) a request with these arguments acts for, or AccessDenied saying why it may not.

        Messages never repeat a user id: tool errors reach the server log, and logs carry no user ids.
        """
        if not self.allows(access):
            held = ", ".join(sorted(self.scopes)) or "none"
            raise AccessDenied(
                f"This token lacks the '{access}' scope this needs (its scopes: {held}). "
                f"Ask the server's operator for a token with the '{access}' scope."
            )
        admin = "admin" in self.scopes
        if user_id is None:
            if len(self.users) != 1:
                raise AccessDenied(
                    "'user_id' is required: this token is not bound to a single user, "
                    "so name the user whose memory this is."
                )
            (user_id,) = self.users
        elif user_id not in self.users and not admin:
            raise AccessDenied(
                "This token may not act for the user_id given. Omit user_id to act for the token's own user; "
                "another user's memory needs that user's token."
            )
        if self.agent is not None:
            if agent_id is not None and agent_id != self.agent:
                raise AccessDenied(
                    "This token acts as its own agent: omit agent_id (or pass the token's agent id), "
                    "an agent cannot write as another agent."
                )
            agent_id = self.agent
        return user_id, agent_id
