"""The `summarize_session` tool: compress a long conversation's older turns into a summary."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import Field

from engram.core.models import SessionSummary
from engram.tools._fields import SessionIdArg, UserIdArg, ViewerAgentArg
from engram.tools.state import AppState, caller, domain_errors, memory_of


async def summarize_session(
    session_id: SessionIdArg,
    ctx: Context[AppState],
    user_id: UserIdArg = None,
    agent_id: ViewerAgentArg = None,
    keep_recent: Annotated[
        int | None,
        Field(ge=0, le=1000, description="How many latest turns stay verbatim (server default, normally 6)."),
    ] = None,
    summary: Annotated[
        str | None,
        Field(
            min_length=1,
            description="Your own summary of the older turns. It replaces any earlier summary of this session "
            "in working memory, so fold the earlier summary into it. Omit it to let Engram pick the most "
            "representative sentences itself.",
        ),
    ] = None,
) -> SessionSummary:
    """Compress a long session: older turns are replaced by a summary, the latest ones stay verbatim.

    Call this when a conversation has grown long. Writing the summary yourself (`summary`) gives the best
    result; without it Engram builds an extractive one. The summary is also saved to long-term memory, linked
    to the turns it replaces, so it can be recalled in later sessions.
    """
    with domain_errors():
        who = caller(user_id, agent_id, access="write")
    memory = await memory_of(ctx)

    async def progress(done: float, total: float, message: str) -> None:
        await ctx.report_progress(done, total, message)

    with domain_errors():
        return await memory.summarize_session(
            who.user_id, session_id, keep_recent=keep_recent, summary=summary, progress=progress, agent_id=who.agent_id
        )
