"""The composition root of the MCP server: `build_server(settings)` wires tools, resources and prompts."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from functools import partial
from typing import Any

import anyio.to_thread
from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.types import CallToolResult, InputRequiredResult, TextContent
from pydantic import ValidationError

from engram import __version__
from engram.config import Settings
from engram.core.errors import QUOTE_CHARS, EngramError
from engram.core.loader import BackgroundService
from engram.core.ports import Embedder, MemoryMetrics
from engram.core.timeutil import utc_now
from engram.runtime import background_memory
from engram.server.prompts import register_prompts
from engram.server.resources import register_resources
from engram.server.stdio import serve_stdio
from engram.tools import engram_tools
from engram.tools.arguments import argument_error, loggable
from engram.tools.progress import progress_before_result
from engram.tools.state import AppState, use_default_user

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


async def _apply_retention(memory: BackgroundService, interval_s: float, purged: threading.Event) -> None:
    """Purge once the stores are open, then every `interval_s`; a failed purge is logged and retried later."""
    while True:
        try:
            await (await memory.get()).purge()
            purged.set()
        except EngramError as exc:
            logger.warning("retention purge skipped: %s", exc)
        except Exception:
            logger.exception("retention purge failed; retrying at the next interval")
        await anyio.sleep(interval_s)


_USER_IN_URI = re.compile(r"(engram://users/)[^/\s'\"]+")
#: A logged value longer than this (a megabyte URI from a caller) is cut to a prefix.
_MAX_LOGGED_CHARS = 300


class HideUserIds(logging.Filter):
    """Masks the user id in resource URIs the SDK logs, so raw user ids never reach a log, and cuts long values."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _clipped(_USER_IN_URI.sub(r"\1<user>", arg)) if isinstance(arg, str) else arg for arg in record.args
            )
        if isinstance(record.msg, str):
            record.msg = _USER_IN_URI.sub(r"\1<user>", record.msg)
        return True


def _clipped(value: str) -> str:
    """A caller's value as the SDK's log quotes it (a URI, an error): a short prefix and its length, if it is long."""
    if len(value) <= _MAX_LOGGED_CHARS:
        return value
    return f"{value[:QUOTE_CHARS]}… ({len(value):,} characters)"


class Lifecycle:
    """Opens Engram's memory when a server starts and closes it when it stops.

    Stdio enters `lifespan` once per connection (one connection per process). The HTTP server instead `hold`s
    the memory for the whole process, and every MCP connection's lifespan borrows it: the SSE transport enters
    the lifespan once per client connection, which must not load the model and open the stores again.
    """

    def __init__(
        self,
        settings: Settings,
        embedder: Embedder | None = None,
        metrics: MemoryMetrics | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.settings = settings
        self._embedder = embedder
        self._metrics = metrics
        self._clock = clock
        #: Set once a retention purge has completed (a starting server purges before anything else).
        self.purged = threading.Event()
        self._live: list[AppState] = []
        self._held: AppState | None = None

    def current(self) -> AppState | None:
        """The running server's state, if it is running."""
        return self._live[-1] if self._live else None

    @asynccontextmanager
    async def _running(self) -> AsyncGenerator[AppState, None]:
        settings = self.settings
        memory = background_memory(settings, self._embedder, self._metrics, self._clock)
        # Start loading now but do not wait: `initialize` and `tools/list` must answer while the model loads.
        memory.start()
        state = AppState(settings=settings, memory=memory)
        self._live.append(state)
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_apply_retention, memory, settings.purge_interval_hours * 3600, self.purged)
                yield state
                tasks.cancel_scope.cancel()
        finally:
            self._live.remove(state)
            await anyio.to_thread.run_sync(memory.close)
            logger.info("Engram stopped; stores closed")

    @asynccontextmanager
    async def hold(self) -> AsyncGenerator[AppState, None]:
        """Open the memory for as long as the block runs; connections started meanwhile share it."""
        async with self._running() as state:
            self._held = state
            try:
                yield state
            finally:
                self._held = None

    @asynccontextmanager
    async def lifespan(self, _: MCPServer[AppState]) -> AsyncGenerator[AppState, None]:
        """The MCP server's lifespan: the held memory if there is one, else memory opened for this run."""
        if self._held is not None:
            yield self._held
            return
        # Not held: stdio or in-process, where the caller is the local user (HTTP takes identity from tokens).
        use_default_user(self.settings.default_user)
        async with self._running() as state:
            yield state


class EngramServer(MCPServer[AppState]):
    """The SDK's server with Engram's tool-call boundary: argument errors a model can act on, and compact replies."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[AppState, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        """Run a tool; refused arguments answer in one line, and a structured reply's text is its compact JSON."""
        try:
            result = await progress_before_result(context, partial(super().call_tool, name, arguments, context))
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(exc, UnexpectedToolError) or not isinstance(cause, ValidationError):
                raise
            accepted = await self._accepted_arguments(name)
            # Chained to a validation error: the SDK then logs only the refused fields' names, never the values.
            raise ToolError(f"Error executing tool {name}: {argument_error(cause, accepted)}") from loggable(cause)
        if isinstance(result, CallToolResult) and result.structured_content is not None and not result.is_error:
            # The text is the structured reply itself, as compact JSON: the same on every transport, and no
            # pretty-printing for a model to pay for.
            text = json.dumps(result.structured_content, separators=(",", ":"), ensure_ascii=False)
            result = result.model_copy(update={"content": [TextContent(type="text", text=text)]})
        return result

    async def run_stdio_async(self) -> None:
        """Serve stdio from the event loop when stdin and stdout are pipes (see engram.server.stdio)."""
        await serve_stdio(self)

    async def _accepted_arguments(self, name: str) -> list[str]:
        for tool in await self.list_tools():
            if tool.name == name:
                return list(tool.input_schema.get("properties", {}))
        return []


def build_server(
    settings: Settings,
    *,
    embedder: Embedder | None = None,
    lifecycle: Lifecycle | None = None,
    token_verifier: TokenVerifier | None = None,
    auth: AuthSettings | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> MCPServer[AppState]:
    """Create an Engram MCP server; its memory opens in the background when the server starts.

    `lifecycle` (which then supplies the embedder) lets an HTTP app share the memory across connections;
    `token_verifier` and `auth` go together and make the HTTP transports require bearer tokens. `clock` tells the
    memory what time it is (tests fix it, so that nothing they check depends on the date).
    """
    lifecycle = lifecycle or Lifecycle(settings, embedder, clock=clock)

    server = EngramServer(
        "engram",
        title="Engram memory",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifecycle.lifespan,
        log_level=settings.log_level,
        token_verifier=token_verifier,
        auth=auth,
        tools=engram_tools(settings),
        # Engram's tools, prompts and resources never change while it runs and it sends no change notifications,
        # so it serves no subscriptions/listen: the 2026 era then advertises what the 2025 era does.
        subscriptions=False,
    )
    sdk_logger = logging.getLogger("mcp.server.mcpserver.server")
    if not any(isinstance(f, HideUserIds) for f in sdk_logger.filters):
        sdk_logger.addFilter(HideUserIds())
    register_resources(server, lifecycle.current)
    register_prompts(server)
    return server
