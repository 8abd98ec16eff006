"""Durability below the page cache: what a power cut (not only a SIGKILL) would leave of an acknowledged write.

A SIGKILL keeps the kernel's page cache, so the crash test cannot tell a write that reached the disk from one that
only reached memory. These tests check the two promises that make the difference: the journal commits with a full
sync before `remember` returns, and LanceDB's new files are fsync'd before the journal lets go of their entries.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engram.config import Settings
from engram.core.models import RememberItem
from engram.core.service import MemoryService
from engram.embeddings.hashing import HashEmbedder
from engram.runtime import open_memory
from engram.storage.journal import WriteJournal
from tests.helpers import stepping_clock

pytestmark = pytest.mark.anyio

#: SQLite's PRAGMA synchronous levels that fsync the write-ahead log at every commit (FULL, EXTRA).
SYNCS_EVERY_COMMIT = {2, 3}


@pytest.fixture
def memory(tmp_path: Path) -> Iterator[MemoryService]:
    service = open_memory(Settings(data_dir=tmp_path / "data", embedding_model="hash"), HashEmbedder(), stepping_clock)
    yield service
    service.close()


def _journal_of(service: MemoryService) -> WriteJournal:
    journal = service.long_term.inner._journal  # type: ignore[attr-defined]
    assert isinstance(journal, WriteJournal)
    return journal


async def test_the_journal_syncs_every_commit_to_disk(memory: MemoryService) -> None:
    connection = _journal_of(memory)._connection  # the connection that acknowledges writes
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # In WAL mode NORMAL syncs only at checkpoints: a power cut may lose the last commits. OFF never syncs.
    assert connection.execute("PRAGMA synchronous").fetchone()[0] in SYNCS_EVERY_COMMIT


async def test_an_acknowledged_write_is_committed_in_the_journal_before_remember_returns(
    memory: MemoryService,
) -> None:
    result = await memory.remember("alice", "acknowledged means committed")
    # Another connection (another process, after a crash) sees the entry: it was committed, not just buffered.
    other = sqlite3.connect(_journal_of(memory)._path)
    try:
        assert other.execute("SELECT 1 FROM known WHERE id = ?", (result.id,)).fetchone() is not None
    finally:
        other.close()


class SyncRecorder:
    """Records, in order, each fsync (by path, calling through to the real one) and each journal trim."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._real_fsync = os.fsync

    def fsync(self, descriptor: int) -> None:
        try:
            path = os.readlink(f"/proc/self/fd/{descriptor}")
        except OSError:
            path = f"fd {descriptor}"
        self._real_fsync(descriptor)
        with self._lock:
            self.events.append(("fsync", path))

    def trimmed(self, through_seq: int) -> None:
        with self._lock:
            self.events.append(("trim", str(through_seq)))

    def synced_before_first_trim(self) -> set[str]:
        synced: set[str] = set()
        for kind, what in self.events:
            if kind == "trim":
                return synced
            synced.add(what)
        raise AssertionError("the journal was never trimmed")


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


async def test_lance_files_are_on_disk_before_the_journal_lets_go_of_their_entries(
    memory: MemoryService, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not Path("/proc/self/fd").is_dir():
        pytest.fail("this test names fsync'd files through /proc/self/fd (Linux)")
    table_dir = memory.long_term.inner.store._table_dir  # type: ignore[attr-defined]
    memory.long_term.inner.catch_up()  # type: ignore[attr-defined]
    before = _files(table_dir)
    recorder = SyncRecorder()
    trim = WriteJournal.trim

    def recorded_trim(journal: WriteJournal, through_seq: int) -> None:
        recorder.trimmed(through_seq)
        trim(journal, through_seq)

    monkeypatch.setattr(os, "fsync", recorder.fsync)
    monkeypatch.setattr(WriteJournal, "trim", recorded_trim)
    # One batch: one journal entry group, moved by one commit and one trim (whether this thread or the flusher
    # moves it).
    await memory.remember_many("alice", [RememberItem(content=f"durable note {i}") for i in range(3)])
    memory.long_term.inner.catch_up()  # type: ignore[attr-defined]  # moves the journalled writes into the table

    added = {p for p in _files(table_dir) - before if p.parent.name in ("data", "_versions")}
    assert {p.parent.name for p in added} == {"data", "_versions"}  # the commit's rows and its manifest
    synced = recorder.synced_before_first_trim()
    unsynced = sorted(str(p.relative_to(table_dir)) for p in added if str(p) not in synced)
    assert unsynced == [], "trimmed the journal before these were fsync'd"
    # A new file's name is durable only once its directory is synced too.
    assert {str(table_dir / "data"), str(table_dir / "_versions")} <= synced
