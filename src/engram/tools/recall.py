"""The `recall` tool: find what Engram remembers that is relevant to a query."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult
from pydantic import BaseModel, Field

from engram.core.limits import MAX_QUERY_CHARS, MAX_TOP_K
from engram.core.models import KnowledgeHit, RecallResult, RecallScope
from engram.tools._fields import OptionalSessionIdArg, UserIdArg, ViewerAgentArg
from engram.tools._filters import FiltersArg
from engram.tools.state import AppState, caller, domain_errors, memory_of

#: Digits a hit's score keeps: enough to rank and compare, short to read.
_SCORE_DIGITS = 3


class Hit(BaseModel):
    """One thing recall found, as a model reads it."""

    tier: Literal["working", "long_term", "knowledge"]
    id: str | None = None
    when: str
    score: float | None = None
    content: str
    cite: str | None = None


class RecallReply(BaseModel):
    """What recall found: the hits, in the order to read them (session turns, memories, documents)."""

    hits: list[Hit]
    dropped_below_min_score: int | None = None
    unavailable: list[str] | None = None
    working: list[dict[str, Any]] | None = None
    memories: list[dict[str, Any]] | None = None
    knowledge: list[dict[str, Any]] | None = None


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _cite(hit: KnowledgeHit) -> str:
    citation = hit.citation
    where = " > ".join([citation.title, *citation.heading_path])
    page = f", page {citation.page}" if citation.page is not None else ""
    return f"{where} ({citation.source}{page}, chunk {citation.position + 1}/{citation.chunks})"


def reply_of(result: RecallResult, detail: Literal["compact", "full"]) -> RecallReply:
    """The reply a model reads: one short line of facts per hit; the full result's parts too on request."""
    hits = [Hit(tier="working", id=t.memory_id, when=_when(t.created_at), content=t.content) for t in result.working]
    hits += [
        Hit(
            tier="long_term",
            id=m.memory.id,
            when=_when(m.memory.created_at),
            score=round(m.score, _SCORE_DIGITS),
            content=m.memory.content,
        )
        for m in result.memories
    ]
    hits += [
        Hit(
            tier="knowledge",
            when=_when(k.citation.ingested_at),
            score=round(k.score, _SCORE_DIGITS),
            content=k.content,
            cite=_cite(k),
        )
        for k in result.knowledge
    ]
    reply = RecallReply(
        hits=hits,
        dropped_below_min_score=result.dropped_below_min_score or None,
        unavailable=result.unavailable or None,
    )
    if detail == "full":
        full = result.model_dump(mode="json")
        parts = ("working", "memories", "knowledge", "dropped_below_min_score", "unavailable")
        reply = reply.model_copy(update={part: full[part] for part in parts})
    return reply


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
    detail: Annotated[
        Literal["compact", "full"],
        Field(description="'full' adds every score and the memories' metadata (memories, working, knowledge)."),
    ] = "compact",
    as_of: Annotated[
        datetime | None,
        Field(description="Answer as of this time (ISO 8601): what was valid then; dates in the query count from it."),
    ] = None,
) -> Annotated[CallToolResult, RecallReply]:
    """Look up what you know about the user: call at the start of a conversation and when past context may matter.

    Returns the session's recent turns (with session_id), the long-term memories best matching `query` (by meaning
    and keywords), and cited passages of ingested documents (cite them when used).
    """
    with domain_errors():
        who = caller(user_id, agent_id, access="read")
    memory = await memory_of(ctx)
    with domain_errors():
        result = await memory.recall(
            who.user_id,
            query,
            session_id=session_id,
            top_k=top_k,
            min_score=min_score,
            filters=filters,
            agent_id=who.agent_id,
            scope=scope,
            as_of=as_of,
        )
    reply = reply_of(result, detail)
    # Unset parts are left out rather than sent as nulls; the server writes the same JSON as the text.
    return CallToolResult(content=[], structured_content=reply.model_dump(mode="json", exclude_none=True))
