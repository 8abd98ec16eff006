"""Passages held in the recall index: the same matches as LanceDB's passages table, coherent, dropped by erasure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engram.core.filters import MemoryFilters
from engram.embeddings.hashing import HashEmbedder
from engram.storage.indexed_long_term import IndexedLongTermStore
from engram.storage.long_term import LanceLongTermStore
from tests.test_recall_index import _memory

EMBEDDER = HashEmbedder()
DETAIL = "the spare key hides under the blue ceramic frog by the shed"
FILLER = "we talked about the weather and the traffic on the ring road again today"


def _store(directory: Path, index_mb: int = 64) -> IndexedLongTermStore:
    return IndexedLongTermStore(
        directory, dimensions=EMBEDDER.dimensions, model_id=EMBEDDER.model_id, index_bytes=index_mb << 20
    )


def _plain(directory: Path) -> LanceLongTermStore:
    return LanceLongTermStore(directory, dimensions=EMBEDDER.dimensions, model_id=EMBEDDER.model_id)


def _long_memories(store: LanceLongTermStore, user: str, count: int) -> None:
    """`count` memories, each with passages; the last passage of memory 3 holds the detail.

    The filler passages get random vectors: no two are equally close to a query, so the order is the same whatever
    order ties would come in."""
    memories = [_memory(i, user) for i in range(count)]
    store.add_many(memories, [m.content for m in memories], EMBEDDER.embed([m.content for m in memories]))
    for i, memory in enumerate(memories):
        rng = np.random.default_rng(sum(map(ord, user)) * 1000 + i)
        texts = [f"{FILLER} part {i}.{p}" for p in range(4)]
        vectors = rng.normal(size=(len(texts), EMBEDDER.dimensions)).astype(np.float32)
        if i == 3:
            texts.append(DETAIL)
            vectors = np.concatenate([vectors, EMBEDDER.embed([DETAIL])])
        store.add_passages(user, memory.id, texts, vectors)


def _matches(store: LanceLongTermStore, user: str, text: str, limit: int) -> list[tuple[str, str, float]]:
    return [
        (m.memory_id, m.text, round(m.score, 5)) for m in store._passages.search(user, EMBEDDER.embed([text])[0], limit)
    ]


#: A cap that holds one user's 49 passages but not the whole table's 98: users are loaded one at a time.
ONE_USER = 60 * (4 * EMBEDDER.dimensions + 820)


@pytest.mark.parametrize(("cap", "held"), [(64 << 20, ["bob", "alice"]), (ONE_USER, ["alice"])])
def test_passage_matches_from_the_index_are_lancedbs(tmp_path: Path, cap: int, held: list[str]) -> None:
    """The index answers a passage search as LanceDB does: the same memories, passages and scores, best first."""
    indexed = IndexedLongTermStore(
        tmp_path, dimensions=EMBEDDER.dimensions, model_id=EMBEDDER.model_id, index_bytes=cap
    )
    for user in ("alice", "bob"):
        _long_memories(indexed, user, 12)
    plain = _plain(tmp_path)
    for query in (DETAIL, "blue frog key", FILLER, "part 7 2"):
        for limit in (1, 5, 30):
            want = _matches(plain, "alice", query, limit)
            assert want, "LanceDB finds passages"
            assert _matches(indexed, "alice", query, limit) == want, (query, limit)
    assert indexed._passages.indexed_users() == held, "the whole table when it fits, else the users searched"


def test_a_long_memory_is_found_by_a_detail_at_its_end_through_the_index(tmp_path: Path) -> None:
    """Through the recall index, a long memory still scores the passage holding its last detail."""
    store = _store(tmp_path)
    _long_memories(store, "alice", 8)
    vector = EMBEDDER.embed([DETAIL])[0]
    for _ in range(2):  # the first search loads the user's passages, the second is answered from memory
        hits = store.vector_search("alice", vector, MemoryFilters(), 3)
        assert hits[0].memory.id == "alice-m003" and hits[0].passage == DETAIL
    plain = _plain(tmp_path).vector_search("alice", vector, MemoryFilters(), 3)
    assert [(h.memory.id, h.passage) for h in plain] == [(h.memory.id, h.passage) for h in hits]
    assert np.isclose(plain[0].score, hits[0].score)
    assert store._passages.indexed_users() == ["alice"]


def test_a_users_first_long_memory_joins_a_complete_index(tmp_path: Path) -> None:
    """With every user's passages held, a new user's long memory is added to them, and found with no reload."""
    store = _store(tmp_path)
    _long_memories(store, "alice", 4)
    assert _matches(store, "alice", DETAIL, 5)[0][0] == "alice-m003"
    _long_memories(store, "carol", 4)
    assert store._passages.indexed_users() == ["alice", "carol"], "carol's passages joined as they were written"
    assert _matches(store, "carol", DETAIL, 50) == _matches(_plain(tmp_path), "carol", DETAIL, 50)
    assert _matches(store, "dave", DETAIL, 5) == []


def test_this_process_writes_reach_the_loaded_passages(tmp_path: Path) -> None:
    """A long memory stored after the user's passages were loaded is found without reloading them."""
    store = _store(tmp_path)
    _long_memories(store, "alice", 3)
    assert _matches(store, "alice", DETAIL, 5)[0][1] != DETAIL
    _long_memories(store, "alice", 5)  # memories 0-2 again (kept once), 3 brings the detail
    assert _matches(store, "alice", DETAIL, 5)[0][:2] == ("alice-m003", DETAIL)
    assert _matches(store, "alice", DETAIL, 50) == _matches(_plain(tmp_path), "alice", DETAIL, 50)


def test_another_process_writes_are_seen(tmp_path: Path) -> None:
    """Passages another store (process) adds on the same directory are found by the next search."""
    store = _store(tmp_path)
    _long_memories(store, "alice", 3)
    assert _matches(store, "alice", DETAIL, 5)[0][1] != DETAIL
    _long_memories(_plain(tmp_path), "alice", 5)
    assert _matches(store, "alice", DETAIL, 5)[0][:2] == ("alice-m003", DETAIL)


def test_erasure_drops_the_passages_from_the_index(tmp_path: Path) -> None:
    """Forgetting a long memory, or a whole user, here or in another process, drops its passages from memory."""
    store = _store(tmp_path)
    _long_memories(store, "alice", 5)
    _long_memories(store, "bob", 5)
    assert _matches(store, "alice", DETAIL, 5)[0][0] == "alice-m003"
    store.delete("alice", ["alice-m003"])
    assert all(m[0] != "alice-m003" for m in _matches(store, "alice", DETAIL, 50))
    assert _matches(store, "bob", DETAIL, 5)[0][0] == "bob-m003"
    _plain(tmp_path).delete("bob", ["bob-m003"])  # another process
    assert all(m[0] != "bob-m003" for m in _matches(store, "bob", DETAIL, 50))
    store.delete_user("alice")
    assert store._passages.indexed_users() == [], "dropped with the rows, before the erasure returned"
    assert _matches(store, "alice", DETAIL, 50) == []


def test_compaction_keeps_the_held_passages(tmp_path: Path) -> None:
    """Upkeep's compaction changes the table's version but no row: the held passages stay (no reload of all)."""
    store = _store(tmp_path)
    _long_memories(store, "alice", 6)
    want = _matches(store, "alice", DETAIL, 50)
    index = store._passages._index
    assert index is not None
    held = index.users["alice"]
    store._passages.compact()
    assert _matches(store, "alice", DETAIL, 50) == want
    assert index.users["alice"] is held, "kept across the compaction"
    _long_memories(store, "alice", 8)  # this process's write after the compaction still reaches them
    assert index.users["alice"] is held and _matches(store, "alice", DETAIL, 50) == _matches(
        _plain(tmp_path), "alice", DETAIL, 50
    )


def test_filtered_recall_with_passages_matches_lancedb(tmp_path: Path) -> None:
    """Memories that passages point at are read from the index through the same filters LanceDB applies."""
    store = _store(tmp_path)
    _long_memories(store, "alice", 12)
    plain = _plain(tmp_path)
    vector = EMBEDDER.embed([DETAIL])[0]
    for filters in (MemoryFilters(), MemoryFilters(from_session="s3"), MemoryFilters(from_session="s1")):
        want = [(c.memory.id, c.passage, round(c.score, 5)) for c in plain.vector_search("alice", vector, filters, 10)]
        got = [(c.memory.id, c.passage, round(c.score, 5)) for c in store.vector_search("alice", vector, filters, 10)]
        assert got == want and want, filters
