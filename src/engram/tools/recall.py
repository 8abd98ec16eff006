"""The `recall` tool: find what Engram remembers that is relevant to a query."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import Field

from engram.config import MAX_TOP_K
from engram.core.models import MAX_QUERY_CHARS, RecallResult, RecallScope
from engram.tools._fields import OptionalSessionIdArg, UserIdArg, ViewerAgentArg
from engram.tools._filters import FiltersArg, filters_of
from engram.tools.state import AppState, caller, domain_errors, memory_of


async def recall(
    query: Annotated[
        str,
        Field(min_length=1, max_length=MAX_QUERY_CHARS, description="What you need to know."),
    ],
    ctx: Context[AppState],
    user_id: UserIdArg = None,
    session_id: OptionalSessionIdArg = None,
    top_k: Annotated[
        int | None,
        Field(
            ge=1,
            le=MAX_TOP_K,
            description="How many long-term memories (default 5).",
        ),
    ] = None,
    min_score: Annotated[
        float | None,
        Field(
            ge=-1.0,
            le=1.0,
            description="Leave out memories less similar than this (cosine).",
        ),
    ] = None,
    agent_id: ViewerAgentArg = None,
    filters: FiltersArg = None,
    scope: Annotated[
        RecallScope, Field(description="'knowledge' is ingested documents (filters do not apply).")
    ] = "both",
) -> RecallResult:
    """Look up what you know about the user: call at the start of a conversation and when past context may matter.

    Returns the session's recent turns (with session_id), the long-term memories best matching `query` (by meaning
    and keywords), and cited passages of ingested documents (cite them when used).
    """
    with domain_errors():
        who = caller(user_id, agent_id, access="read")
    memory = await memory_of(ctx)
    with domain_errors():
        return await memory.recall(
            who.user_id,
            query,
            session_id=session_id,
            top_k=top_k,
            min_score=min_score,
            filters=filters_of(filters),
            agent_id=who.agent_id,
            scope=scope,
        )
