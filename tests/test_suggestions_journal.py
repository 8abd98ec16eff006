"""A fact's supersede suggestions search the table as it is plus the journal's waiting writes, without a commit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engram.core.filters import MemoryFilters
from engram.core.models import Kind, Memory, Visibility
from engram.storage.flush_policy import FlushPolicy
from engram.storage.indexed_long_term import IndexedLongTermStore
from engram.storage.journal import WriteJournal
from engram.storage.journaled import JournaledLongTermStore
from tests.helpers import TEST_NOW

DIMS = 16


def _journaled(directory: Path) -> JournaledLongTermStore:
    # Never flushed in the background: every commit the test counts is one a read forced.
    table = IndexedLongTermStore(directory, dimensions=DIMS, model_id="hash", index_bytes=64 << 20)
    return JournaledLongTermStore(
        table, WriteJournal(directory / "journal.sqlite"), policy=FlushPolicy(quiet_s=3600, max_wait_s=3600)
    )


def _fact(i: int, user: str = "ann", **fields: object) -> Memory:
    return Memory(
        id=f"{user}{i:030x}"[-32:], user_id=user, content=f"fact {i}", kind=Kind.FACT, created_at=TEST_NOW, **fields
    )


def _vector(seed: int) -> np.ndarray:
    found = np.random.default_rng(seed).normal(size=DIMS).astype(np.float32)
    return found / np.linalg.norm(found)


def _suggestion_search(store: JournaledLongTermStore, user: str, vector: np.ndarray) -> list[str]:
    """The search `core/supersession.suggest` runs for a new fact (open now, seen by no agent, 12 candidates)."""
    filters = MemoryFilters(open_at=TEST_NOW).seen_by(None)
    return [c.memory.id for c in store.vector_search(user, vector, filters, 12)]


def test_single_fact_writes_each_followed_by_a_suggestion_search_commit_no_table_version(tmp_path: Path) -> None:
    store = _journaled(tmp_path)
    try:
        before = store.store._table.version
        for i in range(20):
            assert store.add(_fact(i), f"fact {i}", _vector(i))
            _suggestion_search(store, "ann", _vector(i))
        assert store.store._table.version - before == 0
        assert store.store.count() == 0  # all still waiting in the journal, batched by the flusher later
        assert store.count() == 20
    finally:
        store.close()


def test_a_fact_waiting_in_the_journal_is_found_with_the_stored_ones(tmp_path: Path) -> None:
    store = _journaled(tmp_path)
    try:
        assert store.add(_fact(1), "fact 1", _vector(1))
        store.catch_up()  # one stored fact
        assert store.add(_fact(2), "fact 2", _vector(2))  # and one waiting
        version = store.store._table.version
        found = store.vector_search("ann", _vector(2), MemoryFilters(open_at=TEST_NOW).seen_by(None), 12)
        assert [c.memory.id for c in found] == [_fact(2).id, _fact(1).id]
        assert found[0].score == pytest.approx(1.0, abs=1e-5)
        assert store.store._table.version == version  # found without being moved into the table
        assert _suggestion_search(store, "ann", _vector(1))[0] == _fact(1).id
        # The same answer as once both are in the table: the same memories, the same scores.
        store.catch_up()
        stored = store.vector_search("ann", _vector(2), MemoryFilters(open_at=TEST_NOW).seen_by(None), 12)
        assert [c.memory for c in found] == [c.memory for c in stored]
        assert [c.score for c in found] == pytest.approx([c.score for c in stored], abs=1e-5)
    finally:
        store.close()


def test_another_users_waiting_facts_are_never_found(tmp_path: Path) -> None:
    store = _journaled(tmp_path)
    try:
        assert store.add(_fact(1, "bob"), "fact 1", _vector(1))
        assert store.add(_fact(2, "ann"), "fact 2", _vector(2))
        version = store.store._table.version
        assert _suggestion_search(store, "ann", _vector(1)) == [_fact(2, "ann").id]
        assert _suggestion_search(store, "carol", _vector(1)) == []
        assert store.store._table.version == version
    finally:
        store.close()


def test_waiting_facts_pass_the_same_filters_as_stored_ones(tmp_path: Path) -> None:
    store = _journaled(tmp_path)
    try:
        private = _fact(1, agent_id="scout", visibility=Visibility.PRIVATE)
        closed = _fact(2, valid_until=TEST_NOW)
        other_project = _fact(3, project="garden")
        for i, memory in enumerate([private, closed, other_project, _fact(4)], start=1):
            assert store.add(memory, memory.content, _vector(i))
        version = store.store._table.version
        assert _suggestion_search(store, "ann", _vector(1)) == [_fact(4).id]
        seen_by_scout = MemoryFilters(open_at=TEST_NOW).seen_by("scout")
        assert {c.memory.id for c in store.vector_search("ann", _vector(1), seen_by_scout, 12)} == {
            private.id,
            _fact(4).id,
        }
        assert store.store._table.version == version
    finally:
        store.close()
