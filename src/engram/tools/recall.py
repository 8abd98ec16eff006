"""The `recall` tool: find what Engram remembers that is relevant to a query."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import Field

from engram.config import MAX_TOP_K
from engram.core.models import MAX_QUERY_CHARS, RecallResult, RecallScope
from engram.tools._fields import OptionalSessionIdArg, UserIdArg, ViewerAgentArg
from engram.tools._filters import (
    CategoryArg,
    EntityArg,
    ExcludeAgentsArg,
    FromAgentsArg,
    FromSessionArg,
    KindArg,
    MinImportanceArg,
    ResolvedArg,
    SentimentArg,
    SharedOnlyArg,
    SinceArg,
    TagsAllArg,
    TagsAnyArg,
    UntilArg,
    build_filters,
)
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
    agent_id: ViewerAgentArg = None,
    from_agents: FromAgentsArg = None,
    exclude_agents: ExcludeAgentsArg = None,
    shared_only: SharedOnlyArg = False,
    from_session: FromSessionArg = None,
    tags: TagsAnyArg = None,
    tags_all: TagsAllArg = None,
    entity: EntityArg = None,
    sentiment: SentimentArg = None,
    category: CategoryArg = None,
    kind: KindArg = None,
    resolved: ResolvedArg = None,
    min_importance: MinImportanceArg = None,
    since: SinceArg = None,
    until: UntilArg = None,
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
    long-term search; pass agent_id to say which agent is asking (it then also sees its own private memories).
    Passages of ingested documents come back in `knowledge`, each with its `citation` (source, title, heading
    path, chunk position): cite it when you use it.
    """
    with domain_errors():
        who = caller(user_id, agent_id, access="read")
    filters = build_filters(
        from_agents=from_agents,
        exclude_agents=exclude_agents,
        shared_only=shared_only,
        from_session=from_session,
        tags=tags,
        tags_all=tags_all,
        entity=entity,
        sentiment=sentiment,
        category=category,
        kind=kind,
        resolved=resolved,
        min_importance=min_importance,
        since=since,
        until=until,
    )
    memory = await memory_of(ctx)
    with domain_errors():
        return await memory.recall(
            who.user_id,
            query,
            session_id=session_id,
            top_k=top_k,
            min_score=min_score,
            filters=filters,
            agent_id=who.agent_id,
            scope=scope,
        )
