"""The vocabulary of Engram: identifiers, memories, turns, hits and the results of each operation."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Re-exported for code that imported the limits from here before `core/limits.py` held them all.
from engram.core.limits import ID_PATTERN as ID_PATTERN
from engram.core.limits import ID_RULE as ID_RULE
from engram.core.limits import MAX_METADATA_KEYS as MAX_METADATA_KEYS
from engram.core.limits import MAX_OFFSET as MAX_OFFSET
from engram.core.limits import MAX_PAGE as MAX_PAGE
from engram.core.limits import MAX_QUERY_CHARS as MAX_QUERY_CHARS
from engram.core.limits import MAX_TAGS as MAX_TAGS
from engram.core.limits import MEMORY_ID_PATTERN as MEMORY_ID_PATTERN
from engram.core.values import Content, Entities, Id, Label, MemoryIds, Metadata, Tags, Unit, UtcDate

#: Which memory `recall` searches: personal memory (working and long-term), knowledge, or both.
RecallScope = Literal["memories", "knowledge", "both"]
MetadataValue = str | int | float | bool | None
#: Which projects `recall` and `list_memories` search: the given project and the user's global (project-less)
#: memories ('with_global', the default; without a project, global memories only), that project alone ('only'),
#: or every project ('any').
ProjectScope = Literal["with_global", "only", "any"]


class Role(StrEnum):
    """Who produced a turn."""

    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"
    SYSTEM = "system"


class Kind(StrEnum):
    """What a long-term memory is."""

    TURN = "turn"
    FACT = "fact"
    SUMMARY = "summary"
    DOCUMENT = "document"


class Visibility(StrEnum):
    """Which agents of the user may read a memory."""

    SHARED = "shared"
    PRIVATE = "private"


class Sentiment(StrEnum):
    """Coarse sentiment of a memory."""

    NEGATIVE = "negative"
    NEUTRAL = "neutral"
    POSITIVE = "positive"


class Memory(BaseModel):
    """One long-term memory as stored: content plus everything known about it."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Content-addressed id: the same content for the same user has the same id.")
    user_id: str
    agent_id: str | None = None
    visibility: Visibility = Field(
        default=Visibility.SHARED,
        description="'shared' with every agent of the user, or 'private' to the agent that wrote it.",
    )
    session_id: str | None = None
    project: str | None = Field(default=None, description="The project it belongs to; null: global to the user.")
    role: Role | None = None
    kind: Kind = Kind.FACT
    content: str
    created_at: datetime
    updated_at: datetime | None = None
    tags: list[str] = Field(default_factory=list)
    category: str | None = None
    entities: list[str] = Field(default_factory=list)
    sentiment: Sentiment | None = None
    sentiment_score: float | None = Field(default=None, ge=-1.0, le=1.0)
    resolved: bool | None = None
    importance: float | None = Field(default=None, ge=0.0, le=1.0)
    links: list[str] = Field(default_factory=list, description="For a summary: the ids of the turns it replaces.")
    turn_index: int | None = Field(default=None, description="For a turn: its position in its session, from 0.")
    metadata: dict[str, MetadataValue] = Field(default_factory=dict)
    valid_from: datetime | None = Field(
        default=None, description="Since when it holds (default: when it occurred, created_at)."
    )
    valid_until: datetime | None = Field(
        default=None, description="When it stopped holding (a newer memory superseded it); null while current."
    )
    supersedes: list[str] = Field(default_factory=list, description="Ids of the older memories this one replaces.")
    superseded_by: list[str] = Field(default_factory=list, description="Ids of the memories that replaced this one.")


class Turn(BaseModel):
    """One entry of a session's transcript: a verbatim turn, or the summary that replaced older turns."""

    model_config = ConfigDict(frozen=True)

    memory_id: str = Field(description="Id of the long-term memory that holds this turn.")
    seq: int = Field(description="Position of the turn in its session, from 0; a summary has the seq it ends before.")
    role: Role | None
    content: str
    created_at: datetime
    agent_id: str | None = None
    visibility: Visibility = Visibility.SHARED
    speaker: str | None = Field(default=None, description="Name of who said it, when the caller gave one.")
    is_summary: bool = False


class WorkingTurn(Turn):
    """A turn returned by `recall` from the session's working memory."""

    tier: Literal["working"] = "working"


class HitScores(BaseModel):
    """The scores behind a hit's rank, so a caller can see why it came back."""

    similarity: float = Field(description="Cosine similarity of query and memory, -1..1 (what min_score tests).")
    keyword: float | None = Field(description="BM25 score of the keyword match, or null if keywords did not match.")
    vector_rank: int | None = Field(description="Rank in the semantic result list (1 = best), or null.")
    keyword_rank: int | None = Field(description="Rank in the keyword result list (1 = best), or null.")
    neighbor_boost: float = Field(description="Added because neighbouring turns of the same session also matched.")
    graph_boost: float = Field(
        default=0.0,
        description="Added because the memory names an entity the query names, or one related to it, "
        "or was said by the person a gathering question names.",
    )
    newer_lift: float = Field(
        default=0.0, description="Added to put the newer of two versions of a matching fact (or session) first."
    )
    fused: float = Field(description="The final ranking score.")


class MemoryHit(BaseModel):
    """A long-term memory returned by `recall`, with how well it matched."""

    tier: Literal["long_term"] = "long_term"
    score: float = Field(description="The final ranking score (higher is better); see `scores` for its parts.")
    scores: HitScores
    memory: Memory
    passage: str | None = Field(
        default=None, description="For a long memory found by a later part of it: that passage (as indexed)."
    )

    def rescored(self, score: float, **parts: float) -> MemoryHit:
        """This hit with `score` as its final and fused score, and any other score `parts` replaced."""
        scores = self.scores.model_copy(update={**parts, "fused": score})
        return self.model_copy(update={"score": score, "scores": scores})


class Citation(BaseModel):
    """Where a knowledge chunk comes from, so an answer can cite it."""

    source: str = Field(description="The file path (or the name given to an ingested text) the chunk comes from.")
    title: str = Field(description="The document's title.")
    heading_path: list[str] = Field(description="The headings above the chunk, outermost first.")
    position: int = Field(description="The chunk's position in its source, from 0.")
    chunks: int = Field(description="How many chunks the source has.")
    page: int | None = Field(default=None, description="For a PDF: the page the chunk starts on, from 1.")
    scope: Literal["global", "user"] = Field(
        description="Whether the source is shared by every user or the user's own."
    )
    ingested_at: datetime


class KnowledgeHit(BaseModel):
    """A chunk of an ingested document returned by `recall`, with its citation and how well it matched."""

    tier: Literal["knowledge"] = "knowledge"
    score: float = Field(description="The final ranking score (higher is better); see `scores` for its parts.")
    scores: HitScores
    content: str
    citation: Citation


# Parsed once: each field within its limits and in the form stores keep. `remember_many`'s tool takes a list of
# these as its schema (the docstring is their description there); the service applies only what depends on its
# settings (the content limit, redaction) and on the caller (a private memory needs an agent).
class RememberItem(BaseModel):
    """One memory to store (the fields of remember)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    content: Content
    session_id: Id | None = None
    project: Id | None = None
    role: Role | None = None
    kind: Kind | None = None
    tags: Tags = None
    category: Label | None = None
    entities: Entities = None
    sentiment: Sentiment | None = None
    resolved: bool | None = None
    visibility: Visibility = Visibility.SHARED
    metadata: Metadata = None
    importance: Unit = None
    occurred_at: UtcDate | None = None
    supersedes: MemoryIds = None


class SupersedeSuggestion(BaseModel):
    """A stored memory that looks like an older version of the one just remembered."""

    id: str
    content: str
    valid_from: datetime
    similarity: float = Field(description="Cosine similarity to the new memory, -1..1.")
    reason: str = Field(description="Why it was suggested: a near-duplicate, a shared entity, or a similar statement.")


class RememberResult(BaseModel):
    """Outcome of `remember`."""

    id: str
    created: bool = Field(description="False when identical content was already stored for this user.")
    session_turns: int | None = Field(
        default=None, description="Turns now in the session's working memory, when a session was given."
    )
    redacted: dict[str, int] = Field(
        default_factory=dict,
        description="Sensitive details replaced by placeholders before storing, as counts per category "
        "(email, phone, card, iban, national_id, ip_address, secret); never the values.",
    )
    # Left out of the reply when empty: most writes have none, and every reply costs the caller context.
    supersede_candidates: list[SupersedeSuggestion] = Field(
        default_factory=list,
        exclude_if=lambda found: not found,
        description="Current memories that look like older versions of this fact. If this one replaces them, pass "
        "their ids as `supersedes` (now or in a later remember of the same content); Engram never decides alone.",
    )
    superseded: list[str] = Field(
        default_factory=list, exclude_if=lambda ids: not ids, description="Ids this call closed as superseded."
    )


class RecallResult(BaseModel):
    """Outcome of `recall`: the session's working memory and the best long-term matches."""

    working: list[WorkingTurn] = Field(description="The session's recent turns, oldest first (empty without session).")
    memories: list[MemoryHit] = Field(description="Long-term memories, best match first.")
    dropped_below_min_score: int = Field(description="Matches left out because they scored under min_score.")
    knowledge: list[KnowledgeHit] = Field(
        default_factory=list, description="Chunks of ingested documents (knowledge memory), best match first."
    )
    unavailable: list[str] = Field(
        default_factory=list,
        description="Tiers that could not be searched because their files are damaged, each with what to do; the "
        "results above come from the other tiers.",
    )


class SessionSummary(BaseModel):
    """Outcome of `summarize_session`."""

    summary_id: str = Field(description="Id of the long-term memory that stores the summary.")
    summary: str
    method: Literal["caller", "extractive"]
    summarized_turns: int = Field(description="How many older turns the summary replaces.")
    kept_turns: int = Field(description="How many recent turns stay verbatim in working memory.")
    replaced_ids: list[str] = Field(description="Ids of the long-term memories of the replaced turns.")


class ForgetReceipt(BaseModel):
    """Outcome of `forget_user`: what was erased, per tier."""

    user_id: str
    erased: bool
    working: int = Field(description="Working-memory sessions erased.")
    short_term: int = Field(description="Short-term session records erased.")
    long_term: int = Field(description="Long-term memories erased.")
    knowledge: int = Field(default=0, description="Chunks of the user's own knowledge sources erased.")
    graph: int = Field(default=0, description="Entities and relations of the user's graph erased.")
    finished_at: datetime
    verification: str = Field(description="The check performed after erasing, which found nothing left.")


class MemoryForgotten(BaseModel):
    """Outcome of `forget_memory`."""

    memory_id: str
    long_term: int = Field(description="Long-term memories deleted (0 or 1).")
    session_turns: int = Field(description="Turns removed from the user's session transcripts.")


class PurgeReport(BaseModel):
    """Outcome of a retention purge."""

    long_term: int = Field(description="Long-term memories older than their retention limit, deleted.")
    expired_session_entries: int = Field(description="Expired working and short-term entries removed.")
    finished_at: datetime


class SessionInfo(BaseModel):
    """A session as listed in short-term memory."""

    session_id: str
    started_at: datetime
    last_active_at: datetime
    turns: int = Field(description="Turns recorded in the session (including ones since summarised).")
    agents: list[str]
    summary: str | None = Field(default=None, description="Latest summary of the session, if it was summarised.")


class SessionTranscript(BaseModel):
    """One session read back from memory."""

    session_id: str
    tier: Literal["working", "short_term"]
    turns: list[Turn]


class TierStats(BaseModel):
    """Size of one memory tier."""

    items: int
    bytes_on_disk: int
    status: Literal["ok", "damaged"] = "ok"
    damage: str | None = Field(default=None, description="What is damaged and what to do, when status is 'damaged'.")


class ServerStats(BaseModel):
    """What the server holds and how it is configured."""

    version: str
    status: Literal["loading", "ready", "degraded", "failed"] = Field(
        description="Whether the model and stores are open ('degraded': open, but a tier is damaged; see `damaged`)."
    )
    error: str | None = Field(default=None, description="Why opening failed, when status is 'failed'.")
    data_dir: str
    embedding_model: str
    embedding_dimensions: int | None = None
    long_term: TierStats | None = None
    sessions: TierStats | None = Field(default=None, description="Working and short-term memory (one diskcache).")
    knowledge: TierStats | None = Field(default=None, description="Knowledge memory: chunks of ingested documents.")
    graph: TierStats | None = Field(default=None, description="The users' graphs: entities and relations.")
    damaged: dict[str, str] = Field(
        default_factory=dict, description="Damaged tiers: what is damaged (tier, file) and what to do."
    )


class AgentActivity(BaseModel):
    """One agent that wrote memories of a user, with how many it wrote (as far as the asker may see)."""

    agent_id: str | None = Field(description="The agent, or null for memories written without an agent id.")
    shared: int = Field(description="Its memories shared with every agent of the user.")
    private: int = Field(description="Its private memories (counted only for the agent itself).")
    last_written_at: datetime | None = None


class MemoryUpdated(BaseModel):
    """Outcome of `update_memory`."""

    id: str = Field(description="The memory's id now: a new content gets a new content-addressed id.")
    previous_id: str | None = Field(default=None, description="The id before a content change, else null.")
    memory: Memory


class MemoryPage(BaseModel):
    """Outcome of `list_memories`: one page of the user's memories, newest first."""

    memories: list[Memory]
    next_offset: int | None = Field(description="Pass as `offset` for the next page; null when this is the last.")
