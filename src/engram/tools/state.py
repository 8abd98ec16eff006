"""What every MCP handler can reach: the settings and the (possibly still loading) memory service."""

from __future__ import annotations

from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError

from engram.config import Settings
from engram.core.errors import EngramError
from engram.core.loader import BackgroundService
from engram.core.service import MemoryService


@dataclass(frozen=True)
class AppState:
    """Per-server state created by the lifespan."""

    settings: Settings
    memory: BackgroundService


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
