"""What every MCP handler can reach: the settings and the (possibly still loading) memory service."""

from __future__ import annotations

from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError

from engram.config import Settings
from engram.core.errors import AccessDenied, EngramError
from engram.core.loader import BackgroundService
from engram.core.service import MemoryService


@dataclass(frozen=True)
class AppState:
    """Per-server state created by the lifespan."""

    settings: Settings
    memory: BackgroundService


Access = Literal["read", "write", "admin"]


@dataclass(frozen=True)
class Caller:
    """Whom a request acts for: the user whose memory it touches and the agent making it."""

    user_id: str
    agent_id: str | None


def caller(user_id: str | None, agent_id: str | None = None, *, access: Access) -> Caller:
    """Decide whom a request acts for from its arguments and the transport's credentials.

    On stdio the local user is trusted: the arguments say who. Raises AccessDenied (an EngramError) when the
    request may not act for that user or agent, or lacks the access it needs.
    """
    if user_id is None:
        raise AccessDenied("'user_id' is required: pass the id of the person whose memory this is.")
    return Caller(user_id=user_id, agent_id=agent_id)


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
