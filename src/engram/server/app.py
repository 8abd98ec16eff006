"""The composition root of the MCP server: `build_server(settings)` wires tools, resources and prompts."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager

import anyio.to_thread
from mcp.server.mcpserver import MCPServer

from engram import __version__
from engram.config import Settings
from engram.core.errors import EngramError
from engram.core.loader import BackgroundService
from engram.core.ports import Embedder
from engram.runtime import background_memory
from engram.server.prompts import register_prompts
from engram.server.resources import register_resources
from engram.tools import register_tools
from engram.tools.state import AppState

logger = logging.getLogger(__name__)

INSTRUCTIONS = """\
Engram gives you persistent memory of the people you talk to, across conversations.
- At the start of a conversation, and whenever past context could matter, call `recall` with the user's id
  and what you need to know.
- When the user shares something lasting (facts about themselves, preferences, decisions, commitments),
  call `remember`. To keep a transcript, call `remember` for each turn with `session_id` and `role`.
- When a session grows long, call `summarize_session`, ideally passing your own summary of the older turns.
- Call `forget_user` with confirm=true only when the user explicitly asks to erase their data.
Use the same user_id for the same person every time."""


async def _apply_retention(memory: BackgroundService, interval_s: float) -> None:
    """Purge once the stores are open, then every `interval_s`; a failed purge is logged and retried later."""
    while True:
        try:
            await (await memory.get()).purge()
        except EngramError as exc:
            logger.warning("retention purge skipped: %s", exc)
        except Exception:
            logger.exception("retention purge failed; retrying at the next interval")
        await anyio.sleep(interval_s)


_USER_IN_URI = re.compile(r"(engram://users/)[^/\s'\"]+")


class HideUserIds(logging.Filter):
    """Masks the user id in resource URIs the SDK logs, so raw user ids never reach a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _USER_IN_URI.sub(r"\1<user>", arg) if isinstance(arg, str) else arg for arg in record.args
            )
        if isinstance(record.msg, str):
            record.msg = _USER_IN_URI.sub(r"\1<user>", record.msg)
        return True


def build_server(settings: Settings, *, embedder: Embedder | None = None) -> MCPServer[AppState]:
    """Create an Engram MCP server; its memory opens in the background when the server starts."""
    live: list[AppState] = []

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncGenerator[AppState, None]:
        memory = background_memory(settings, embedder)
        # Start loading now but do not wait: `initialize` and `tools/list` must answer while the model loads.
        memory.start()
        state = AppState(settings=settings, memory=memory)
        live.append(state)
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_apply_retention, memory, settings.purge_interval_hours * 3600)
                yield state
                tasks.cancel_scope.cancel()
        finally:
            live.remove(state)
            await anyio.to_thread.run_sync(memory.close)
            logger.info("Engram stopped; stores closed")

    server: MCPServer[AppState] = MCPServer(
        "engram",
        title="Engram memory",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        log_level=settings.log_level,
    )
    sdk_logger = logging.getLogger("mcp.server.mcpserver.server")
    if not any(isinstance(f, HideUserIds) for f in sdk_logger.filters):
        sdk_logger.addFilter(HideUserIds())
    register_tools(server)
    register_resources(server, lambda: live[-1] if live else None)
    register_prompts(server)
    return server
