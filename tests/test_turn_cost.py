"""What a write and a recall cost, counted rather than timed (#15): worker-thread hops per call."""

from __future__ import annotations

import subprocess
import sys
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


_TURNS_THEN_MODULES = """
import asyncio, sys, tempfile
from pathlib import Path
from engram.config import Settings
from engram.embeddings.hashing import HashEmbedder
from engram.runtime import open_memory

async def main():
    with tempfile.TemporaryDirectory() as scratch:
        service = open_memory(Settings(data_dir=Path(scratch), embedding_model="hash"), HashEmbedder())
        try:
            for content in ("We adopted a puppy called Biscuit.", "Oh lovely, what breed?"):
                turn = await service.remember("ann", content, session_id="s1")
            (stored,) = [m for m in await service.recent_memories("ann") if m.id == turn.id]
            assert stored.sentiment is not None, "the turn was not enriched"
            print("yake" in sys.modules)
            await service.remember("ann", "I moved to Lisbon in March.")  # a fact is tagged
            print("yake" in sys.modules)
        finally:
            service.close()

asyncio.run(main())
"""


def test_session_turns_never_import_the_keyword_tagger() -> None:
    # Importing and building YAKE was most of the extractors' start-up, paid by a session's first turn; turns are
    # never tagged (a fresh interpreter: this one may have imported YAKE for another test).
    done = subprocess.run([sys.executable, "-c", _TURNS_THEN_MODULES], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]
