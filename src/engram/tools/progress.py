"""Progress of a tool call: reported against the caller's progress token, and all of it taken before the result.

Why a tool call that reported progress waits for the client before its result goes out: the server writes the
progress notifications and then the result, in that order, on one stream. But the TypeScript SDK 1.x client
(`Protocol` in `@modelcontextprotocol/sdk`, used by the MCP Inspector, mcp-remote and most Node hosts) runs a
notification's handler in a later microtask while it handles a response at once, and handling the response drops
the request's progress handler. When a notification and the result reach it in one read (a stdio pipe or an SSE
stream read by a busy client) the notification is discarded as "a progress notification for an unknown token":
the last progress (3/3) went missing under load (typescript-sdk issue #2580). So after a call that reported
progress the server sends a `ping` on the request's channel and waits for the answer: the client answers only
after handling everything it read before the ping, progress included, so the result arrives in a later read.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from mcp import MCPError
from mcp.server.mcpserver import Context
from mcp.shared.message import ServerMessageMetadata
from mcp.types import EmptyResult, PingRequest
from pydantic import ValidationError

logger = logging.getLogger(__name__)

#: How long a result waits for a client to answer the ping; a client that never answers gets its result after it.
CATCH_UP_TIMEOUT_S = 10.0

Progress = Callable[[float, float, str], Awaitable[None]]
T = TypeVar("T")


@dataclass
class _Call:
    """What one tool call has done that its result must wait for."""

    reported_progress: bool = False


#: The tool call running in this context; a mutable record, so that a tool run in a child task still marks it.
_current: ContextVar[_Call | None] = ContextVar("engram_tool_call", default=None)


def progress_of(ctx: Context[Any, Any]) -> Progress:
    """A progress callback for the core that reports to this tool call's caller (if the caller asked for it)."""

    async def report(done: float, total: float, message: str) -> None:
        await ctx.report_progress(done, total, message)
        call = _current.get()
        if call is not None:
            call.reported_progress = True

    return report


async def progress_before_result(context: Context[Any, Any] | None, run: Callable[[], Awaitable[T]]) -> T:
    """Run a tool call; if it reported progress, return (or raise) only once the client has taken the progress."""
    call = _Call()
    token = _current.set(call)
    try:
        result = await run()
    except Exception:
        _current.reset(token)
        if call.reported_progress and context is not None:
            await _client_caught_up(context)  # an error result can overtake progress as well
        raise
    _current.reset(token)
    if call.reported_progress and context is not None:
        await _client_caught_up(context)
    return result


async def _client_caught_up(context: Context[Any, Any]) -> None:
    """Ping the client on the request's channel and wait (bounded) for its answer."""
    request = context.request_context
    session = request.session
    if not session.can_send_request:
        # The 2026-07-28 era (and JSON-response HTTP) carries no server requests; its clients (the Python SDK 2.x)
        # take a notification's handler in arrival order, so there is nothing to wait for.
        return
    try:
        await session.send_request(
            PingRequest(),
            EmptyResult,
            request_read_timeout_seconds=CATCH_UP_TIMEOUT_S,
            metadata=ServerMessageMetadata(related_request_id=request.request_id),
        )
    except (MCPError, ValidationError) as exc:
        # Any answer, even an error, shows the client read past the progress; no answer: the result goes anyway.
        logger.debug("progress catch-up ping: %s", exc)
