"""KnowledgeService: knowledge memory (ingest documents, list and remove sources, search them with citations).

Adapters name a user by the raw id they were given (None: the global knowledge every user shares); the service
resolves it to the key the store knows the user by, so no adapter ever handles a pseudonym.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TypeVar

import anyio.to_thread

from engram.core.errors import InvalidInput, quoted
from engram.core.identity import GLOBAL_OWNER, UserKey, unkeyed
from engram.core.knowledge_files import MAX_GLOBS
from engram.core.knowledge_ingest import (
    KnowledgeIngest,
    KnowledgePolicy,
    Progress,
    chunk_id,
    chunk_index_text,
)
from engram.core.knowledge_models import (
    DocumentFormat,
    DocumentParser,
    IngestReport,
    KnowledgeSource,
    KnowledgeStore,
    SourceRemoved,
    scope_of,
)
from engram.core.knowledge_search import search_knowledge
from engram.core.models import KnowledgeHit
from engram.core.ports import Embedder, Vectors
from engram.core.ranking import RankingPolicy
from engram.core.timeutil import utc_now
from engram.core.validation import check_id

__all__ = ["MAX_GLOBS", "KnowledgePolicy", "KnowledgeService", "Progress", "chunk_id", "chunk_index_text", "scope_of"]

T = TypeVar("T")


class KnowledgeService:
    """Knowledge memory over its ports: documents in, cited chunks out; global or per-user sources."""

    def __init__(
        self,
        embedder: Embedder,
        store: KnowledgeStore,
        parse: DocumentParser,
        policy: KnowledgePolicy | None = None,
        ranking: RankingPolicy | None = None,
        clock: Callable[[], datetime] | None = None,
        pseudonymize: Callable[[str], UserKey] = unkeyed,
    ) -> None:
        self.embedder = embedder
        self.store = store
        self.ranking = ranking or RankingPolicy()
        #: How user ids become store keys; MemoryService sets its own, so both tiers know a user by one key.
        self.pseudonymize = pseudonymize
        self._ingest = KnowledgeIngest(embedder, store, parse, policy or KnowledgePolicy(), clock or utc_now, self._run)

    @property
    def policy(self) -> KnowledgePolicy:
        """Chunking and the limits of an ingest."""
        return self._ingest.policy

    @policy.setter
    def policy(self, value: KnowledgePolicy) -> None:
        self._ingest.policy = value

    async def _run(self, fn: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(fn)

    def owner(self, user_id: str | None) -> UserKey:
        """The key knowledge of `user_id` is stored under: the global owner for None, else the user's pseudonym."""
        return GLOBAL_OWNER if user_id is None else self.pseudonymize(check_id("user_id", user_id))

    async def ingest_paths(
        self,
        user_id: str | None,
        paths: Sequence[str | Path],
        *,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        confined: bool = False,
        progress: Progress | None = None,
    ) -> IngestReport:
        """Ingest files and folders (recursively) as the user's own knowledge, or global knowledge for None.

        See `KnowledgeIngest.ingest_paths`: unchanged files are skipped, each file is replaced whole, files gone
        from an ingested folder are erased, and `confined` keeps paths under the policy's roots.
        """
        return await self._ingest.ingest_paths(
            self.owner(user_id), paths, include=include, exclude=exclude, confined=confined, progress=progress
        )

    async def ingest_text(
        self, user_id: str | None, source: str, text: str, fmt: DocumentFormat, title: str | None = None
    ) -> IngestReport:
        """Ingest one document sent as text under the name `source`, replacing that source's earlier version."""
        return await self._ingest.ingest_text(self.owner(user_id), source, text, fmt, title)

    async def sources(self, user_id: str | None) -> list[KnowledgeSource]:
        """The sources a user sees (global and their own), or only the global ones without a user."""
        owners = [GLOBAL_OWNER] if user_id is None else [GLOBAL_OWNER, self.owner(user_id)]
        stored = await self._run(partial(self.store.sources, owners))
        return [
            KnowledgeSource(
                source=s.source,
                title=s.title,
                scope=scope_of(s.owner),
                origin=s.origin,
                chunks=s.chunks,
                ingested_at=s.ingested_at,
            )
            for s in sorted(stored, key=lambda s: (s.owner != GLOBAL_OWNER, s.source))
        ]

    async def remove_source(self, user_id: str | None, source: str) -> SourceRemoved:
        """Erase one source of the user (global knowledge for None): all its chunks, physically."""
        owner = self.owner(user_id)
        stored = {s.source for s in await self._run(partial(self.store.sources, [owner]))}
        if source not in stored:
            raise InvalidInput(
                "source",
                f"no {scope_of(owner)} knowledge source {quoted(source)}; list the sources with the "
                "engram://users/{user_id}/knowledge resource or `engram sources`.",
            )
        chunks = await self._run(partial(self.store.remove_sources, owner, [source]))
        return SourceRemoved(source=source, scope=scope_of(owner), chunks=chunks)

    async def forget_owner(self, owner: UserKey) -> int:
        """Erase every source of a user; return how many chunks were erased."""
        if owner == GLOBAL_OWNER:
            raise InvalidInput("user_id", "global knowledge is not a user's to erase.")
        return await self._run(partial(self.store.delete_owner, owner))

    async def traces_of_owner(self, owner: UserKey) -> list[str]:
        """What is left of the owner in the knowledge store, named without content."""
        return await self._run(partial(self.store.traces_of_owner, owner))

    async def search(
        self, user_key: UserKey, query: str, vector: Vectors, top_k: int, min_score: float | None
    ) -> tuple[list[KnowledgeHit], int]:
        """The chunks of global and the user's own knowledge best matching the query, and how many min_score cut."""
        return await search_knowledge(self._run, self.store, self.ranking, (user_key, query, vector, top_k, min_score))

    def close(self) -> None:
        """Close the store."""
        self.store.close()
