"""Storage details the service relies on: indexes, the query cache, id-conditional inserts, the write journal."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from engram.config import Settings
from engram.core.filters import MemoryFilters
from engram.core.models import Memory
from engram.core.service import MemoryService
from engram.storage.flush_policy import FlushPolicy
from engram.storage.journal import WriteJournal
from engram.storage.journaled import JournaledLongTermStore
from engram.storage.long_term import LanceLongTermStore
from tests.helpers import TEST_NOW

pytestmark = pytest.mark.anyio


def test_the_table_has_id_user_agent_tag_and_keyword_indexes(service: MemoryService) -> None:
    table = service.long_term.inner.store._table  # type: ignore[attr-defined]
    indexed = {(tuple(index.columns), index.index_type) for index in table.list_indices()}
    assert indexed == {
        (("id",), "BTree"),
        (("user_id",), "Bitmap"),
        (("agent_id",), "Bitmap"),
        (("tags",), "LabelList"),
        (("index_text",), "FTS"),
    }


def test_an_insert_is_conditional_on_the_id(service: MemoryService) -> None:
    memory = Memory(id="0" * 32, user_id="alice", content="once", created_at=TEST_NOW)
    vector = np.ones(service.embedder.dimensions, dtype=np.float32) / np.sqrt(service.embedder.dimensions)
    assert service.long_term.add(memory, "once", vector) is True
    assert service.long_term.add(memory, "once", vector) is False
    assert service.long_term.count() == 1


async def test_a_query_never_reaches_the_disk(service: MemoryService, settings: Settings) -> None:
    # Queries are the user's data too: they are embedded each time and never cached, so not even a hash of one is
    # left for whoever holds the data directory to confirm a guessed query with.
    await service.remember("alice", "the cardiologist prescribed Quuxtronic")
    query = "which dose of Quuxtronic did the cardiologist prescribe"
    first = await service.recall("alice", query)
    second = await service.recall("alice", query)
    assert [h.memory.id for h in first.memories] == [h.memory.id for h in second.memories]
    raw = b"".join(p.read_bytes() for p in settings.data_dir.rglob("*") if p.is_file())
    assert query.encode() not in raw and hashlib.sha256(query.encode()).hexdigest().encode() not in raw


def _memory(i: int, user: str = "alice") -> Memory:
    return Memory(id=f"{i:032x}", user_id=user, content=f"memory {i}", created_at=TEST_NOW)


def _unit(dimensions: int) -> np.ndarray:
    return np.ones((1, dimensions), dtype=np.float32) / np.sqrt(dimensions)


def _journaled(directory: Path, dimensions: int) -> JournaledLongTermStore:
    # Never flushed in the background: what reaches the table is what the test makes reach it.
    store = LanceLongTermStore(directory, dimensions=dimensions, model_id="hash")
    return JournaledLongTermStore(
        store, WriteJournal(directory / "journal.sqlite"), policy=FlushPolicy(quiet_s=3600, max_wait_s=3600)
    )


def test_an_acknowledged_write_waits_in_the_journal_and_a_new_open_replays_it(tmp_path: Path) -> None:
    first = _journaled(tmp_path, 8)
    assert first.add(_memory(1), "memory 1", _unit(8)[0]) is True
    assert first.store.count() == 0  # acknowledged, not yet in the table
    # A second opener (another process, or a restart after a crash) moves it in before anything else.
    second = _journaled(tmp_path, 8)
    assert second.store.count() == 1
    assert first.add(_memory(1), "memory 1", _unit(8)[0]) is False  # stored already: not created again
    assert [m.id for m in second.get("alice", [_memory(1).id])] == [_memory(1).id]
    first.close()
    second.close()
    assert LanceLongTermStore(tmp_path, dimensions=8, model_id="hash").count() == 1


def test_a_read_sees_every_acknowledged_write(tmp_path: Path) -> None:
    store = _journaled(tmp_path, 8)
    try:
        created = store.add_many(
            [_memory(i) for i in range(5)], [f"memory {i}" for i in range(5)], _unit(8).repeat(5, 0)
        )
        assert len(created) == 5
        assert store.add(_memory(2), "memory 2", _unit(8)[0]) is False  # still waiting: a repeat all the same
        assert {m.id for m in store.list_memories("alice", MemoryFilters(), 10)} == {_memory(i).id for i in range(5)}
        assert store.count() == 5
    finally:
        store.close()


def test_a_memory_erased_and_remembered_again_is_created_again(tmp_path: Path) -> None:
    store = _journaled(tmp_path, 8)
    try:
        assert store.add(_memory(1), "memory 1", _unit(8)[0]) is True
        assert store.delete("alice", [_memory(1).id]) == 1
        assert store.add(_memory(1), "memory 1", _unit(8)[0]) is True
        assert store.count() == 1
        journal_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("journal.sqlite*"))
        assert journal_bytes  # the journal exists; the erased rows were overwritten in it
    finally:
        store.close()


def test_erasure_overwrites_waiting_writes_in_the_journal_files(tmp_path: Path) -> None:
    store = _journaled(tmp_path, 8)
    try:
        marker = Memory(id="f" * 32, user_id="u-erased", content="Zorblatt secret", created_at=TEST_NOW)
        store.add(marker, "Zorblatt secret", _unit(8)[0])
        store.add(_memory(2, user="bob"), "memory 2", _unit(8)[0])
        assert b"Zorblatt" in b"".join(p.read_bytes() for p in tmp_path.glob("journal.sqlite*"))
        assert store.delete_user("u-erased") == 1
        assert b"Zorblatt" not in b"".join(p.read_bytes() for p in tmp_path.glob("journal.sqlite*"))
        assert store.traces_of("u-erased") == []
        assert store.count() == 1
    finally:
        store.close()
