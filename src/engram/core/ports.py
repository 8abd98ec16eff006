"""The interfaces the core needs from its embedder and stores; storage/ and embeddings/ implement them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import numpy as np
import numpy.typing as npt

from engram.core.filters import MemoryFilters
from engram.core.graph_models import Entity, Relation
from engram.core.identity import UserKey
from engram.core.models import AgentActivity, Memory, Sentiment, SessionInfo, Turn

Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Candidate:
    """A memory found by one retrieval method, with that method's raw score and the memory's vector."""

    memory: Memory
    score: float
    vector: Vectors
    #: For a long memory matched by one of its later passages: that passage (its vector is `vector`).
    passage: str | None = None


@dataclass(frozen=True)
class StoredMemory:
    """A memory with what the store keeps beside it: its index text and vector (for export and restore)."""

    memory: Memory
    index_text: str
    vector: Vectors


@dataclass(frozen=True)
class AppendedTurn:
    """Where a turn landed in its session."""

    seq: int
    working_turns: int
    previous: Turn | None


class Embedder(Protocol):
    """Turns texts into unit-length vectors; `embed` may block and is called from a worker thread."""

    @property
    def model_id(self) -> str:
        """Stable identity of the model (recorded with the stored vectors)."""
        ...

    @property
    def dimensions(self) -> int:
        """Length of every vector."""
        ...

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Return one L2-normalised float32 row per text."""
        ...


class LongTermStore(Protocol):
    """Durable store of memories with vector search; every read and delete is scoped to one user."""

    def add(self, memory: Memory, index_text: str, vector: Vectors) -> bool:
        """Insert unless a memory with this id exists; return whether it was inserted.

        `index_text` is what keyword search matches (content plus context); `vector` embeds the same text.
        """
        ...

    def add_many(self, memories: Sequence[Memory], index_texts: Sequence[str], vectors: Vectors) -> set[str]:
        """Insert, in one commit, those memories whose id is not stored yet; return the ids inserted."""
        ...

    def add_passages(self, user_id: UserKey, memory_id: str, texts: Sequence[str], vectors: Vectors) -> None:
        """Store the later passages of a long memory, each with its vector; vector search then scores the memory
        by its best passage. Erasing the memory erases them."""
        ...

    def get(self, user_id: UserKey, ids: Sequence[str]) -> list[Memory]:
        """Return the user's memories with these ids (missing ones are skipped)."""
        ...

    def vector_search(
        self, user_id: UserKey, vector: Vectors, filters: MemoryFilters, limit: int, *, passages: bool = True
    ) -> list[Candidate]:
        """Up to `limit` of the user's memories matching `filters`, by cosine similarity (the score), best first.

        A long memory scores by its best passage; `passages=False` compares the memories' own vectors only."""
        ...

    def keyword_search(self, user_id: UserKey, text: str, filters: MemoryFilters, limit: int) -> list[Candidate]:
        """Up to `limit` of the user's memories matching `filters`, by BM25 over the index text, best first."""
        ...

    def delete(self, user_id: UserKey, ids: Sequence[str]) -> int:
        """Delete the user's memories with these ids; return how many were deleted."""
        ...

    def list_memories(self, user_id: UserKey, filters: MemoryFilters, limit: int, offset: int = 0) -> list[Memory]:
        """The user's memories matching `filters` (agent visibility included), newest first, after `offset`."""
        ...

    def replace(
        self,
        user_id: UserKey,
        old_id: str,
        memory: Memory,
        index_text: str | None = None,
        vector: Vectors | None = None,
    ) -> bool:
        """Replace memory `old_id` by `memory` atomically, keeping index text and vector unless given."""
        ...

    def agent_activity(self, user_id: UserKey) -> list[AgentActivity]:
        """Per agent that wrote the user's memories: shared and private counts and the latest write."""
        ...

    def delete_older_than(self, cutoff: datetime, category: str | None = None, exclude: Sequence[str] = ()) -> int:
        """Delete memories of every user created before `cutoff`: of one category, or of all but `exclude`."""
        ...

    def stored_memories(self, user_id: UserKey, project: str | None = None) -> list[StoredMemory]:
        """Every memory of the user (of one project, if given), whatever its agent or visibility, oldest first."""
        ...

    def delete_project(self, user_id: UserKey, project: str) -> list[str]:
        """Delete every memory of the user's project; return the ids deleted."""
        ...

    def delete_user(self, user_id: UserKey) -> int:
        """Delete every memory of the user; return how many were deleted."""
        ...

    def traces_of(self, user_id: UserKey) -> list[str]:
        """What is left of the user on disk (rows, older table versions, files holding the key), without content."""
        ...

    def count(self) -> int:
        """Number of memories of all users."""
        ...

    def bytes_on_disk(self) -> int:
        """Size of the store's files."""
        ...

    def close(self) -> None:
        """Release the store."""
        ...


class SessionStore(Protocol):
    """Working memory (recent turns of a session) and short-term memory (recent sessions of a user)."""

    def append_turn(self, user_id: UserKey, session_id: str, turn: Turn, now: datetime) -> AppendedTurn:
        """Record a turn in both tiers and refresh their expiry; say where it landed and what preceded it.

        The turn's `seq` is assigned by the store (its position in the session); the given one is ignored. The
        same speaker repeating the same content back to back is a retried call and is not appended again.
        """
        ...

    def working(self, user_id: UserKey, session_id: str) -> list[Turn]:
        """The session's working memory, oldest first (empty when expired or unknown)."""
        ...

    def transcript(self, user_id: UserKey, session_id: str) -> list[Turn] | None:
        """The session's short-term transcript (verbatim turns), or None when unknown or expired."""
        ...

    def summarized_until(self, user_id: UserKey, session_id: str) -> int:
        """Seq before which the session's turns are already covered by a summary (0 if none)."""
        ...

    def apply_summary(self, user_id: UserKey, session_id: str, summary: Turn, keep_from_seq: int, now: datetime) -> int:
        """Replace working turns older than `keep_from_seq` by `summary`; return the working turn count."""
        ...

    def remove_memory(self, user_id: UserKey, memory_id: str) -> int:
        """Drop every turn (or summary) of the user's sessions that holds `memory_id`; return how many."""
        ...

    def sessions(self, user_id: UserKey) -> list[SessionInfo]:
        """The user's sessions still in short-term memory, most recently active first."""
        ...

    def purge_expired(self) -> int:
        """Physically remove expired working and short-term entries; return how many."""
        ...

    def forget_user(self, user_id: UserKey) -> tuple[int, int]:
        """Erase every entry of the user; return (working sessions, short-term sessions) erased."""
        ...

    def traces_of(self, user_id: UserKey) -> list[str]:
        """What is left of the user (entries, files holding the key), named without content."""
        ...

    def count(self) -> int:
        """Number of entries in the cache."""
        ...

    def bytes_on_disk(self) -> int:
        """Size of the cache's files."""
        ...

    def close(self) -> None:
        """Release the cache."""
        ...


class GraphStore(Protocol):
    """Each user's entities and relations; every read and delete is scoped to one user and the asking agent."""

    def upsert_entities(self, entities: Sequence[Entity]) -> None:
        """Insert these entities, or replace the stored ones with the same id, in one commit."""
        ...

    def entities(
        self, user_id: UserKey, filters: MemoryFilters, keys: Sequence[str] | None, limit: int
    ) -> list[Entity]:
        """The user's entities (visible under `filters`) whose name or an alias has one of `keys` (None: all)."""
        ...

    def delete_entities(self, user_id: UserKey, ids: Sequence[str]) -> int:
        """Delete the user's entities with these ids; return how many were deleted."""
        ...

    def upsert_relations(self, relations: Sequence[Relation]) -> set[str]:
        """Insert these relations, or replace the stored ones with the same id; return the ids that were new."""
        ...

    def relations(
        self, user_id: UserKey, filters: MemoryFilters, keys: Sequence[str] | None, limit: int
    ) -> list[Relation]:
        """The user's relations (visible under `filters`) from or to an entity with one of `keys` (None: all)."""
        ...

    def delete_relations(self, user_id: UserKey, ids: Sequence[str]) -> int:
        """Delete the user's relations with these ids; return how many were deleted."""
        ...

    def delete_user(self, user_id: UserKey) -> int:
        """Delete every entity and relation of the user; return how many were deleted."""
        ...

    def traces_of(self, user_id: UserKey) -> list[str]:
        """What is left of the user on disk (rows, older table versions, files holding the key), without content."""
        ...

    def count(self) -> int:
        """Number of entities and relations of all users."""
        ...

    def holds_nothing(self) -> bool:
        """True when the store has surely never held an entity, told without blocking (False: it may hold some)."""
        ...

    def bytes_on_disk(self) -> int:
        """Size of the store's files."""
        ...

    def close(self) -> None:
        """Release the store."""
        ...


@dataclass(frozen=True)
class Enrichment:
    """Metadata found in one memory's text: keyword tags, sentiment, named entities and a category."""

    tags: list[str] = field(default_factory=list)
    sentiment: Sentiment | None = None
    #: The analyser's polarity, -1 (most negative) to 1 (most positive).
    sentiment_score: float | None = None
    #: Surface forms, in order of first mention; `entity_types` gives each one's type (person, place, ...).
    entities: list[str] = field(default_factory=list)
    entity_types: dict[str, str] = field(default_factory=dict)
    #: The closest label of the configured set, or None when no label is clearly close enough.
    category: str | None = None


class Enricher(Protocol):
    """Extracts metadata from memories on write; `enrich` may block and is called from a worker thread."""

    def enrich(
        self, texts: Sequence[str], vectors: Vectors, *, tagged: Sequence[bool] | None = None
    ) -> list[Enrichment]:
        """One Enrichment per text; `vectors` are the texts' normalised embeddings, already computed.

        `tagged` says per text whether to extract keyword tags (default: for every text).
        """
        ...


class MemoryMetrics(Protocol):
    """Where the service reports how its work went; the HTTP server exports it, the default drops it.

    `user_key` is always the pseudonym, never a caller's user id; an exporter may ignore it (the default).
    """

    def observe_recall_tier(self, tier: str, seconds: float) -> None:
        """Time one recall spent on one tier (`working`, `long_term`)."""
        ...

    def observe_recall_results(
        self, user_key: UserKey, scores: Sequence[float], similarities: Sequence[float], dropped: int
    ) -> None:
        """The ranking scores and cosine similarities of the hits a recall returned, and how many min_score dropped."""
        ...

    def observe_embedding(self, texts: int, seconds: float) -> None:
        """One call of the embedding model: how many texts, how long."""
        ...

    def observe_write(self, user_key: UserKey, memories: int, created: int) -> None:
        """A remember call: memories written and how many of them were new."""
        ...


class NoMetrics:
    """The MemoryMetrics of a service nobody observes (stdio, CLI, tests)."""

    def observe_recall_tier(self, tier: str, seconds: float) -> None:
        """Ignored."""

    def observe_recall_results(
        self, user_key: UserKey, scores: Sequence[float], similarities: Sequence[float], dropped: int
    ) -> None:
        """Ignored."""

    def observe_embedding(self, texts: int, seconds: float) -> None:
        """Ignored."""

    def observe_write(self, user_key: UserKey, memories: int, created: int) -> None:
        """Ignored."""
