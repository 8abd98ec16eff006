"""The `recall` tool: find what Engram remembers that is relevant to a query."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import Field

from engram.config import MAX_TOP_K
from engram.core.models import ID_PATTERN, MAX_QUERY_CHARS, Kind, RecallFilters, RecallResult
from engram.core.service import RecallScope
from engram.tools._fields import OptionalSessionIdArg, UserIdArg
from engram.tools.state import AppState, caller, domain_errors, memory_of


async def recall(
    query: Annotated[
        str,
        Field(min_length=1, max_length=MAX_QUERY_CHARS, description="What you need to know, in natural language."),
    ],
    ctx: Context[AppState],
    user_id: UserIdArg = None,
    session_id: OptionalSessionIdArg = None,
    top_k: Annotated[
        int | None,
        Field(
            ge=1,
            le=MAX_TOP_K,
            description=f"How many long-term memories (server default, normally 5; max {MAX_TOP_K}).",
        ),
    ] = None,
    min_score: Annotated[
        float | None,
        Field(
            ge=-1.0,
            le=1.0,
            description="Leave out memories whose semantic similarity (scores.similarity, cosine -1..1) is below this.",
        ),
    ] = None,
    from_agent: Annotated[
        str | None, Field(pattern=ID_PATTERN, description="Only memories written by this agent.")
    ] = None,
    from_session: Annotated[
        str | None, Field(pattern=ID_PATTERN, description="Only memories from this session.")
    ] = None,
    tags: Annotated[list[str] | None, Field(description="Only memories with at least one of these tags.")] = None,
    category: Annotated[str | None, Field(max_length=64, description="Only memories in this category.")] = None,
    kind: Annotated[Kind | None, Field(description="Only memories of this kind.")] = None,
    resolved: Annotated[bool | None, Field(description="Only memories marked resolved (true) or not (false).")] = None,
    since: Annotated[datetime | None, Field(description="Only memories created at or after (ISO 8601).")] = None,
    until: Annotated[datetime | None, Field(description="Only memories created before (ISO 8601).")] = None,
    scope: Annotated[
        RecallScope,
        Field(
            description="'memories' (what the user said and did), 'knowledge' (ingested documents, with "
            "citations; filters do not apply) or 'both' (default)."
        ),
    ] = "both",
) -> RecallResult:
    """Look up what you know about the user before answering.

    Call this at the start of a conversation and whenever the user refers to something from the past
    ("as I said", "my usual order"), or when personal context would improve the answer. Returns the current
    session's recent turns (with session_id) and the long-term memories most relevant to `query`, found by
    meaning and by keywords together. Each memory has a ranking `score` (higher is better, not bounded by 1)
    and `scores` explaining it, including the cosine `similarity` that min_score tests. Filters narrow the
    long-term search. Passages of ingested documents come back in `knowledge`, each with its `citation`
    (source, title, heading path, chunk position): cite it when you use it.
    """
    with domain_errors():
        who = caller(user_id, access="read")
    filters = RecallFilters(
        agent_id=from_agent,
        session_id=from_session,
        kind=kind,
        tags_any=tags or [],
        category=category,
        resolved=resolved,
        since=since,
        until=until,
    )
    memory = await memory_of(ctx)
    with domain_errors():
        return await memory.recall(
            who.user_id, query, session_id=session_id, top_k=top_k, min_score=min_score, filters=filters, scope=scope
        )
