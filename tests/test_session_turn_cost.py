"""What a session turn's write costs: each new text embedded once, and an append that reads no whole transcript."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engram.config import Settings
from engram.core.models import RememberItem, Role, Turn
from engram.core.ports import Vectors
from engram.embeddings.hashing import HashEmbedder
from engram.runtime import open_memory
from engram.storage.sessions import DiskSessionStore
from tests.helpers import stepping_clock

pytestmark = pytest.mark.anyio


class CountingEmbedder(HashEmbedder):
    """The deterministic test embedder, keeping every text it was asked to embed."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.texts.extend(texts)
        return super().embed(texts)


def _turns(count: int) -> list[str]:
    return [f"turn {i}: we talked about the garden, the roses and plan number {i}" for i in range(count)]


async def test_a_session_turn_embeds_each_new_text_once(tmp_path: Path) -> None:
    embedder = CountingEmbedder()
    memory = open_memory(Settings(data_dir=tmp_path, embedding_model="hash"), embedder, clock=stepping_clock)
    try:
        for text in _turns(6):
            before = len(embedder.texts)
            await memory.remember("alice", text, session_id="s1", role=Role.USER)
            embedded = embedder.texts[before:]
            # The turn's own text, once: not the turn it replies to again (its vector is kept from its own write).
            assert len(embedded) == 1 and text in embedded[0] and "replying to" not in embedded[0]
        texts = _turns(12)[6:]
        before = len(embedder.texts)
        await memory.remember_many("alice", [RememberItem(content=t, session_id="s1") for t in texts])
        assert len(embedder.texts) - before == len(texts)
        # The reply's keyword index still reads the turn it answers: a word only there finds it.
        found = await memory.recall("alice", "turn 10 garden roses", top_k=3)
        assert texts[5] in [h.memory.content for h in found.memories]
    finally:
        memory.close()


async def test_a_turn_kept_from_another_process_is_embedded_for_its_context(tmp_path: Path) -> None:
    """A server that did not write the previous turn (restart, another process) embeds it with the new one."""
    settings = Settings(data_dir=tmp_path, embedding_model="hash")
    first = open_memory(settings, HashEmbedder(), clock=stepping_clock)
    try:
        await first.remember("alice", "Did you go back to the lake?", session_id="s1", role=Role.USER)
        await first.remember("alice", "Yes, twice!", session_id="s1", role=Role.ASSISTANT)
    finally:
        first.close()
    embedder = CountingEmbedder()
    again = open_memory(settings, embedder, clock=stepping_clock)
    try:
        await again.remember("alice", "And the third time?", session_id="s1", role=Role.USER)
        assert len(embedder.texts) == 2 and "Yes, twice!" in embedder.texts[1]
    finally:
        again.close()


def test_an_append_reads_the_same_entries_at_turn_5_and_at_turn_500(tmp_path: Path) -> None:
    store = DiskSessionStore(
        tmp_path, working_turns=20, working_ttl=timedelta(days=1), short_term_turns=500, short_term_ttl=timedelta(7)
    )
    now = datetime(2026, 3, 1, tzinfo=UTC)
    reads: list[Any] = []
    real = store._cache.get
    store._cache.get = lambda key, *a, **k: reads.append(key) or real(key, *a, **k)  # type: ignore[method-assign]
    per_append: dict[int, int] = {}
    for i in range(501):
        reads.clear()
        turn = Turn(memory_id=f"m{i}", seq=0, role=Role.USER, content=f"turn {i}", created_at=now)
        store.append_turn("k-user", "s", turn, now)
        per_append[i] = len(reads)
    store.close()
    assert per_append[5] == per_append[500] and per_append[500] <= 5


async def test_erasure_drops_the_kept_turn_vectors(tmp_path: Path) -> None:
    memory = open_memory(Settings(data_dir=tmp_path, embedding_model="hash"), HashEmbedder(), clock=stepping_clock)
    try:
        kept = memory._ctx.turn_vectors
        first = await memory.remember("alice", "The roses need water", session_id="s1")
        await memory.remember("bob", "The lake was cold", session_id="s1")
        await memory.forget_memory("alice", first.id)
        assert len(kept) == 1  # bob's is left
        await memory.forget_user("bob", confirm=True)
        assert len(kept) == 0
    finally:
        memory.close()
