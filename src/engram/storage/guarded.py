"""The storage ports behind a fault translator: each port method runs its store's and raises Engram's own errors.

Explicit decorators, one per port, so the type checker holds each against its protocol and a reader sees the
API; `faults.translated` does the translating (engine error to TierDamaged or StorageFailure, recorded in health).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from engram.core.filters import MemoryFilters
from engram.core.graph_models import Entity, Relation
from engram.core.health import TierHealth
from engram.core.identity import UserKey
from engram.core.knowledge_models import ChunkCandidate, KnowledgeChunk, KnowledgeStore, StoredSource
from engram.core.models import AgentActivity, Memory, SessionInfo, Turn
from engram.core.ports import (
    AppendedTurn,
    Candidate,
    GraphStore,
    LongTermStore,
    SessionStore,
    StoredMemory,
    Vectors,
)
from engram.storage.faults import translated

T = TypeVar("T")


class _Guard:
    """Which tier a store is, where its files are, and where damage is recorded."""

    def __init__(self, tier: str, directory: Path, health: TierHealth) -> None:
        self._tier, self._directory, self._health = tier, directory, health

    def _run(self, call: Callable[[], T]) -> T:
        return translated(call, self._tier, self._directory, self._health)


class GuardedLongTermStore(_Guard, LongTermStore):
    """The LongTermStore port over `inner`, raising TierDamaged or StorageFailure instead of engine errors."""

    def __init__(self, inner: LongTermStore, tier: str, directory: Path, health: TierHealth) -> None:
        super().__init__(tier, directory, health)
        self.inner = inner

    def add(self, memory: Memory, index_text: str, vector: Vectors) -> bool:
        """See LongTermStore.add."""
        return self._run(lambda: self.inner.add(memory, index_text, vector))

    def add_many(self, memories: Sequence[Memory], index_texts: Sequence[str], vectors: Vectors) -> set[str]:
        """See LongTermStore.add_many."""
        return self._run(lambda: self.inner.add_many(memories, index_texts, vectors))

    def get(self, user_id: UserKey, ids: Sequence[str]) -> list[Memory]:
        """See LongTermStore.get."""
        return self._run(lambda: self.inner.get(user_id, ids))

    def add_passages(self, user_id: UserKey, memory_id: str, texts: Sequence[str], vectors: Vectors) -> None:
        """See LongTermStore.add_passages."""
        self._run(lambda: self.inner.add_passages(user_id, memory_id, texts, vectors))

    def vector_search(
        self, user_id: UserKey, vector: Vectors, filters: MemoryFilters, limit: int, *, passages: bool = True
    ) -> list[Candidate]:
        """See LongTermStore.vector_search."""
        return self._run(lambda: self.inner.vector_search(user_id, vector, filters, limit, passages=passages))

    def keyword_search(self, user_id: UserKey, text: str, filters: MemoryFilters, limit: int) -> list[Candidate]:
        """See LongTermStore.keyword_search."""
        return self._run(lambda: self.inner.keyword_search(user_id, text, filters, limit))

    def delete(self, user_id: UserKey, ids: Sequence[str]) -> int:
        """See LongTermStore.delete."""
        return self._run(lambda: self.inner.delete(user_id, ids))

    def list_memories(self, user_id: UserKey, filters: MemoryFilters, limit: int, offset: int = 0) -> list[Memory]:
        """See LongTermStore.list_memories."""
        return self._run(lambda: self.inner.list_memories(user_id, filters, limit, offset))

    def replace(
        self,
        user_id: UserKey,
        old_id: str,
        memory: Memory,
        index_text: str | None = None,
        vector: Vectors | None = None,
    ) -> bool:
        """See LongTermStore.replace."""
        return self._run(lambda: self.inner.replace(user_id, old_id, memory, index_text, vector))

    def agent_activity(self, user_id: UserKey) -> list[AgentActivity]:
        """See LongTermStore.agent_activity."""
        return self._run(lambda: self.inner.agent_activity(user_id))

    def delete_older_than(self, cutoff: datetime, category: str | None = None, exclude: Sequence[str] = ()) -> int:
        """See LongTermStore.delete_older_than."""
        return self._run(lambda: self.inner.delete_older_than(cutoff, category, exclude))

    def stored_memories(self, user_id: UserKey, project: str | None = None) -> list[StoredMemory]:
        """See LongTermStore.stored_memories."""
        return self._run(lambda: self.inner.stored_memories(user_id, project))

    def delete_project(self, user_id: UserKey, project: str) -> list[str]:
        """See LongTermStore.delete_project."""
        return self._run(lambda: self.inner.delete_project(user_id, project))

    def delete_user(self, user_id: UserKey) -> int:
        """See LongTermStore.delete_user."""
        return self._run(lambda: self.inner.delete_user(user_id))

    def traces_of(self, user_id: UserKey) -> list[str]:
        """See LongTermStore.traces_of."""
        return self._run(lambda: self.inner.traces_of(user_id))

    def count(self) -> int:
        """See LongTermStore.count."""
        return self._run(self.inner.count)

    def bytes_on_disk(self) -> int:
        """See LongTermStore.bytes_on_disk."""
        return self._run(self.inner.bytes_on_disk)

    def close(self) -> None:
        """See LongTermStore.close."""
        self._run(self.inner.close)


class GuardedSessionStore(_Guard, SessionStore):
    """The SessionStore port over `inner`, raising TierDamaged or StorageFailure instead of engine errors."""

    def __init__(self, inner: SessionStore, tier: str, directory: Path, health: TierHealth) -> None:
        super().__init__(tier, directory, health)
        self.inner = inner

    def append_turn(self, user_id: UserKey, session_id: str, turn: Turn, now: datetime) -> AppendedTurn:
        """See SessionStore.append_turn."""
        return self._run(lambda: self.inner.append_turn(user_id, session_id, turn, now))

    def working(self, user_id: UserKey, session_id: str) -> list[Turn]:
        """See SessionStore.working."""
        return self._run(lambda: self.inner.working(user_id, session_id))

    def transcript(self, user_id: UserKey, session_id: str) -> list[Turn] | None:
        """See SessionStore.transcript."""
        return self._run(lambda: self.inner.transcript(user_id, session_id))

    def summarized_until(self, user_id: UserKey, session_id: str) -> int:
        """See SessionStore.summarized_until."""
        return self._run(lambda: self.inner.summarized_until(user_id, session_id))

    def apply_summary(self, user_id: UserKey, session_id: str, summary: Turn, keep_from_seq: int, now: datetime) -> int:
        """See SessionStore.apply_summary."""
        return self._run(lambda: self.inner.apply_summary(user_id, session_id, summary, keep_from_seq, now))

    def remove_memory(self, user_id: UserKey, memory_id: str) -> int:
        """See SessionStore.remove_memory."""
        return self._run(lambda: self.inner.remove_memory(user_id, memory_id))

    def sessions(self, user_id: UserKey) -> list[SessionInfo]:
        """See SessionStore.sessions."""
        return self._run(lambda: self.inner.sessions(user_id))

    def purge_expired(self) -> int:
        """See SessionStore.purge_expired."""
        return self._run(self.inner.purge_expired)

    def forget_user(self, user_id: UserKey) -> tuple[int, int]:
        """See SessionStore.forget_user."""
        return self._run(lambda: self.inner.forget_user(user_id))

    def traces_of(self, user_id: UserKey) -> list[str]:
        """See SessionStore.traces_of."""
        return self._run(lambda: self.inner.traces_of(user_id))

    def count(self) -> int:
        """See SessionStore.count."""
        return self._run(self.inner.count)

    def bytes_on_disk(self) -> int:
        """See SessionStore.bytes_on_disk."""
        return self._run(self.inner.bytes_on_disk)

    def close(self) -> None:
        """See SessionStore.close."""
        self._run(self.inner.close)


class GuardedKnowledgeStore(_Guard, KnowledgeStore):
    """The KnowledgeStore port over `inner`, raising TierDamaged or StorageFailure instead of engine errors."""

    def __init__(self, inner: KnowledgeStore, tier: str, directory: Path, health: TierHealth) -> None:
        super().__init__(tier, directory, health)
        self.inner = inner

    def sources(self, owners: Sequence[UserKey]) -> list[StoredSource]:
        """See KnowledgeStore.sources."""
        return self._run(lambda: self.inner.sources(owners))

    def vectors_of(self, owner: UserKey, sources: Sequence[str]) -> dict[str, Vectors]:
        """See KnowledgeStore.vectors_of."""
        return self._run(lambda: self.inner.vectors_of(owner, sources))

    def replace_sources(
        self, owner: UserKey, sources: Sequence[str], chunks: Sequence[KnowledgeChunk], vectors: Vectors
    ) -> None:
        """See KnowledgeStore.replace_sources."""
        self._run(lambda: self.inner.replace_sources(owner, sources, chunks, vectors))

    def chunks_of(self, owner: UserKey) -> list[ChunkCandidate]:
        """See KnowledgeStore.chunks_of."""
        return self._run(lambda: self.inner.chunks_of(owner))

    def remove_sources(self, owner: UserKey, sources: Sequence[str]) -> int:
        """See KnowledgeStore.remove_sources."""
        return self._run(lambda: self.inner.remove_sources(owner, sources))

    def vector_search(self, owners: Sequence[UserKey], vector: Vectors, limit: int) -> list[ChunkCandidate]:
        """See KnowledgeStore.vector_search."""
        return self._run(lambda: self.inner.vector_search(owners, vector, limit))

    def keyword_search(self, owners: Sequence[UserKey], text: str, limit: int) -> list[ChunkCandidate]:
        """See KnowledgeStore.keyword_search."""
        return self._run(lambda: self.inner.keyword_search(owners, text, limit))

    def delete_owner(self, owner: UserKey) -> int:
        """See KnowledgeStore.delete_owner."""
        return self._run(lambda: self.inner.delete_owner(owner))

    def traces_of_owner(self, owner: UserKey) -> list[str]:
        """See KnowledgeStore.traces_of_owner."""
        return self._run(lambda: self.inner.traces_of_owner(owner))

    def optimize(self) -> None:
        """See KnowledgeStore.optimize."""
        self._run(self.inner.optimize)

    def count(self) -> int:
        """See KnowledgeStore.count."""
        return self._run(self.inner.count)

    def holds_nothing(self) -> bool:
        """See KnowledgeStore.holds_nothing."""
        return self._run(self.inner.holds_nothing)

    def bytes_on_disk(self) -> int:
        """See KnowledgeStore.bytes_on_disk."""
        return self._run(self.inner.bytes_on_disk)

    def close(self) -> None:
        """See KnowledgeStore.close."""
        self._run(self.inner.close)


class GuardedGraphStore(_Guard, GraphStore):
    """The GraphStore port over `inner`, raising TierDamaged or StorageFailure instead of engine errors."""

    def __init__(self, inner: GraphStore, tier: str, directory: Path, health: TierHealth) -> None:
        super().__init__(tier, directory, health)
        self.inner = inner

    def upsert_entities(self, entities: Sequence[Entity]) -> None:
        """See GraphStore.upsert_entities."""
        self._run(lambda: self.inner.upsert_entities(entities))

    def entities(
        self, user_id: UserKey, filters: MemoryFilters, keys: Sequence[str] | None, limit: int
    ) -> list[Entity]:
        """See GraphStore.entities."""
        return self._run(lambda: self.inner.entities(user_id, filters, keys, limit))

    def delete_entities(self, user_id: UserKey, ids: Sequence[str]) -> int:
        """See GraphStore.delete_entities."""
        return self._run(lambda: self.inner.delete_entities(user_id, ids))

    def upsert_relations(self, relations: Sequence[Relation]) -> set[str]:
        """See GraphStore.upsert_relations."""
        return self._run(lambda: self.inner.upsert_relations(relations))

    def relations(
        self, user_id: UserKey, filters: MemoryFilters, keys: Sequence[str] | None, limit: int
    ) -> list[Relation]:
        """See GraphStore.relations."""
        return self._run(lambda: self.inner.relations(user_id, filters, keys, limit))

    def delete_relations(self, user_id: UserKey, ids: Sequence[str]) -> int:
        """See GraphStore.delete_relations."""
        return self._run(lambda: self.inner.delete_relations(user_id, ids))

    def delete_user(self, user_id: UserKey) -> int:
        """See GraphStore.delete_user."""
        return self._run(lambda: self.inner.delete_user(user_id))

    def traces_of(self, user_id: UserKey) -> list[str]:
        """See GraphStore.traces_of."""
        return self._run(lambda: self.inner.traces_of(user_id))

    def count(self) -> int:
        """See GraphStore.count."""
        return self._run(self.inner.count)

    def holds_nothing(self) -> bool:
        """See GraphStore.holds_nothing."""
        return self._run(self.inner.holds_nothing)

    def bytes_on_disk(self) -> int:
        """See GraphStore.bytes_on_disk."""
        return self._run(self.inner.bytes_on_disk)

    def close(self) -> None:
        """See GraphStore.close."""
        self._run(self.inner.close)


def _each_decorator_is_its_port(
    long_term: GuardedLongTermStore,
    sessions: GuardedSessionStore,
    knowledge: GuardedKnowledgeStore,
    graph: GuardedGraphStore,
) -> tuple[LongTermStore, SessionStore, KnowledgeStore, GraphStore]:
    # Never called: the type checker refuses it if a decorator lacks a method of its port or changes one.
    return long_term, sessions, knowledge, graph
