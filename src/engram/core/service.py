"""MemoryService: Engram's memory operations in one place, each carried out by the part that owns it.

Writing (`core/writing.py`), reading (`core/retrieval.py`), summarising (`core/summarizing.py`) and erasure
(`core/erasure.py`) share one `MemoryContext` (`core/context.py`): the ports, the policy and the clock. This facade
wires them and offers their operations to the adapters (tools, resources, CLI); it adds no rule of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from engram.core.context import MemoryContext
from engram.core.erasure import Eraser
from engram.core.errors import TierDamaged
from engram.core.graph import GraphKeeper
from engram.core.health import TierHealth
from engram.core.identity import UserKey, unkeyed
from engram.core.models import TierStats
from engram.core.policy import MemoryPolicy
from engram.core.ports import Embedder, Enricher, GraphStore, LongTermStore, MemoryMetrics, NoMetrics, SessionStore
from engram.core.projects import ProjectEraser, ProjectForgotten
from engram.core.ranking import RankingPolicy
from engram.core.retrieval import MemoryReader
from engram.core.summarizing import SessionSummarizer
from engram.core.tiers import GraphTier, KnowledgeTier, LongTermTier, SessionTier, Tier
from engram.core.timeutil import utc_now
from engram.core.updating import MemoryUpdater
from engram.core.validation import memory_id, normalize_content
from engram.core.writing import MemoryWriter

if TYPE_CHECKING:
    from engram.core.knowledge import KnowledgeService

__all__ = ["MemoryPolicy", "MemoryService", "memory_id", "normalize_content"]


def _tiers(
    long_term: LongTermStore, sessions: SessionStore, knowledge: KnowledgeService | None, graph: GraphStore | None
) -> list[Tier]:
    """Every tier the service has, in the order erasure goes through them."""
    tiers: list[Tier] = [LongTermTier(long_term), SessionTier(sessions)]
    if knowledge is not None:
        tiers.append(KnowledgeTier(knowledge))
    if graph is not None:
        tiers.append(GraphTier(graph))
    return tiers


class MemoryService:
    """Every memory operation Engram offers; transport-free and storage-agnostic."""

    def __init__(
        self,
        *,
        embedder: Embedder,
        long_term: LongTermStore,
        sessions: SessionStore,
        policy: MemoryPolicy | None = None,
        clock: Callable[[], datetime] = utc_now,
        ranking: RankingPolicy | None = None,
        pseudonymize: Callable[[str], UserKey] | None = None,
        enricher: Enricher | None = None,
        metrics: MemoryMetrics | None = None,
        knowledge: KnowledgeService | None = None,
        health: TierHealth | None = None,
        graph: GraphStore | None = None,
    ) -> None:
        context = MemoryContext(
            embedder=embedder,
            long_term=long_term,
            sessions=sessions,
            policy=policy or MemoryPolicy(),
            clock=clock,
            ranking=ranking or RankingPolicy(),
            pseudonymize=pseudonymize or unkeyed,
            enricher=enricher,
            metrics=metrics or NoMetrics(),
            knowledge=knowledge,
            health=health or TierHealth(),
            graph=graph,
            tiers=_tiers(long_term, sessions, knowledge, graph),
        )
        if knowledge is not None:
            # One identity for every tier: knowledge resolves users' keys with the same pseudonymiser.
            knowledge.pseudonymize = context.pseudonymize
        self._ctx = context
        self.embedder, self.long_term, self.sessions, self.knowledge = embedder, long_term, sessions, knowledge
        self.policy, self.metrics, self.health = context.policy, context.metrics, context.health
        self.user_key = context.user_key

        writer = MemoryWriter(context)
        self.remember = writer.remember
        self.remember_item = writer.remember_item
        self.remember_many = writer.remember_many
        self.update_memory = MemoryUpdater(context).update_memory

        reader = MemoryReader(context)
        self.recall = reader.recall
        self.list_memories, self.get_memory = reader.list_memories, reader.get_memory
        self.recent_memories = reader.recent_memories
        self.sessions_of = reader.sessions_of
        self.transcript = reader.transcript
        self.agents_of = reader.agents_of

        self.summarize_session = SessionSummarizer(context, writer).summarize_session
        self.graph = GraphKeeper(context, writer, graph) if graph is not None else None  # None: no graph store

        eraser = Eraser(context)
        self.forget_user = eraser.forget_user
        self.forget_memory = eraser.forget_memory
        self.purge = eraser.purge

    @property
    def graph_store(self) -> GraphStore | None:
        """The store of users' graphs (an export reads it whole), or None without a graph."""
        return self._ctx.graph

    @property
    def ranking(self) -> RankingPolicy:
        """How long-term recall fuses its searches (a setting; experiments may swap it)."""
        return self._ctx.ranking

    @ranking.setter
    def ranking(self, value: RankingPolicy) -> None:
        self._ctx.ranking = value

    @property
    def clock(self) -> Callable[[], datetime]:
        """The service's clock (restores date what they write with it)."""
        return self._ctx.clock

    async def forget_project(self, user_id: str, project: str, *, confirm: bool) -> ProjectForgotten:
        """Erase one project of the user: its long-term memories and their session turns (core/projects.py)."""
        return await ProjectEraser(self._ctx).forget_project(user_id, project, confirm=confirm)

    @property
    def enricher(self) -> Enricher | None:
        """The metadata extractor run on write, if any."""
        return self._ctx.enricher

    @enricher.setter
    def enricher(self, value: Enricher | None) -> None:
        self._ctx.enricher = value

    async def tier_stats(self) -> dict[str, TierStats]:
        """Items and bytes on disk of each tier; a damaged tier is reported as such instead of failing the rest."""
        stats: dict[str, TierStats] = {}
        for tier in self._ctx.tiers:
            try:
                stats[tier.name] = await tier.stats()
            except TierDamaged as exc:
                stats[tier.name] = TierStats(items=0, bytes_on_disk=0, status="damaged", damage=str(exc))
                continue
            damage = self.health.damaged().get(tier.label)
            if damage is not None:
                stats[tier.name] = stats[tier.name].model_copy(update={"status": "damaged", "damage": str(damage)})
        return stats

    def close(self) -> None:
        """Close every tier's store, the last opened first."""
        for tier in reversed(self._ctx.tiers):
            tier.close()
