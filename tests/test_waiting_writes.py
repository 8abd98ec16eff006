"""A write's supersede search reads each journalled write once per process, yet sees every process's waiting
writes, and keeps no copy of a write once it has moved into the table (or been erased there)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engram.core.filters import MemoryFilters
from engram.core.identity import UserKey
from engram.core.models import Kind, Memory
from engram.storage.flush_policy import FlushPolicy
from engram.storage.indexed_long_term import IndexedLongTermStore
from engram.storage.journal import WriteJournal
from engram.storage.journaled import JournaledLongTermStore
from tests.helpers import TEST_NOW

DIMS = 16
ANN = UserKey("ann")


def _journaled(directory: Path) -> JournaledLongTermStore:
    # Never flushed in the background: what reaches the table is what the test moves there.
    table = IndexedLongTermStore(directory, dimensions=DIMS, model_id="hash", index_bytes=64 << 20)
    return JournaledLongTermStore(
        table, WriteJournal(directory / "journal.sqlite"), policy=FlushPolicy(quiet_s=3600, max_wait_s=3600)
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JournaledLongTermStore]:
    opened = _journaled(tmp_path)
    yield opened
    opened.close()


def _fact(i: int, user: str = "ann", project: str | None = None) -> Memory:
    return Memory(
        id=f"{user}{i:030x}"[-32:],
        user_id=user,
        content=f"fact {i}",
        kind=Kind.FACT,
        created_at=TEST_NOW,
        project=project,
    )


def _vector(seed: int) -> np.ndarray:
    found = np.random.default_rng(seed).normal(size=DIMS).astype(np.float32)
    return found / np.linalg.norm(found)


def _write(store: JournaledLongTermStore, memory: Memory, seed: int) -> None:
    assert store.add(memory, memory.content, _vector(seed))


def _suggestion_search(store: JournaledLongTermStore, user: str, seed: int, project: str | None = None) -> list[str]:
    """The search `core/supersession.suggest` runs for a new fact (open now, seen by no agent, 12 candidates)."""
    filters = MemoryFilters(project=project, open_at=TEST_NOW).seen_by(None)
    return [c.memory.id for c in store.vector_search(UserKey(user), _vector(seed), filters, 12)]


def _counted_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A counter of the memories decoded from their stored JSON (journal entries are; table rows are not)."""
    count = [0]
    validate = Memory.model_validate

    def counted(cls: type[Memory], *args: Any, **kwargs: Any) -> Memory:
        count[0] += 1
        return validate(*args, **kwargs)

    monkeypatch.setattr(Memory, "model_validate", classmethod(counted))
    return count


def test_each_single_write_decodes_only_the_journal_entries_not_seen_before(
    store: JournaledLongTermStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    decodes = _counted_decodes(monkeypatch)
    for i in range(40):  # 40 writes waiting, each followed by its supersede search
        _write(store, _fact(i), i)
        assert _suggestion_search(store, "ann", i)[0] == _fact(i).id
    before = decodes[0]
    for i in range(40, 50):
        _write(store, _fact(i), i)
        found = _suggestion_search(store, "ann", i)
        assert found[0] == _fact(i).id and len(found) == 12
    # One decode per new entry; re-reading every waiting entry per search would be 455.
    assert decodes[0] - before == 10
    assert store.store.count() == 0  # all of them still waiting: nothing was moved to answer the searches


def test_another_processs_waiting_writes_are_found_before_and_after_this_one_has_read_the_journal(
    tmp_path: Path,
) -> None:
    this, other = _journaled(tmp_path), _journaled(tmp_path)
    try:
        _write(other, _fact(1), 1)
        assert _suggestion_search(this, "ann", 1) == [_fact(1).id]
        _write(other, _fact(2), 2)  # written after this process read the journal
        found = _suggestion_search(this, "ann", 2)
        assert found[0] == _fact(2).id and sorted(found) == sorted([_fact(1).id, _fact(2).id])
        _write(this, _fact(3), 3)
        found = _suggestion_search(other, "ann", 3)
        assert found[0] == _fact(3).id and sorted(found) == sorted(_fact(i).id for i in (1, 2, 3))
        assert this.store.count() == 0
    finally:
        this.close()
        other.close()


def test_a_write_moved_and_erased_by_another_process_is_not_found_from_an_earlier_read(tmp_path: Path) -> None:
    this, other = _journaled(tmp_path), _journaled(tmp_path)
    try:
        _write(other, _fact(1), 1)
        _write(other, _fact(2), 2)
        assert set(_suggestion_search(this, "ann", 1)) == {_fact(1).id, _fact(2).id}  # this one holds both now
        assert other.delete(ANN, [_fact(1).id]) == 1  # moves both into the table, then erases one
        assert _suggestion_search(this, "ann", 1) == [_fact(2).id]
        assert not this.waiting.holds(_fact(1).id) and not this.waiting.holds(_fact(2).id)
    finally:
        this.close()
        other.close()


def test_another_processs_move_drops_this_ones_copies_before_its_next_search(tmp_path: Path) -> None:
    this, other = _journaled(tmp_path), _journaled(tmp_path)
    try:
        _write(other, _fact(1), 1)
        assert _suggestion_search(this, "ann", 1) == [_fact(1).id]
        assert this.waiting.holds(_fact(1).id)
        other.catch_up()
        this.waiting.forget_moved()  # what this process's flusher does when idle, and every read does first
        assert not this.waiting.holds(_fact(1).id)
        assert _suggestion_search(this, "ann", 1) == [_fact(1).id]  # from the table now, once
    finally:
        this.close()
        other.close()


ERASURES: dict[str, Callable[[JournaledLongTermStore], object]] = {
    "delete": lambda s: s.delete(ANN, [_fact(1).id]),
    "delete_user": lambda s: s.delete_user(ANN),
    "delete_project": lambda s: s.delete_project(ANN, "garden"),
    "delete_older_than": lambda s: s.delete_older_than(TEST_NOW + timedelta(days=1)),
}


@pytest.mark.parametrize("erase", list(ERASURES))
def test_erasure_leaves_no_copy_of_a_waiting_write_in_memory(store: JournaledLongTermStore, erase: str) -> None:
    erased = _fact(1, project="garden")
    _write(store, erased, 1)
    _write(store, _fact(7, user="bob", project="garden"), 7)  # another user's, read but never searched
    assert _suggestion_search(store, "ann", 1, "garden") == [erased.id]
    assert store.waiting.holds(erased.id) and store.waiting.holds(_fact(7, user="bob").id)
    ERASURES[erase](store)
    assert not store.waiting.holds(erased.id)
    assert not store.waiting.holds(_fact(7, user="bob").id)  # moved into the table: no copy kept either
    assert erased.id not in _suggestion_search(store, "ann", 1, "garden")


def test_a_write_erased_and_written_again_is_found_once(store: JournaledLongTermStore) -> None:
    _write(store, _fact(1), 1)
    assert _suggestion_search(store, "ann", 1) == [_fact(1).id]
    assert store.delete(ANN, [_fact(1).id]) == 1
    _write(store, _fact(1), 1)
    _write(store, _fact(2), 2)
    found = _suggestion_search(store, "ann", 1)
    assert found[0] == _fact(1).id and sorted(found) == sorted([_fact(1).id, _fact(2).id])
