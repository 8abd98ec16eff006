"""What every MCP handler can reach: the settings and the (possibly still loading) memory service."""

from __future__ import annotations

from collections.abc import Generator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError

from engram.auth.principal import Access, Principal
from engram.auth.verifier import principal_of
from engram.config import Settings
from engram.core.errors import AccessDenied, EngramError
from engram.core.loader import BackgroundService

if TYPE_CHECKING:
    # Annotations only: the service pulls in numpy, which the handshake does not need.
    from engram.core.service import MemoryService


@dataclass(frozen=True)
class AppState:
    """Per-server state created by the lifespan."""

    settings: Settings
    memory: BackgroundService


__all__ = [
    "Access",
    "AppState",
    "Caller",
    "authorize",
    "caller",
    "domain_errors",
    "memory_of",
    "use_default_user",
]

#: The user of stdio requests that name none (ENGRAM_DEFAULT_USER). A context variable, so that two in-process
#: servers each keep their own. The SDK runs a handler in the context of the task that read its message: for
#: in-process servers that is the server's loop (the lifespan sets it there); on stdio it is the stdin reader,
#: which starts before the lifespan, so the stdio entry point sets it before the server runs.
_default_user: ContextVar[str | None] = ContextVar("engram_default_user", default=None)


def use_default_user(user_id: str | None) -> None:
    """Act for `user_id` when a request of the server running in this context names no user (stdio only)."""
    _default_user.set(user_id)


@dataclass(frozen=True)
class Caller:
    """Whom a request acts for: the user whose memory it touches and the agent making it."""

    user_id: str
    agent_id: str | None


def caller(user_id: str | None, agent_id: str | None = None, *, access: Access) -> Caller:
    """Decide whom a request acts for from its arguments and the transport's credentials.

    On stdio (and in-process) the local user is trusted: the arguments say who, and an omitted user_id is the
    server's default user (ENGRAM_DEFAULT_USER, else the OS login name). Over authenticated HTTP the token
    decides: an omitted user_id is the token's user, a user_id the token may not act for is refused, the
    token's agent (if it has one) is the agent, and the token must carry the scope `access` needs. Raises
    AccessDenied (an EngramError) when the request may not act for that user or agent, or lacks the access.
    """
    principal = _principal()
    if principal is None:
        chosen = user_id if user_id is not None else _default_user.get()
        if chosen is None:
            raise AccessDenied(
                "'user_id' is required: pass the id of the person whose memory this is (this server has no "
                "default user: ENGRAM_DEFAULT_USER is empty)."
            )
        return Caller(user_id=chosen, agent_id=agent_id)
    user, agent = principal.acting_for(user_id, agent_id, access)
    return Caller(user_id=user, agent_id=agent)


def authorize(access: Access) -> None:
    """Check that the request may have `access` at all (for handlers that act for no particular user)."""
    principal = _principal()
    if principal is not None and not principal.allows(access):
        raise AccessDenied(f"This token lacks the '{access}' scope this needs.")


def _principal() -> Principal | None:
    """The principal of the request's bearer token; None when the transport has none (stdio, in-process)."""
    token = get_access_token()
    return None if token is None else principal_of(token)


async def memory_of(ctx: Context[AppState]) -> MemoryService:
    """The memory service, waiting for it while the model loads; a failure to open becomes a tool error."""
    with domain_errors():
        return await ctx.request_context.lifespan_context.memory.get()


@contextmanager
def domain_errors() -> Generator[None, None, None]:
    """Turn Engram's own errors into tool errors whose message the model reads and can act on."""
    try:
        yield
    except EngramError as exc:
        raise ToolError(str(exc)) from exc
