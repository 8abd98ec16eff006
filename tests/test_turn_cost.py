"""What a write and a recall cost, counted rather than timed (#15): worker-thread hops per call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from engram.core.models import Role
from engram.core.service import MemoryService

pytestmark = pytest.mark.anyio


def _count_hops(service: MemoryService, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record every piece of blocking work the service hands to a worker thread."""
    context = service._ctx
    real = context.run
    hops: list[object] = []

    async def counted(fn: Callable[[], Any]) -> Any:
        hops.append(fn)
        return await real(fn)

    monkeypatch.setattr(context, "run", counted)
    return hops


async def test_a_session_turn_is_placed_embedded_enriched_and_stored_in_one_worker_hop(
    service: MemoryService, monkeypatch: pytest.MonkeyPatch
) -> None:
    hops = _count_hops(service, monkeypatch)
    await service.remember("ann", "We adopted a puppy called Biscuit last week.", session_id="s1")
    hops.clear()
    result = await service.remember("ann", "Oh lovely, what breed?", session_id="s1", role=Role.ASSISTANT)
    # Four hops before (session append, embedding, extraction, insert): each a thread hand-off and a loop wake-up.
    assert len(hops) == 1
    assert result.created and result.session_turns == 2
    stored = {m.id: m for m in await service.recent_memories("ann")}
    assert stored[result.id].turn_index == 1 and stored[result.id].sentiment is not None


async def test_a_plain_memory_is_embedded_enriched_and_stored_in_one_worker_hop_before_its_suggestions(
    service: MemoryService, monkeypatch: pytest.MonkeyPatch
) -> None:
    hops = _count_hops(service, monkeypatch)
    result = await service.remember("bea", "I moved to Lisbon in March.")
    assert result.created
    # The write, then the search for older versions of a fact.
    assert len(hops) == 2


async def test_a_recall_embeds_and_searches_long_term_memory_in_one_worker_hop(
    service: MemoryService, monkeypatch: pytest.MonkeyPatch
) -> None:
    await service.remember("cai", "My sister drinks oolong tea every morning.")
    await service.remember("cai", "The staging database runs Postgres 16.")
    hops = _count_hops(service, monkeypatch)
    result = await service.recall("cai", "what tea does my sister drink", scope="memories")
    assert result.memories[0].memory.content == "My sister drinks oolong tea every morning."
    # Three before (keyword search, query embedding, vector search); the graph's entity scan is the other hop.
    assert len(hops) <= 2
    long_term = [fn for fn in hops if getattr(fn, "__qualname__", "").endswith("_search_long_term.<locals>.search")]
    assert len(long_term) == 1
