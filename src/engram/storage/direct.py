"""Long-term memory on object storage: every write is one LanceDB commit, acknowledged once the store has it.

The local write journal (storage/journaled.py) acknowledges from a SQLite file on this machine, which a replica's
death would take with it; on object storage the commit itself is the durable acknowledgement. Replicas take turns
through the store's shared write lock (Redis), so each commit is one conditional insert on the content id: a write
retried after a failure, or sent by two replicas, is stored once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from engram.core.filters import MemoryFilters
from engram.core.models import AgentActivity, Memory
from engram.core.ports import Candidate, StoredMemory, Vectors
from engram.storage.long_term import LanceLongTermStore
from engram.storage.upkeep import Upkeep


class DirectLongTermStore:
    """The LongTermStore port over a LanceDB store whose commits are durable themselves, with upkeep in the
    background (one replica at a time: the store's upkeep lock)."""

    def __init__(self, store: LanceLongTermStore, upkeep: Upkeep | None = None) -> None:
        self.store = store
        self._upkeep = upkeep
        if upkeep is not None:
            upkeep.start()

    def _wrote(self) -> None:
        if self._upkeep is not None:
            self._upkeep.notify()

    def add(self, memory: Memory, index_text: str, vector: Vectors) -> bool:
        """Insert unless a memory with this id exists, in one durable commit; return whether it was inserted."""
        inserted = self.store.add(memory, index_text, vector)
        self._wrote()
        return inserted

    def add_many(self, memories: Sequence[Memory], index_texts: Sequence[str], vectors: Vectors) -> set[str]:
        """Insert, in one durable commit, those memories whose id is not stored yet; return the ids inserted."""
        inserted = self.store.add_many(memories, index_texts, vectors)
        self._wrote()
        return inserted

    def get(self, user_id: str, ids: Sequence[str]) -> list[Memory]:
        """Return the user's memories with these ids (missing ones are skipped)."""
        return self.store.get(user_id, ids)

    def add_passages(self, user_id: str, memory_id: str, texts: Sequence[str], vectors: Vectors) -> None:
        """Store a long memory's later passages in one durable commit."""
        self.store.add_passages(user_id, memory_id, texts, vectors)
        self._wrote()

    def vector_search(
        self, user_id: str, vector: Vectors, filters: MemoryFilters, limit: int, *, passages: bool = True
    ) -> list[Candidate]:
        """Up to `limit` of the user's memories matching `filters`, by cosine similarity, best first."""
        return self.store.vector_search(user_id, vector, filters, limit, passages=passages)

    def keyword_search(self, user_id: str, text: str, filters: MemoryFilters, limit: int) -> list[Candidate]:
        """Up to `limit` of the user's memories matching `filters`, by BM25 over the index text, best first."""
        return self.store.keyword_search(user_id, text, filters, limit)

    def delete(self, user_id: str, ids: Sequence[str]) -> int:
        """Delete the user's memories with these ids, and every object holding them; return how many."""
        return self.store.delete(user_id, ids)

    def list_memories(self, user_id: str, filters: MemoryFilters, limit: int, offset: int = 0) -> list[Memory]:
        """The user's memories matching `filters`, newest first, after `offset`."""
        return self.store.list_memories(user_id, filters, limit, offset)

    def replace(
        self, user_id: str, old_id: str, memory: Memory, index_text: str | None = None, vector: Vectors | None = None
    ) -> bool:
        """Replace memory `old_id` by `memory` atomically."""
        replaced = self.store.replace(user_id, old_id, memory, index_text, vector)
        self._wrote()
        return replaced

    def agent_activity(self, user_id: str) -> list[AgentActivity]:
        """Per agent that wrote the user's memories: shared and private counts and the latest write."""
        return self.store.agent_activity(user_id)

    def delete_older_than(self, cutoff: datetime, category: str | None = None, exclude: Sequence[str] = ()) -> int:
        """Delete memories of every user created before `cutoff`: of one category, or of all but `exclude`."""
        return self.store.delete_older_than(cutoff, category, exclude)

    def delete_user(self, user_id: str) -> int:
        """Delete every memory of the user; return how many were deleted."""
        return self.store.delete_user(user_id)

    def stored_memories(self, user_id: str, project: str | None = None) -> list[StoredMemory]:
        """Every memory of the user (of one project, if given), whatever its agent or visibility, oldest first."""
        return self.store.stored_memories(user_id, project)

    def delete_project(self, user_id: str, project: str) -> list[str]:
        """Delete every memory of the user's project, and every object holding them; return the ids deleted."""
        return self.store.delete_project(user_id, project)

    def traces_of(self, user_id: str) -> list[str]:
        """What is left of the user in the bucket (rows, older versions, objects holding the key)."""
        return self.store.traces_of(user_id)

    def count(self) -> int:
        """Number of memories of all users."""
        return self.store.count()

    def bytes_on_disk(self) -> int:
        """Size of the store's objects."""
        return self.store.bytes_on_disk()

    def close(self) -> None:
        """Stop upkeep and release the table."""
        if self._upkeep is not None:
            self._upkeep.stop()
        self.store.close()

    def __getattr__(self, name: str) -> Any:
        # Maintenance and inspection (optimize, health, upkeep) go to the LanceDB store itself.
        if name == "store":
            raise AttributeError(name)
        return getattr(self.store, name)
