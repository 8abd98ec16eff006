"""The memory tiers as one protocol, so that erasure, retention, stats and closing go over every tier alike.

Each tier answers in the vocabulary of the receipts: `erase_user` and `purge` return counts under the names of
`ForgetReceipt` and `PurgeReport` fields, so a new tier adds its fields there and nothing else names it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Protocol, TypeVar

import anyio.to_thread

from engram.core.identity import UserKey
from engram.core.models import TierStats
from engram.core.policy import MemoryPolicy
from engram.core.ports import GraphStore, LongTermStore, SessionStore

if TYPE_CHECKING:
    from engram.core.knowledge import KnowledgeService

T = TypeVar("T")


async def _run(fn: Callable[[], T]) -> T:
    return await anyio.to_thread.run_sync(fn)


class Tier(Protocol):
    """One tier of memory, as erasure, retention, stats and shutdown see it."""

    #: The key of the tier in stats (`long_term`, `sessions`, `knowledge`).
    name: str
    #: How damage reports and traces name the tier (`long-term`, `session`, `knowledge`).
    label: str

    async def erase_user(self, key: UserKey) -> dict[str, int]:
        """Erase everything of the user in this tier; counts by receipt field."""
        ...

    async def traces_of(self, key: UserKey) -> list[str]:
        """What is left of the user in this tier, as 'store: place', without content (empty once erased)."""
        ...

    async def purge(self, now: datetime, policy: MemoryPolicy) -> dict[str, int]:
        """Apply retention and expiry; counts by report field."""
        ...

    async def stats(self) -> TierStats:
        """Items and bytes on disk."""
        ...

    def close(self) -> None:
        """Release the tier's store."""
        ...


class LongTermTier:
    """Long-term memory: every remembered fact, turn and summary."""

    name, label = "long_term", "long-term"

    def __init__(self, store: LongTermStore) -> None:
        self._store = store

    async def erase_user(self, key: UserKey) -> dict[str, int]:
        """Delete every memory of the user (the store compacts and cleans up so that nothing remains on disk)."""
        return {"long_term": await _run(partial(self._store.delete_user, key))}

    async def traces_of(self, key: UserKey) -> list[str]:
        """Rows, older versions and files that still hold the user."""
        return [f"long-term store: {trace}" for trace in await _run(partial(self._store.traces_of, key))]

    async def purge(self, now: datetime, policy: MemoryPolicy) -> dict[str, int]:
        """Delete memories past their retention: per category first, then the general limit for the rest."""
        deleted = 0
        for category, age in policy.retention_by_category.items():
            deleted += await _run(partial(self._store.delete_older_than, now - age, category))
        if policy.retention is not None:
            exclude = list(policy.retention_by_category)
            deleted += await _run(partial(self._store.delete_older_than, now - policy.retention, None, exclude))
        return {"long_term": deleted}

    async def stats(self) -> TierStats:
        """Memories of all users and the table's size."""
        return TierStats(items=await _run(self._store.count), bytes_on_disk=await _run(self._store.bytes_on_disk))

    def close(self) -> None:
        """Close the table (and its journal)."""
        self._store.close()


class SessionTier:
    """Working and short-term memory: recent turns and sessions."""

    name, label = "sessions", "session"

    def __init__(self, store: SessionStore) -> None:
        self._store = store

    async def erase_user(self, key: UserKey) -> dict[str, int]:
        """Erase the user's sessions in both tiers."""
        working, short_term = await _run(partial(self._store.forget_user, key))
        return {"working": working, "short_term": short_term}

    async def traces_of(self, key: UserKey) -> list[str]:
        """Entries and files that still hold the user."""
        return [f"session cache: {trace}" for trace in await _run(partial(self._store.traces_of, key))]

    async def purge(self, now: datetime, policy: MemoryPolicy) -> dict[str, int]:
        """Remove expired entries physically."""
        return {"expired_session_entries": await _run(self._store.purge_expired)}

    async def stats(self) -> TierStats:
        """Entries of all users and the cache's size."""
        return TierStats(items=await _run(self._store.count), bytes_on_disk=await _run(self._store.bytes_on_disk))

    def close(self) -> None:
        """Close the cache."""
        self._store.close()


class KnowledgeTier:
    """Knowledge memory: ingested documents, global or the user's own."""

    name, label = "knowledge", "knowledge"

    def __init__(self, knowledge: KnowledgeService) -> None:
        self._knowledge = knowledge

    async def erase_user(self, key: UserKey) -> dict[str, int]:
        """Erase the user's own sources (global knowledge is nobody's to erase)."""
        return {"knowledge": await self._knowledge.forget_owner(key)}

    async def traces_of(self, key: UserKey) -> list[str]:
        """Chunks and files that still hold the user as owner."""
        return [f"knowledge store: {trace}" for trace in await self._knowledge.traces_of_owner(key)]

    async def purge(self, now: datetime, policy: MemoryPolicy) -> dict[str, int]:
        """Documents are kept until re-ingested or removed: retention does not apply."""
        return {}

    async def stats(self) -> TierStats:
        """Chunks of all owners and the table's size."""
        store = self._knowledge.store
        return TierStats(items=await _run(store.count), bytes_on_disk=await _run(store.bytes_on_disk))

    def close(self) -> None:
        """Close the store."""
        self._knowledge.close()


class GraphTier:
    """The users' graphs: entities and relations (their observations are long-term memories)."""

    name, label = "graph", "graph"

    def __init__(self, store: GraphStore) -> None:
        self._store = store

    async def erase_user(self, key: UserKey) -> dict[str, int]:
        """Delete every entity and relation of the user (compacted and cleaned up, like long-term memory)."""
        return {"graph": await _run(partial(self._store.delete_user, key))}

    async def traces_of(self, key: UserKey) -> list[str]:
        """Rows, older versions and files that still hold the user."""
        return [f"graph store: {trace}" for trace in await _run(partial(self._store.traces_of, key))]

    async def purge(self, now: datetime, policy: MemoryPolicy) -> dict[str, int]:
        """Entities and relations stay while the user keeps them: retention applies to their memories."""
        return {}

    async def stats(self) -> TierStats:
        """Entities and relations of all users and the tables' size."""
        return TierStats(items=await _run(self._store.count), bytes_on_disk=await _run(self._store.bytes_on_disk))

    def close(self) -> None:
        """Close the tables."""
        self._store.close()
