"""Store hygiene: upkeep bounds the files many small writes leave, keeps recent versions for readers, runs in one
process at a time, and starts by itself after a burst of writes."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import lance
import numpy as np
import pytest

from engram.core.filters import MemoryFilters
from engram.core.models import Memory
from engram.embeddings.hashing import HashEmbedder
from engram.storage import table_upkeep
from engram.storage.journal import WriteJournal
from engram.storage.journaled import JournaledLongTermStore
from engram.storage.lance_support import FileLock
from engram.storage.long_term import LanceLongTermStore
from engram.storage.upkeep import Upkeep, UpkeepPolicy
from tests.helpers import TEST_NOW

WRITES = 150
#: After upkeep: one data file per compacted fragment (at most _FRAGMENT_ROWS rows each) plus, at most, the latest
#: unmerged one; the data set here fits one fragment.
MAX_DATA_FILES = 2


def _single_writes(store: JournaledLongTermStore, embedder: HashEmbedder, count: int, user: str = "alice") -> None:
    """`count` writes, each followed by a read: the worst case, one commit (one fragment and version) per write."""
    for i in range(count):
        content = f"note {i} about the garden and the violin"
        memory = Memory(id=f"{i:032x}", user_id=user, content=content, created_at=TEST_NOW)
        store.add(memory, content, embedder.embed([content])[0])
        store.count()  # a read moves the write into the table at once


def _open(directory: Path, embedder: HashEmbedder) -> JournaledLongTermStore:
    table = LanceLongTermStore(directory, dimensions=embedder.dimensions, model_id=embedder.model_id)
    return JournaledLongTermStore(table, WriteJournal(directory / "journal.sqlite"))


def test_upkeep_bounds_the_files_of_many_single_writes_and_keeps_every_row(tmp_path: Path) -> None:
    embedder = HashEmbedder()
    store = _open(tmp_path, embedder)
    try:
        _single_writes(store, embedder, WRITES)
        before = store.store.health()
        assert before.fragments >= WRITES  # the fragmentation upkeep is there to repair
        assert store.store.upkeep(timedelta(0))
        after = store.store.health()
        assert after.data_files <= MAX_DATA_FILES, after
        assert after.fragments <= MAX_DATA_FILES and after.versions <= 2 and after.unindexed_rows == 0, after
        assert after.rows == WRITES
        vector = embedder.embed(["note 7 about the garden and the violin"])[0]
        hits = store.vector_search("alice", vector, MemoryFilters(), 1)
        assert hits[0].memory.content == "note 7 about the garden and the violin"
        by_keyword = store.keyword_search("alice", "note 123", MemoryFilters(), WRITES)
        assert by_keyword and by_keyword[0].memory.content.startswith("note 123 ")
    finally:
        store.close()


def test_upkeep_keeps_superseded_versions_for_readers_until_the_margin_has_passed(tmp_path: Path) -> None:
    embedder = HashEmbedder()
    store = _open(tmp_path, embedder)
    try:
        _single_writes(store, embedder, 20)
        table_path = str(tmp_path / "memories.lance")
        old_version = lance.dataset(table_path).version
        reader = lance.dataset(table_path, version=old_version)  # a query of another process, on an old version
        assert store.store.upkeep(timedelta(hours=1))
        assert reader.count_rows() == 20 and len(reader.to_table(columns=["id"])) == 20
        assert store.store.health().versions > 2  # superseded, but not long enough ago to be removed
        assert store.store.upkeep(timedelta(0))
        assert store.store.health().versions == 1
    finally:
        store.close()


def test_only_one_process_does_upkeep_at_a_time(tmp_path: Path) -> None:
    embedder = HashEmbedder()
    store = _open(tmp_path, embedder)
    try:
        _single_writes(store, embedder, 5)
        other_process = FileLock(tmp_path / ".engram-upkeep.lock")  # its own open file: flock conflicts with it
        assert other_process.acquire(blocking=False)
        try:
            assert store.store.upkeep(timedelta(0)) is False
            assert store.store.health().fragments == 5  # untouched
        finally:
            other_process.release()
        assert store.store.upkeep(timedelta(0)) is True
    finally:
        store.close()


def test_a_burst_of_writes_starts_upkeep_without_waiting_for_the_schedule(tmp_path: Path) -> None:
    embedder = HashEmbedder()
    table = LanceLongTermStore(tmp_path, dimensions=embedder.dimensions, model_id=embedder.model_id)
    upkeep = Upkeep(table, UpkeepPolicy(interval_s=3600, burst_commits=10, keep_versions_for=timedelta(0)))
    ran = threading.Event()
    run_once = upkeep.run_once

    def observed_run(force: bool = False) -> bool:
        done = run_once(force)
        if done:
            ran.set()
        return done

    upkeep.run_once = observed_run  # type: ignore[method-assign]  # the upkeep thread's runs, told by an event
    store = JournaledLongTermStore(table, WriteJournal(tmp_path / "journal.sqlite"), upkeep=upkeep)
    try:
        _single_writes(store, embedder, 12)
        assert ran.wait(60)  # the hour-long schedule did not start it (60 s: only a hang guard)
        assert store.store.health().fragments < 12
    finally:
        store.close()


@pytest.mark.parametrize("rows", [3])
def test_upkeep_skips_a_healthy_table(tmp_path: Path, rows: int) -> None:
    embedder = HashEmbedder()
    table = LanceLongTermStore(tmp_path, dimensions=embedder.dimensions, model_id=embedder.model_id)
    vectors = np.asarray(embedder.embed([f"row {i}" for i in range(rows)]), dtype=np.float32)
    memories = [Memory(id=f"{i:032x}", user_id="a", content=f"row {i}", created_at=TEST_NOW) for i in range(rows)]
    table.add_many(memories, [m.content for m in memories], vectors)
    upkeep = Upkeep(table, UpkeepPolicy(max_unindexed_rows=10))
    assert upkeep.due(table.health()) is False
    assert upkeep.run_once() is False
    assert upkeep.run_once(force=True) is True
    table.close()


def test_past_the_threshold_upkeep_builds_a_vector_index_that_filtered_search_uses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(table_upkeep, "VECTOR_INDEX_MIN_ROWS", 1000)
    embedder = HashEmbedder()
    table = LanceLongTermStore(tmp_path, dimensions=embedder.dimensions, model_id=embedder.model_id)
    try:
        contents = [f"entry {i} of user {i % 4} about tea, trains and tomatoes" for i in range(1200)]
        vectors = np.asarray(embedder.embed(contents), dtype=np.float32)
        now = TEST_NOW
        memories = [
            Memory(id=f"{i:032x}", user_id=f"user{i % 4}", content=c, created_at=now) for i, c in enumerate(contents)
        ]
        table.add_many(memories, contents, vectors)
        assert table.upkeep(timedelta(0))
        assert any(index.columns == ["vector"] for index in table._table.list_indices())
        # More candidates than the index's default search breadth, prefiltered to one user.
        hits = table.vector_search("user1", vectors[5], MemoryFilters(), 150)
        assert len(hits) == 150 and {h.memory.user_id for h in hits} == {"user1"}
        assert hits[0].memory.content == contents[5]
        # Erasure below the threshold drops the index (it held the erased vectors).
        assert table.delete_user("user1") == 300
        assert not any(index.columns == ["vector"] for index in table._table.list_indices())
        exact = table.vector_search("user2", vectors[6], MemoryFilters(), 5)
        assert contents[6] in [h.memory.content for h in exact] and {h.memory.user_id for h in exact} == {"user2"}
    finally:
        table.close()
