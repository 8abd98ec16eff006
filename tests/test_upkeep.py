"""Store hygiene: upkeep bounds the files many small writes leave, keeps recent versions for readers, runs in one
process at a time, and starts by itself after a burst of writes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import lance
import numpy as np
import pytest

from engram.core.filters import MemoryFilters
from engram.core.models import Memory
from engram.embeddings.hashing import HashEmbedder
from engram.storage import lance_support, table_upkeep
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


def _single_writes(
    store: JournaledLongTermStore, embedder: HashEmbedder, count: int, user: str = "alice", first: int = 0
) -> None:
    """`count` writes, each followed by a read: the worst case, one commit (one fragment and version) per write."""
    for i in range(first, first + count):
        content = f"note {i} about the garden and the violin"
        memory = Memory(id=f"{i:032x}", user_id=user, content=content, created_at=TEST_NOW)
        store.add(memory, content, embedder.embed([content])[0])
        store.count()  # a read moves the write into the table at once


def _open(directory: Path, embedder: HashEmbedder) -> JournaledLongTermStore:
    table = LanceLongTermStore(directory, dimensions=embedder.dimensions, model_id=embedder.model_id)
    return JournaledLongTermStore(table, WriteJournal(directory / "journal.sqlite"))


def _burst_upkept(
    directory: Path, embedder: HashEmbedder, burst_commits: int
) -> tuple[JournaledLongTermStore, threading.Event]:
    """A journaled store whose upkeep only a burst of commits starts (the schedule is hourly), and an event set by
    each upkeep run that did work."""
    table = LanceLongTermStore(directory, dimensions=embedder.dimensions, model_id=embedder.model_id)
    policy = UpkeepPolicy(interval_s=3600, burst_commits=burst_commits, keep_versions_for=timedelta(0))
    upkeep = Upkeep(table, policy)
    ran = threading.Event()
    run_once = upkeep.run_once

    def observed_run(force: bool = False) -> bool:
        done = run_once(force)
        if done:
            ran.set()
        return done

    upkeep.run_once = observed_run  # type: ignore[method-assign]  # the upkeep thread's runs, told by an event
    return JournaledLongTermStore(table, WriteJournal(directory / "journal.sqlite"), upkeep=upkeep), ran


def test_upkeep_bounds_the_files_of_many_single_writes_and_keeps_every_row(tmp_path: Path) -> None:
    embedder = HashEmbedder()
    store = _open(tmp_path, embedder)
    try:
        _single_writes(store, embedder, WRITES)
        before = store.store.health()
        assert before.fragments >= WRITES  # the fragmentation upkeep is there to repair
        assert store.store.upkeep(timedelta(0))
        # LanceDB's clean-up removes the versions at once but lists data files only up to the oldest version it
        # keeps, which this run's own compaction wrote: their files go at the next run.
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
    store, ran = _burst_upkept(tmp_path, embedder, burst_commits=10)
    try:
        # Exactly one burst, then no write: with the test's zero version margin, upkeep removes the version a
        # concurrent write is reading (the setting's floor of 1 s keeps a server from that; CI hit it with 12 writes).
        _single_writes(store, embedder, 10)
        assert ran.wait(60)  # the hour-long schedule did not start it (60 s: only a hang guard)
        assert store.store.health().fragments < 10
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


_WITHOUT_PYLANCE = """
import sys
from datetime import timedelta
from pathlib import Path
from engram.core.filters import MemoryFilters
from engram.core.models import Memory
from engram.embeddings.hashing import HashEmbedder
from engram.storage.journal import WriteJournal
from engram.storage.journaled import JournaledLongTermStore
from engram.storage.long_term import LanceLongTermStore
from engram.storage.upkeep import Upkeep, UpkeepPolicy
from tests.helpers import TEST_NOW

directory, embedder = Path(sys.argv[1]), HashEmbedder()
table = LanceLongTermStore(directory, dimensions=embedder.dimensions, model_id=embedder.model_id)
upkeep = Upkeep(table, UpkeepPolicy(keep_versions_for=timedelta(0)))
store = JournaledLongTermStore(table, WriteJournal(directory / "journal.sqlite"))
for i in range(30):
    content = f"note {i} about the garden"
    store.add(Memory(id=f"{i:032x}", user_id="alice", content=content, created_at=TEST_NOW), content,
              embedder.embed([content])[0])
    store.count()
assert upkeep.due(table.health())
assert upkeep.run_once() and upkeep.run_once(force=True)
health = table.health()
assert health.rows == 30 and health.fragments == 1 and health.data_files == 1, health
assert len(store.vector_search("alice", embedder.embed(["note 7"])[0], MemoryFilters(), 30)) == 30
assert sorted(store.store.all_ids()) == [f"{i:032x}" for i in range(30)]
assert "lance" not in sys.modules, "the second Lance engine (pylance) was loaded"
store.close()  # the last process out removes superseded versions through it: no resident memory that matters then
"""


def _in_a_fresh_interpreter(script: str, directory: Path) -> subprocess.CompletedProcess[str]:
    """Run `script` with `directory` as its argument in a new Python (which modules load is per process)."""
    return subprocess.run(
        [sys.executable, "-c", script, str(directory)],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_upkeep_and_its_health_checks_need_no_second_lance_engine(tmp_path: Path) -> None:
    # pylance, loaded once, stayed in the server for good: ~100 MB of resident code and ~20 threads of its own.
    done = _in_a_fresh_interpreter(_WITHOUT_PYLANCE, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]


def test_opening_a_store_bounds_lances_io_threads_unless_the_operator_did(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each read Lance has in flight holds a blocking thread, kept while reads keep coming: 100-140 threads unbounded.
    monkeypatch.delenv("LANCE_IO_THREADS", raising=False)
    LanceLongTermStore(tmp_path / "a", dimensions=8, model_id="m").close()
    assert os.environ["LANCE_IO_THREADS"] == str(lance_support.IO_THREADS)
    monkeypatch.setenv("LANCE_IO_THREADS", "16")
    LanceLongTermStore(tmp_path / "b", dimensions=8, model_id="m").close()
    assert os.environ["LANCE_IO_THREADS"] == "16"


_OWN_UPKEEP_KEEPS_THE_RECALL_INDEX = """
import sys
from datetime import timedelta
from pathlib import Path
from engram.core.filters import MemoryFilters
from engram.core.models import Memory
from engram.embeddings.hashing import HashEmbedder
from engram.storage.indexed_long_term import IndexedLongTermStore
from tests.helpers import TEST_NOW

directory, embedder = Path(sys.argv[1]), HashEmbedder()
table = IndexedLongTermStore(directory, dimensions=embedder.dimensions, model_id=embedder.model_id,
                             index_bytes=64 << 20)
def write(i):
    content = f"note {i} about the garden"
    table.add(Memory(id=f"{i:032x}", user_id="alice", content=content, created_at=TEST_NOW), content,
              embedder.embed([content])[0])
write(0)
assert len(table.vector_search("alice", embedder.embed(["note 0"])[0], MemoryFilters(), 5)) == 1  # index loaded
loaded = table.recall_index.get("alice")
for i in range(1, 30):
    write(i)
assert table.upkeep(timedelta(0)) and table.upkeep(timedelta(0))
assert table.health().fragments == 1
hits = table.keyword_search("alice", "note 17", MemoryFilters(), 30)
assert len(hits) == 30 and hits[0].memory.content == "note 17 about the garden"
assert table.recall_index.get("alice") is loaded, "this process's own upkeep dropped the recall index"
# Passages of long memories, held in memory too: this process's compaction of their table keeps them as well.
for i in range(6):
    table.add_passages("alice", f"{i:032x}", [f"passage {i} of a long note"], embedder.embed([f"passage {i}"]))
def passages():
    return [(m.memory_id, m.text) for m in table._passages.search("alice", embedder.embed(["passage 4"])[0], 3)]
passage = passages()
held = table._passages._index.get("alice")
assert table.upkeep(timedelta(0)) and table.upkeep(timedelta(0))
assert passages() == passage and passage[0][1] == "passage 4 of a long note"
assert table._passages._index.get("alice") is held, "this process's own upkeep dropped the held passages"
assert "lance" not in sys.modules, "the second Lance engine (pylance) was loaded"
table.close()
"""


def test_this_processs_upkeep_keeps_the_recall_index_without_the_second_lance_engine(tmp_path: Path) -> None:
    # The recall index used to read the transaction log of this process's own compactions through pylance, as if
    # another process had made them: ~46 MB of resident code and a runtime of its own threads for the server's life.
    done = _in_a_fresh_interpreter(_OWN_UPKEEP_KEEPS_THE_RECALL_INDEX, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]


def _versions_and_data_files(directory: Path) -> tuple[int, int]:
    table = directory / "memories.lance"
    return len(list((table / "_versions").glob("*.manifest"))), len(list((table / "data").iterdir()))


def test_the_last_process_to_close_the_store_removes_superseded_versions_and_their_files(tmp_path: Path) -> None:
    # Each compaction below a million rows rewrites the table, and its predecessors stay for readers of other
    # processes for the retention margin: 10,000 single writes left 311 versions and 109 MB for 17 MB of rows.
    embedder = HashEmbedder()
    store = _open(tmp_path, embedder)
    _single_writes(store, embedder, 40)
    assert store.store.upkeep(timedelta(hours=1))  # compacted, every superseded version kept for readers
    _single_writes(store, embedder, 10, first=40)
    assert _versions_and_data_files(tmp_path)[0] > 10
    store.close()
    versions, data_files = _versions_and_data_files(tmp_path)
    assert versions == 1, versions
    reopened = _open(tmp_path, embedder)
    try:
        # Every data file left belongs to the latest version (not compacted at close: the next upkeep does that).
        assert reopened.store.health().fragments == data_files
        assert reopened.count() == 50
        hits = reopened.keyword_search("alice", "note 44", MemoryFilters(), 50)
        assert hits and hits[0].memory.content == "note 44 about the garden and the violin"
    finally:
        reopened.close()


def test_closing_while_another_process_has_the_store_open_keeps_the_versions(tmp_path: Path) -> None:
    embedder = HashEmbedder()
    store = _open(tmp_path, embedder)
    _single_writes(store, embedder, 12)
    other = LanceLongTermStore(tmp_path, dimensions=embedder.dimensions, model_id=embedder.model_id)
    try:
        before = _versions_and_data_files(tmp_path)
        store.close()  # another store object holds its own presence lock, as another process would
        assert _versions_and_data_files(tmp_path) == before
        assert other.count() == 12
    finally:
        other.close()
    assert _versions_and_data_files(tmp_path)[0] == 1  # the last one out cleans up


def test_once_the_store_has_been_quiet_past_the_margin_upkeep_removes_every_superseded_version(tmp_path: Path) -> None:
    # A long-running server: without it, up to 8 versions (each a whole copy of the table after a compaction) stay.
    embedder = HashEmbedder()
    table = LanceLongTermStore(tmp_path, dimensions=embedder.dimensions, model_id=embedder.model_id)
    now = [1000.0]
    margin = timedelta(milliseconds=1)  # the versions' own ages are real time: all past it; quiet is told by `now`
    upkeep = Upkeep(table, UpkeepPolicy(keep_versions_for=margin), clock=lambda: now[0])
    store = JournaledLongTermStore(table, WriteJournal(tmp_path / "journal.sqlite"))
    try:
        _single_writes(store, embedder, 6)
        upkeep.tick()  # the writes were just seen: not quiet yet (upkeep is due, so it runs once)
        assert table.health().data_files > MAX_DATA_FILES
        now[0] += 1
        upkeep.tick()
        after = table.health()
        assert after.versions <= 2 and after.data_files <= MAX_DATA_FILES and after.rows == 6, after
        _single_writes(store, embedder, 3, first=6)
        upkeep.tick()
        assert table.health().data_files > MAX_DATA_FILES  # writing again: not quiet
    finally:
        store.close()


def test_versions_and_data_files_stay_bounded_through_2000_single_writes(tmp_path: Path) -> None:
    # The stream of single writes: each commits on its own (a read follows it), and the burst trigger, not
    # the hourly schedule, must keep the table's versions and files from growing with the writes.
    embedder = HashEmbedder()
    store, ran = _burst_upkept(tmp_path, embedder, burst_commits=50)
    worst = (0, 0)
    cached = 0
    try:
        for burst in range(40):
            ran.clear()
            _single_writes(store, embedder, 50, first=burst * 50)
            assert ran.wait(60), f"no upkeep after burst {burst}"  # 60 s: only a hang guard
            health = store.store.health()
            worst = (max(worst[0], health.versions), max(worst[1], health.data_files))
            cached = max(cached, health.cache_bytes)
        assert store.count() == 2000
    finally:
        store.close()
    # One burst's commits at most, whatever the number of writes so far (2,000 without upkeep).
    assert worst[0] <= 60 and worst[1] <= 60, worst
    # LanceDB's caches fill with superseded versions and index generations (~5 MB per 1,000 writes here, 15.5 MB
    # by the end at the former 24 + 4 MB bounds): their bounds stop them (LanceDB evicts a moment after an insert
    # passes one, hence the 10%), and those bounds are what the server pays for them.
    bound = lance_support.INDEX_CACHE_BYTES + lance_support.METADATA_CACHE_BYTES
    assert 0 < cached <= 1.1 * bound and cached < 12 << 20, cached


def test_upkeep_logs_the_fragments_each_run_rewrites_and_below_a_million_rows_that_is_the_whole_table(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # What makes the server's peak memory under single writes (README, "Memory under a stream of writes"): LanceDB's
    # `optimize` keeps apart only fragments of different index coverage, so each run rewrites the fragments the
    # previous run left indexed together with the new ones. The upkeep log says so, for a sampler beside the server.
    embedder = HashEmbedder()
    store = LanceLongTermStore(tmp_path, dimensions=embedder.dimensions, model_id=embedder.model_id)
    rewritten: list[str] = []
    try:
        for run in range(3):
            for i in range(run * 5, run * 5 + 5):
                content = f"note {i} about the garden"
                memory = Memory(id=f"{i:032x}", user_id="alice", content=content, created_at=TEST_NOW)
                store.add(memory, content, embedder.embed([content])[0])
            caplog.clear()
            with caplog.at_level("DEBUG", logger=table_upkeep.__name__):
                store.optimize()
            rewritten += [r.getMessage().split("(")[1].split(")")[0] for r in caplog.records if "upkeep:" in r.message]
        assert store.count() == 15
    finally:
        store.close()
    # The third run rewrites the first run's fragment (and the second's) beside the five new ones.
    assert rewritten == [
        "fragments 5 rewritten into 1",
        "fragments 5 rewritten into 1",
        "fragments 7 rewritten into 2",
    ], rewritten
