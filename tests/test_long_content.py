"""Long content: accepted up to the documented limit and searchable in every part (vector and keyword)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pytest
from mcp import Client

from engram.config import Settings
from engram.core.limits import MAX_CONTENT_CHARS
from engram.core.passages import PASSAGE_WORDS, passages
from engram.core.ports import Vectors
from engram.embeddings.hashing import HashEmbedder
from engram.runtime import open_memory
from engram.server.app import build_server
from tests.helpers import ok, stepping_clock

pytestmark = pytest.mark.anyio

#: The detail asked about, said once near the very end of a long answer.
DETAIL = "The spare key is taped under the blue flowerpot behind the greenhouse."


class WindowedHashEmbedder(HashEmbedder):
    """The hash embedder reading only a text's first words, as a real model reads only its first 256 pieces."""

    def __init__(self, window_words: int = 160) -> None:
        super().__init__()
        self._window = window_words

    def embed(self, texts: Sequence[str]) -> Vectors:
        return super().embed([" ".join(t.split()[: self._window]) for t in texts])


def _long_answer(chars: int = 30_000) -> str:
    filler = (
        "Here is a general overview of seasonal planting schedules, soil preparation and watering routines "
        "for a temperate vegetable garden, step by step. "
    )
    body = (filler * (chars // len(filler) + 1))[: chars - len(DETAIL) - 1]
    return f"{body} {DETAIL}"


def test_passages_cover_the_whole_text_and_overlap() -> None:
    words = [f"w{i}" for i in range(1000)]
    windows = passages(" ".join(words))
    assert windows, "a text longer than one window has passages"
    assert all(len(w.split()) <= PASSAGE_WORDS for w in windows)
    assert windows[-1].split()[-1] == "w999"
    covered = {word for w in windows for word in w.split()}
    assert covered >= set(words[PASSAGE_WORDS:]), "every word past the first window is in some passage"
    assert set(windows[0].split()) & set(words[:PASSAGE_WORDS]), "the first passage overlaps the first window"
    assert passages("a short turn") == []


@pytest.mark.parametrize("fusion", ["vector", "keyword", "convex"])
async def test_a_30000_character_turn_is_stored_and_a_detail_from_its_end_is_found(
    tmp_path: Path, fusion: Literal["vector", "keyword", "convex"]
) -> None:
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash", tools="all", recall_fusion=fusion)
    server = build_server(settings, embedder=WindowedHashEmbedder(), clock=stepping_clock)
    answer = _long_answer()
    assert len(answer) == 30_000
    async with Client(server, raise_exceptions=True) as client:
        stored = ok(
            await client.call_tool(
                "remember", {"user_id": "alice", "content": answer, "session_id": "s1", "role": "assistant"}
            )
        )
        for other in ("Tomatoes need six hours of sun.", "The greenhouse door sticks in winter."):
            ok(await client.call_tool("remember", {"user_id": "alice", "content": other, "session_id": "s1"}))
        found = ok(
            await client.call_tool(
                "recall",
                {"user_id": "alice", "query": "where is the spare key taped flowerpot", "top_k": 3, "detail": "full"},
            )
        )
    memories = [h for h in found["hits"] if h["tier"] == "long_term"]
    assert memories[0]["id"] == stored["id"]
    assert [h["id"] for h in memories].count(stored["id"]) == 1, "the memory comes back once"
    assert memories[0]["content"] == answer, "the whole memory, verbatim"
    if fusion == "vector":
        assert DETAIL in found["memories"][0]["passage"], "with the passage that matched"


async def test_content_over_the_limit_is_refused_with_the_limit(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash", tools="all")
    memory = open_memory(settings, HashEmbedder(), clock=stepping_clock)
    try:
        from engram.core.errors import InvalidInput

        with pytest.raises(InvalidInput, match=f"{MAX_CONTENT_CHARS}"):
            await memory.remember("alice", "x" * (MAX_CONTENT_CHARS + 1))
        stored = await memory.remember("alice", "word " * (MAX_CONTENT_CHARS // 5))
        assert stored.created
    finally:
        memory.close()


async def test_forgetting_a_long_memory_erases_its_passages(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash", tools="all", recall_fusion="vector")
    memory = open_memory(settings, WindowedHashEmbedder(), clock=stepping_clock)
    try:
        stored = await memory.remember("alice", _long_answer(5_000))
        await memory.remember("bob", _long_answer(5_000))
        store = memory.long_term.inner.store  # type: ignore[attr-defined]
        before = store._passages.count()
        assert before > 0
        await memory.forget_memory("alice", stored.id)
        assert store._passages.count() == before // 2, "alice's passages went, bob's stay"
        hits = (await memory.recall("alice", "spare key flowerpot", top_k=5)).memories
        assert hits == []
    finally:
        memory.close()


async def test_forgetting_a_project_erases_the_passages_of_its_long_memories(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash", tools="all", recall_fusion="vector")
    memory = open_memory(settings, WindowedHashEmbedder(), clock=stepping_clock)
    try:
        await memory.remember("alice", _long_answer(5_000), project="garden")
        kept = await memory.remember("alice", _long_answer(6_000))
        store = memory.long_term.inner.store  # type: ignore[attr-defined]
        before = store._passages.count()
        await memory.forget_project("alice", "garden", confirm=True)
        assert 0 < store._passages.count() < before, "the project's passages went, the global memory's stay"
        found = store._passages.search(memory.user_key("alice"), _vector_of(DETAIL), 50)
        assert {m.memory_id for m in found} == {kept.id}
    finally:
        memory.close()


def _vector_of(text: str) -> Vectors:
    return WindowedHashEmbedder().embed([text])[0]


async def test_a_directory_without_the_passages_table_opens_and_indexes_long_content(tmp_path: Path) -> None:
    """A data directory written before passages existed (today's main) has no passages table: it gets one."""
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash", tools="all", recall_fusion="vector")
    memory = open_memory(settings, WindowedHashEmbedder(), clock=stepping_clock)
    old = await memory.remember("alice", "An old short memory about the garden shed.")
    store = memory.long_term.inner.store  # type: ignore[attr-defined]
    store._db.drop_table("passages")
    memory.close()

    memory = open_memory(settings, WindowedHashEmbedder(), clock=stepping_clock)
    try:
        assert [h.memory.id for h in (await memory.recall("alice", "garden shed", top_k=1)).memories] == [old.id]
        stored = await memory.remember("alice", _long_answer(10_000))
        hits = (await memory.recall("alice", "spare key taped flowerpot", top_k=2)).memories
        assert hits[0].memory.id == stored.id
        assert hits[0].passage is not None and DETAIL in hits[0].passage
    finally:
        memory.close()


async def test_retention_erases_the_passages_of_the_memories_it_deletes(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash", tools="all")
    memory = open_memory(settings, WindowedHashEmbedder(), clock=stepping_clock)
    try:
        old = datetime(2020, 1, 1, tzinfo=UTC)
        await memory.remember("alice", _long_answer(5_000), occurred_at=old)
        await memory.remember("bob", _long_answer(6_000))
        store = memory.long_term.inner.store  # type: ignore[attr-defined]
        before = store._passages.count()
        assert memory.long_term.delete_older_than(datetime(2021, 1, 1, tzinfo=UTC)) == 1
        assert 0 < store._passages.count() < before, "alice's old memory's passages went, bob's stay"
    finally:
        memory.close()
