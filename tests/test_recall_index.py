"""The in-memory recall index: the same answers as LanceDB, coherent across stores on one directory, bounded, erased."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pytest
from lancedb.index import FTS
from lancedb.query import MatchQuery

from engram.config import Settings
from engram.core.filters import MemoryFilters
from engram.core.models import Kind, Memory, Role, Sentiment, Visibility
from engram.embeddings.hashing import HashEmbedder
from engram.runtime import open_memory
from engram.storage.indexed_long_term import IndexedLongTermStore
from engram.storage.long_term import LanceLongTermStore
from engram.storage.memory_rows import _COLUMNS, _to_memory
from engram.storage.recall_index import memory_values, trusted_memory
from engram.storage.recall_terms import _STOP_WORDS, terms
from tests.helpers import TEST_NOW, stepping_clock

EMBEDDER = HashEmbedder()
TOPICS = ["garden tomatoes", "violin lessons", "tax refund", "espresso machine", "running shoes", "train delays"]


def _store(directory: Path, index_mb: int = 64) -> IndexedLongTermStore:
    return IndexedLongTermStore(
        directory, dimensions=EMBEDDER.dimensions, model_id=EMBEDDER.model_id, index_bytes=index_mb << 20
    )


def _memory(i: int, user: str = "alice", **fields: Any) -> Memory:
    """A memory whose metadata varies with `i`, so that every filter admits some memories and refuses others."""
    created = TEST_NOW - timedelta(days=40 - i)
    base: dict[str, Any] = {
        "id": f"{user}-m{i:03d}",
        "user_id": user,
        "agent_id": [None, "planner", "coder"][i % 3],
        "visibility": Visibility.PRIVATE if i % 5 == 1 else Visibility.SHARED,
        "session_id": f"s{i % 4}",
        "project": [None, "apollo", "zeus"][i % 3 if i % 2 else 0],
        "role": [Role.USER, Role.ASSISTANT, None][i % 3],
        "kind": [Kind.FACT, Kind.TURN, Kind.SUMMARY][i % 3],
        "content": f"Note {i} about {TOPICS[i % len(TOPICS)]} and the Lisbon trip",
        "created_at": created,
        "tags": [["home"], ["work", "music"], []][i % 3],
        "category": ["hobby", "finance", None][i % 3],
        "entities": [["Lisbon"], ["Ana", "Lisbon"], []][i % 3],
        "sentiment": [Sentiment.POSITIVE, Sentiment.NEGATIVE, None][i % 3],
        "resolved": [True, False, None][i % 3],
        "importance": [0.25, 0.7, None][i % 3],  # 0.7 is not exact in float32: compared as LanceDB does
        "turn_index": i,
        "valid_from": created,
        "valid_until": TEST_NOW - timedelta(days=10) if i % 7 == 0 else None,
        "metadata": {"n": i},
    }
    return Memory.model_validate(base | fields)


def _fill(store: IndexedLongTermStore, memories: list[Memory]) -> None:
    texts = [m.content for m in memories]
    store.add_many(memories, texts, EMBEDDER.embed(texts))


#: One value for each filter field that admits some of `_memory`'s memories and refuses others.
FILTER_CASES: dict[str, dict[str, Any]] = {
    "from_agents": {"from_agents": ["planner"]},
    "exclude_agents": {"exclude_agents": ["coder"]},
    "shared_only": {"shared_only": True},
    "from_session": {"from_session": "s1"},
    "project": {"project": "apollo"},
    "projects": {"project": "zeus", "projects": "only"},
    "tags": {"tags": ["music", "home"]},
    "tags_all": {"tags_all": ["work", "music"]},
    "entity": {"entity": "lisbon"},
    "sentiment": {"sentiment": "negative"},
    "category": {"category": "finance"},
    "kind": {"kind": "turn"},
    "resolved": {"resolved": False},
    "min_importance": {"min_importance": 0.7},
    "since": {"since": TEST_NOW - timedelta(days=20)},
    "until": {"until": TEST_NOW - timedelta(days=20)},
    "as_of": {"as_of": TEST_NOW - timedelta(days=15)},
    "open_at": {"open_at": TEST_NOW},
}


def test_every_filter_field_has_a_case() -> None:
    # A new filter field must be checked against LanceDB here before the index may answer it.
    assert set(FILTER_CASES) == set(MemoryFilters.model_fields)


@pytest.fixture
def filled(tmp_path: Path) -> IndexedLongTermStore:
    store = _store(tmp_path)
    _fill(store, [_memory(i) for i in range(40)] + [_memory(i, user="bob") for i in range(10)])
    return store


@pytest.mark.parametrize("viewer", [None, "planner"])
@pytest.mark.parametrize("field", sorted(FILTER_CASES))
def test_filters_give_exactly_the_lancedb_results(filled: IndexedLongTermStore, field: str, viewer: str | None) -> None:
    filters = MemoryFilters.model_validate(FILTER_CASES[field]).seen_by(viewer)
    query = "Lisbon tomatoes refund"
    vector = EMBEDDER.embed([query])[0]
    indexed_semantic = filled.vector_search("alice", vector, filters, 100)
    lance_semantic = LanceLongTermStore.vector_search(filled, "alice", vector, filters, 100)
    assert filled.recall_index.get("alice") is not None, "the index did not answer"
    assert [c.memory for c in indexed_semantic] == [c.memory for c in lance_semantic]
    assert [c.score for c in indexed_semantic] == pytest.approx([c.score for c in lance_semantic], abs=1e-5)
    assert 0 < len(indexed_semantic) < 40, "the case should admit some memories and refuse others"
    indexed_keyword = filled.keyword_search("alice", query, filters, 100)
    lance_keyword = LanceLongTermStore.keyword_search(filled, "alice", query, filters, 100)
    assert {c.memory.id for c in indexed_keyword} == {c.memory.id for c in lance_keyword}
    assert all(c.memory.user_id == "alice" for c in indexed_semantic + indexed_keyword)


def test_keyword_scores_rank_like_lancedb_bm25(tmp_path: Path) -> None:
    # Both are BM25 with k1 1.2 and b 0.75; LanceDB's document lengths differ slightly from the index's (its
    # scores here are a few percent higher), so the order is compared, not the values.
    store = _store(tmp_path)
    _fill(store, [_memory(i) for i in range(30)])
    filters = MemoryFilters(projects="any").seen_by("planner")
    for query in ("tomatoes Lisbon", "violin lessons note 7", "the tax refunds"):
        indexed = store.keyword_search("alice", query, filters, 50)
        lance = LanceLongTermStore.keyword_search(store, "alice", query, filters, 50)
        best = max(c.score for c in lance)
        assert indexed[0].memory.id in {c.memory.id for c in lance if c.score == best}
        assert {c.memory.id for c in indexed} == {c.memory.id for c in lance}
        assert [c.score for c in indexed] == sorted((c.score for c in indexed), reverse=True)


def test_index_terms_match_lancedb_word_for_word(tmp_path: Path) -> None:
    words = sorted(_STOP_WORDS | {"cannot", "could", "ought", "would", "running", "cafés", "naïve", "Tomatoes", "x_y"})
    table = lancedb.connect(tmp_path).create_table("t", [{"id": i, "text": f"filler {w}"} for i, w in enumerate(words)])
    table.create_index("text", config=FTS(stem=True, remove_stop_words=True, ascii_folding=True))
    for i, word in enumerate(words):
        query = table.search(MatchQuery(word, "text"), query_type="fts").select(["id", "_score"]).limit(100)  # type: ignore[call-arg]
        found = any(row["id"] == i for row in query.to_list())
        assert found == bool(terms(word)), word


def test_a_memory_from_the_index_equals_the_table_row(filled: IndexedLongTermStore) -> None:
    rows = filled._table.search().select([*_COLUMNS, "entity_keys", "index_text"]).limit(None).to_list()
    for row in rows:
        assert trusted_memory(memory_values(row)) == _to_memory(row)


def test_own_writes_update_the_loaded_index_without_a_reload(filled: IndexedLongTermStore) -> None:
    vector = EMBEDDER.embed(["espresso"])[0]
    filled.vector_search("alice", vector, MemoryFilters(), 5)
    loaded = filled.recall_index.get("alice")
    fresh = _memory(99, content="A brand-new espresso grinder", project=None, visibility=Visibility.SHARED)
    _fill(filled, [fresh])
    found = filled.keyword_search("alice", "grinder", MemoryFilters(), 5)
    assert [c.memory.id for c in found] == [fresh.id]
    assert filled.recall_index.get("alice") is loaded


def test_another_stores_writes_and_erasures_reach_this_index(tmp_path: Path) -> None:
    here, there = _store(tmp_path), _store(tmp_path)
    _fill(here, [_memory(i) for i in range(20)])
    filters = MemoryFilters(projects="any").seen_by("planner")
    assert not here.keyword_search("alice", "harpsichord", filters, 10)  # loads alice's index
    added = _memory(50, content="Bought a harpsichord", project=None)
    _fill(there, [added])
    assert [c.memory.id for c in here.keyword_search("alice", "harpsichord", filters, 10)] == [added.id]
    there.delete("alice", [added.id])
    assert here.keyword_search("alice", "harpsichord", filters, 10) == []
    vector = EMBEDDER.embed([added.content])[0]
    assert added.id not in {c.memory.id for c in here.vector_search("alice", vector, filters, 50)}


def test_another_stores_compaction_keeps_this_index(tmp_path: Path) -> None:
    here, there = _store(tmp_path), _store(tmp_path)
    for i in range(6):  # several fragments, so compaction has work to do
        _fill(there, [_memory(i)])
    here.keyword_search("alice", "tomatoes", MemoryFilters(), 5)
    loaded = here.recall_index.get("alice")
    there.optimize()
    assert here.keyword_search("alice", "tomatoes", MemoryFilters(), 5)
    assert here.recall_index.get("alice") is loaded


def test_the_index_stays_within_its_cap_least_recently_searched_first(tmp_path: Path) -> None:
    cap = 250_000  # room for about two of these users
    store = IndexedLongTermStore(tmp_path, dimensions=EMBEDDER.dimensions, model_id=EMBEDDER.model_id, index_bytes=cap)
    users = [f"u{n}" for n in range(6)]
    for user in users:
        _fill(store, [_memory(i, user=user) for i in range(60)])
    for user in users:
        store.keyword_search(user, "tomatoes", MemoryFilters(), 5)
        assert store.recall_index.nbytes <= cap
    assert users[-1] in store.recall_index.users
    assert users[0] not in store.recall_index.users  # evicted, and still answered (from LanceDB or a reload)
    assert store.keyword_search(users[0], "tomatoes", MemoryFilters(), 5)


def test_a_user_larger_than_the_cap_is_searched_in_lancedb(tmp_path: Path) -> None:
    store = IndexedLongTermStore(
        tmp_path, dimensions=EMBEDDER.dimensions, model_id=EMBEDDER.model_id, index_bytes=50_000
    )
    _fill(store, [_memory(i) for i in range(40)])
    filters = MemoryFilters(projects="any")
    vector = EMBEDDER.embed(["tomatoes"])[0]
    found = store.vector_search("alice", vector, filters, 10)
    assert store.recall_index.users == {} and "alice" in store.recall_index.oversized
    assert [c.memory for c in found] == [
        c.memory for c in LanceLongTermStore.vector_search(store, "alice", vector, filters, 10)
    ]


def _settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", embedding_model="hash", enrichment=False)


@pytest.mark.anyio
@pytest.mark.parametrize("where", ["this process", "another server"])
async def test_a_forgotten_memory_is_never_recalled_from_the_index(tmp_path: Path, where: str) -> None:
    memory = open_memory(_settings(tmp_path), EMBEDDER, clock=stepping_clock)
    other = open_memory(_settings(tmp_path), EMBEDDER, clock=stepping_clock) if where == "another server" else memory
    try:
        kept = await memory.remember("alice", "The spare key is under the blue flowerpot")
        gone = await memory.remember("alice", "The alarm code is 4711, under the flowerpot note")
        found = await memory.recall("alice", "flowerpot")
        assert {h.memory.id for h in found.memories} == {kept.id, gone.id}
        await other.forget_memory("alice", gone.id)
        for query in ("flowerpot", "alarm code 4711"):
            assert gone.id not in {h.memory.id for h in (await memory.recall("alice", query)).memories}
        await other.forget_user("alice", confirm=True)
        assert (await memory.recall("alice", "flowerpot")).memories == []
    finally:
        memory.close()
        if other is not memory:
            other.close()


def test_retention_drops_expired_memories_from_the_index(filled: IndexedLongTermStore) -> None:
    filled.keyword_search("alice", "tomatoes", MemoryFilters(projects="any"), 50)
    filled.delete_older_than(TEST_NOW - timedelta(days=20))
    found = filled.keyword_search("alice", "note", MemoryFilters(projects="any").seen_by("planner"), 100)
    assert found and all(c.memory.created_at >= TEST_NOW - timedelta(days=20) for c in found)


def test_vectors_are_held_once(filled: IndexedLongTermStore) -> None:
    filled.vector_search("alice", EMBEDDER.embed(["x"])[0], MemoryFilters(), 5)
    user = filled.recall_index.get("alice")
    assert user is not None
    # The index holds the vectors plus a bounded share per row, never a copy of the rows as objects.
    assert user.nbytes < 40 * (4 * EMBEDDER.dimensions + 1000) + 16 * 4 * EMBEDDER.dimensions
    assert np.shares_memory(
        filled.vector_search("alice", EMBEDDER.embed(["x"])[0], MemoryFilters(), 1)[0].vector, user._vectors
    )


def test_the_first_search_loads_the_asking_users_rows_only(filled: IndexedLongTermStore) -> None:
    # A server's first recall pays for its user's rows, not every user's (issue #15: loading is ~0.1 CPU-s per
    # 1,000 rows, ~1 s for a 10,000-memory table); each other user's rows load at that user's first search.
    filled.keyword_search("alice", "tomatoes", MemoryFilters(), 5)
    assert set(filled.recall_index.users) == {"alice"}
    assert [c.memory.user_id for c in filled.keyword_search("bob", "tomatoes", MemoryFilters(), 5)] == ["bob"]
    assert set(filled.recall_index.users) == {"alice", "bob"}


def test_a_commit_after_a_quiet_spell_is_seen_by_the_next_search(tmp_path: Path) -> None:
    # With no commit for a while, the versions folder's time answers instead of LanceDB: it must still move.
    here, there = _store(tmp_path), _store(tmp_path)
    _fill(here, [_memory(i) for i in range(5)])
    versions = tmp_path / "memories.lance" / "_versions"
    quiet = versions.stat().st_mtime_ns - 60_000_000_000
    os.utime(versions, ns=(quiet, quiet))  # as if the last commit were a minute old
    filters = MemoryFilters(projects="any").seen_by("planner")
    assert not here.keyword_search("alice", "harpsichord", filters, 5)
    assert here._settled == (quiet, True)  # the next search may take the folder's word
    assert not here.keyword_search("alice", "harpsichord", filters, 5)
    added = _memory(50, content="Bought a harpsichord", project=None)
    _fill(there, [added])
    assert [c.memory.id for c in here.keyword_search("alice", "harpsichord", filters, 5)] == [added.id]


@pytest.mark.parametrize("passages", [True, False])
def test_passages_of_long_memories_rank_as_in_lancedb(filled: IndexedLongTermStore, passages: bool) -> None:
    # A long memory's later passages live in their own table: the index's search merges them as LanceDB's does.
    query = "a week of sailing around the Azores"
    filled.add_passages("alice", "alice-m004", ["We spent a week sailing around the Azores"], EMBEDDER.embed([query]))
    filters = MemoryFilters(projects="any").seen_by("planner")
    vector = EMBEDDER.embed([query])[0]
    indexed = filled.vector_search("alice", vector, filters, 50, passages=passages)
    lance = LanceLongTermStore.vector_search(filled, "alice", vector, filters, 50, passages=passages)
    assert filled.recall_index.get("alice") is not None
    # Equal scores (the hash embedder gives some) may come in either order.
    assert {(c.memory.id, round(c.score, 5), c.passage) for c in indexed} == {
        (c.memory.id, round(c.score, 5), c.passage) for c in lance
    }
    assert (indexed[0].memory.id == "alice-m004") is passages


def test_while_another_store_writes_lancedb_answers_and_the_index_reloads_once_quiet(tmp_path: Path) -> None:
    # Several servers writing one directory would otherwise reload every user at each other's commits.
    busy = IndexedLongTermStore(
        tmp_path,
        dimensions=EMBEDDER.dimensions,
        model_id=EMBEDDER.model_id,
        index_bytes=64 << 20,
        reload_backoff_s=3600,
    )
    quiet = IndexedLongTermStore(
        tmp_path, dimensions=EMBEDDER.dimensions, model_id=EMBEDDER.model_id, index_bytes=64 << 20, reload_backoff_s=0
    )
    writer = _store(tmp_path)
    _fill(writer, [_memory(i) for i in range(5)])
    filters = MemoryFilters(projects="any").seen_by("planner")
    for store in (busy, quiet):
        assert store.keyword_search("alice", "tomatoes", filters, 5)
        assert store.recall_index.get("alice") is not None
    added = _memory(50, content="Bought a harpsichord", project=None)
    _fill(writer, [added])
    for store in (busy, quiet):
        assert [c.memory.id for c in store.keyword_search("alice", "harpsichord", filters, 5)] == [added.id]
    assert busy.recall_index.users == {}  # answered by LanceDB
    assert quiet.recall_index.get("alice") is not None  # reloaded at once
