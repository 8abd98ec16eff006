"""What every part of the memory service shares: its ports, policy and clock, and the few steps all of them take."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, TypeVar

import anyio.to_thread

from engram.core.errors import InvalidInput, quoted
from engram.core.filters import MemoryFilters
from engram.core.health import TierHealth
from engram.core.identity import UserKey, unkeyed
from engram.core.models import Memory, Turn
from engram.core.policy import MemoryPolicy
from engram.core.ports import (
    Embedder,
    Enricher,
    GraphStore,
    LongTermStore,
    MemoryMetrics,
    NoMetrics,
    SessionStore,
)
from engram.core.ranking import RankingPolicy
from engram.core.redaction import SensitiveContentRejected, redact
from engram.core.tiers import Tier
from engram.core.timeutil import utc_now
from engram.core.validation import check_content, check_id, check_optional_id

if TYPE_CHECKING:
    from engram.core.knowledge import KnowledgeService

T = TypeVar("T")


@dataclass
class MemoryContext:
    """The wiring of one memory service: built once by MemoryService and handed to each of its parts."""

    embedder: Embedder
    long_term: LongTermStore
    sessions: SessionStore
    policy: MemoryPolicy = field(default_factory=MemoryPolicy)
    clock: Callable[[], datetime] = utc_now
    ranking: RankingPolicy = field(default_factory=RankingPolicy)
    pseudonymize: Callable[[str], UserKey] = unkeyed
    enricher: Enricher | None = None
    metrics: MemoryMetrics = field(default_factory=NoMetrics)
    knowledge: KnowledgeService | None = None
    #: Which tiers storage found damaged (recall, stats and /healthz report them).
    health: TierHealth = field(default_factory=TierHealth)
    #: Each user's entities and relations (None: no graph; recall then does not follow it).
    graph: GraphStore | None = None
    #: Every tier, in the order erasure goes through them (closing goes backwards).
    tiers: list[Tier] = field(default_factory=list)

    def user_key(self, user_id: str) -> UserKey:
        """Check a caller's user id and return the pseudonym the stores know the user by."""
        return self.pseudonymize(check_id("user_id", user_id))

    async def run(self, fn: Callable[[], T]) -> T:
        """Run blocking work (embedding, disk I/O) on a worker thread so the event loop keeps serving."""
        return await anyio.to_thread.run_sync(fn)

    def content(self, field: str, content: str, counts: dict[str, int]) -> str:
        """Caller-given text as it may be stored: checked against the size limit, normalised and redacted."""
        return self.redact(field, check_content(field, content, self.policy.max_content_chars), counts)

    def redact(self, field: str, text: str, counts: dict[str, int]) -> str:
        """Apply the redaction policy to `text` before it reaches any store; tally what was replaced."""
        try:
            result = redact(text, self.policy.redaction)
        except SensitiveContentRejected as exc:
            raise InvalidInput(field, str(exc)) from exc
        for category, count in result.counts.items():
            counts[category.value] = counts.get(category.value, 0) + count
        return result.text

    async def visible_memory(
        self, key: UserKey, memory_id: str, agent_id: str | None, *, required: bool
    ) -> Memory | None:
        """The user's memory `memory_id` if the asking agent may see it; else None, or InvalidInput if `required`."""
        found = await self.run(partial(self.long_term.get, key, [memory_id]))
        visible = MemoryFilters().seen_by(check_optional_id("agent_id", agent_id))
        if not found or not visible.admits(found[0].agent_id, found[0].visibility):
            # Another agent's private memory gets the same answer as a missing one: its existence is private too.
            if required or found:
                raise InvalidInput("memory_id", f"no memory {quoted(memory_id)} is held for this user.")
            return None
        return found[0]


def turn_admitted(filters: MemoryFilters, turn: Turn) -> bool:
    """Whether the asking agent may see a session turn (summaries are shared, like their memory)."""
    return filters.admits(turn.agent_id, turn.visibility)
