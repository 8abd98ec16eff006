"""The `summarize_session` tool: compress a long conversation's older turns into a summary."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import Field

from engram.core.models import SessionSummary
from engram.tools._fields import MAX_CONTENT_CHARS, SessionIdArg, UserIdArg, ViewerAgentArg
from engram.tools.progress import progress_of
from engram.tools.state import AppState, caller, domain_errors, memory_of


async def summarize_session(
    session_id: SessionIdArg,
    ctx: Context[AppState],
    user_id: UserIdArg = None,
    agent_id: ViewerAgentArg = None,
    keep_recent: Annotated[
        int | None,
        Field(ge=0, le=1000, description="Latest turns kept verbatim (default 6)."),
    ] = None,
    summary: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=MAX_CONTENT_CHARS,
            description="Your summary of the older turns, folding in any earlier summary of this session.",
        ),
    ] = None,
) -> SessionSummary:
    """Compress a long session: older turns are replaced by a summary (yours in `summary` is best; else extractive),
    the latest stay verbatim. The summary is also kept in long-term memory.
    """
    with domain_errors():
        who = caller(user_id, agent_id, access="write")
    memory = await memory_of(ctx)

    with domain_errors():
        return await memory.summarize_session(
            who.user_id,
            session_id,
            keep_recent=keep_recent,
            summary=summary,
            progress=progress_of(ctx),
            agent_id=who.agent_id,
        )
