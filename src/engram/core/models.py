"""The vocabulary of Engram: identifiers, memories, turns, hits and the results of each operation."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: Accepted shape of every caller-supplied identifier (user, session, agent). Parsing ids at the
#: boundary is the first defence for storage filters; storage quotes literals as the second.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@+:-]{0,127}$"
ID_RULE = "1-128 characters: letters, digits and _ . @ + : - (starting with a letter or digit)"

#: Shape of a memory id (content-addressed, see `memory_id`).
MEMORY_ID_PATTERN = r"^[0-9a-f]{32}$"
MAX_QUERY_CHARS = 2000
#: Longest content `remember` accepts (the one limit: the tools' schemas, the setting's default and ceiling).
#: Well above any assistant answer; long content is indexed as passages (core/passages.py).
MAX_CONTENT_CHARS = 100_000

MAX_TAGS = 32
#: `list_memories` pages: at most this many memories per page, and pages reach this far.
MAX_PAGE = 100
MAX_OFFSET = 10_000
#: Which memory `recall` searches: personal memory (working and long-term), knowledge, or both.
RecallScope = Literal["memories", "knowledge", "both"]
MAX_METADATA_KEYS = 32
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


class RecallFilters(BaseModel):
    """Metadata conditions a memory must meet to be recalled or listed; unset fields do not filter.

    `viewer_agent` is not a choice of the caller's but who is asking: every query sees the user's shared
    memories plus the private memories of `viewer_agent` only.
    """

    model_config = ConfigDict(frozen=True)

    viewer_agent: str | None = None
    project: str | None = None
    project_scope: ProjectScope = "with_global"
    agents: list[str] = Field(default_factory=list)
    exclude_agents: list[str] = Field(default_factory=list)
    shared_only: bool = False
    session_id: str | None = None
    kind: Kind | None = None
    tags_any: list[str] = Field(default_factory=list)
    tags_all: list[str] = Field(default_factory=list)
    entity: str | None = None
    sentiment: Sentiment | None = None
    category: str | None = None
    resolved: bool | None = None
    min_importance: float | None = None
    since: datetime | None = None
    until: datetime | None = None

    def admits(self, agent_id: str | None, visibility: Visibility) -> bool:
        """Whether a memory or turn written by `agent_id` with `visibility` passes the agent rules."""
        if visibility is Visibility.PRIVATE and (self.shared_only or agent_id is None or agent_id != self.viewer_agent):
            return False
        if self.agents and agent_id not in self.agents:
            return False
        return not (self.exclude_agents and agent_id in self.exclude_agents)


class RememberItem(BaseModel):
    """One memory of a batch `remember_many` call (the same fields as `remember`)."""

    content: str = Field(description="The text to remember, verbatim.")
    session_id: str | None = Field(default=None, description="The conversation it belongs to, if any.")
    project: str | None = Field(default=None, description="The project it belongs to (default: global to the user).")
    role: Role | None = Field(default=None, description="Who said it (for a turn).")
    kind: Kind | None = None
    tags: list[str] = Field(default_factory=list)
    category: str | None = None
    entities: list[str] = Field(default_factory=list, description="People, organisations, products... it mentions.")
    sentiment: Sentiment | None = None
    resolved: bool | None = None
    visibility: Visibility = Field(
        default=Visibility.SHARED,
        description="'shared' (default) with every agent of the user, or 'private' to the writing agent.",
    )
    metadata: dict[str, MetadataValue] = Field(
        default_factory=dict, description="Extra key/value pairs; a 'speaker' entry names who said it."
    )
    importance: float | None = Field(default=None, ge=0.0, le=1.0)
    occurred_at: datetime | None = Field(default=None, description="When it happened (ISO 8601). Default: now.")


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
