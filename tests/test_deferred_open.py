"""LanceDB opened at first use: a first recall answered from a current snapshot opens (and imports) no LanceDB, and
every guarantee of opening at start still holds (journal catch-up, other processes' writes, the same answer)."""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

import lancedb
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from engram.config import Settings
from engram.core.filters import MemoryFilters
from engram.core.service import MemoryService
from engram.runtime import open_memory
from engram.storage.deferred_open import can_wait, latest_manifest, latest_version, stamped_with
from engram.storage.indexed_long_term import IndexedLongTermStore
from engram.storage.journal import WriteJournal
from engram.storage.memory_rows import _COLUMNS, TABLE_NAME, memory_schema
from engram.storage.recall_snapshot import FOLDER
from tests.helpers import TEST_NOW, stepping_clock
from tests.test_recall_index import EMBEDDER, _fill, _memory, _store
from tests.test_recall_snapshot import _answers, _closed_with_snapshot

pytestmark = pytest.mark.anyio

FACTS = ("The spare key is under the blue flowerpot", "Ana likes grilled sardines", "Tax refund due in May")
QUESTION = "what does Ana like to eat?"

#: The real stdio server (`engram serve`), with a note in `argv[1]` of every LanceDB, pyarrow or lance import (and
#: of jwt, which only HTTP servers need to verify tokens).
_TRACED_SERVER = """\
import sys

marker = sys.argv[1]


class Watch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("lancedb", "pyarrow", "lance", "jwt"):
            with open(marker, "a") as note:
                note.write(name + "\\n")
        return None


sys.meta_path.insert(0, Watch())
sys.argv = ["engram", "serve"]
from engram.cli import main

main()
"""


def _long_term(service: MemoryService) -> IndexedLongTermStore:
    store = service.long_term.inner.store  # type: ignore[attr-defined]  # guarded -> journaled -> indexed
    assert isinstance(store, IndexedLongTermStore)
    return store


async def _closed_after_a_recall(settings: Settings) -> None:
    """Remember the facts, recall once (loading the user's index), close: the snapshot is written."""
    memory = open_memory(settings, EMBEDDER, clock=stepping_clock)
    for text in FACTS:
        await memory.remember("alice", text)
    await memory.recall("alice", "key")
    memory.close()
    assert any((settings.long_term_dir / FOLDER).iterdir())


def test_a_store_answers_from_a_current_snapshot_without_opening_lancedb(tmp_path: Path) -> None:
    before = _closed_with_snapshot(tmp_path)
    store = _store(tmp_path)
    try:
        assert _answers(store) == before
        assert "alice" in store.snapshot_loaded
        assert not store.opened, "the first searches opened LanceDB"
        # The first use that needs the table opens it, and answers as before.
        assert _answers(store, "bob")
        assert store.opened
    finally:
        store.close()


def test_a_write_by_another_process_after_an_unopened_answer_is_seen(tmp_path: Path) -> None:
    _closed_with_snapshot(tmp_path)
    reader = _store(tmp_path)
    seen = MemoryFilters(projects="any").seen_by("planner")
    try:
        assert reader.keyword_search("alice", "theorbo", seen, 5) == []
        assert not reader.opened
        writer = _store(tmp_path)
        added = _memory(70, content="Ordered a theorbo", project=None)
        _fill(writer, [added])
        writer.close()
        found = reader.keyword_search("alice", "theorbo", seen, 5)
        assert [c.memory.id for c in found] == [added.id]
        vector = EMBEDDER.embed(["Ordered a theorbo"])[0]
        assert reader.vector_search("alice", vector, seen, 1)[0].memory.id == added.id
    finally:
        reader.close()


async def test_a_journal_left_by_a_killed_process_is_moved_before_the_first_recall(settings: Settings) -> None:
    await _closed_after_a_recall(settings)
    # What a server killed after acknowledging a write leaves: the write in the journal, not in the table.
    restarted = open_memory(settings, EMBEDDER, clock=stepping_clock)
    key = restarted.user_key("alice")
    vector = EMBEDDER.embed(["Ana's violin lesson moved to Thursday"])
    when = TEST_NOW - timedelta(days=1)
    left = _memory(90, user=key, content="Ana's violin lesson moved to Thursday", created_at=when, valid_from=when)
    restarted.close()
    journal = WriteJournal(settings.long_term_dir / "journal.sqlite")
    journal.append([left], [left.content], vector)
    journal.close()
    memory = open_memory(settings, EMBEDDER, clock=stepping_clock)
    try:
        # Moved into the table while opening, before any recall can answer: the snapshot is stale by then.
        assert _long_term(memory).opened
        found = await memory.recall("alice", "violin lesson Thursday")
        assert left.id in [hit.memory.id for hit in found.memories]
        assert not _long_term(memory).snapshot_loaded
    finally:
        memory.close()
    check = WriteJournal(settings.long_term_dir / "journal.sqlite")
    try:
        assert not check.has_pending()
    finally:
        check.close()


async def test_the_first_recall_is_the_same_unopened_as_after_reading_lancedb(settings: Settings) -> None:
    await _closed_after_a_recall(settings)

    async def first_recall() -> tuple[object, bool]:
        restarted = open_memory(settings, EMBEDDER, clock=stepping_clock)
        try:
            found = await restarted.recall("alice", QUESTION)
            return found.model_dump(), _long_term(restarted).opened
        finally:
            restarted.close()

    unopened, opened = await first_recall()
    assert not opened
    for saved in (settings.long_term_dir / FOLDER).iterdir():
        saved.unlink()
    from_lancedb, opened = await first_recall()
    assert opened
    assert unopened == from_lancedb


async def test_a_stdio_servers_first_recall_from_a_snapshot_imports_no_lancedb(
    settings: Settings, tmp_path: Path
) -> None:
    await _closed_after_a_recall(settings)
    marker = tmp_path / "lance-imports.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    env.update(ENGRAM_DATA_DIR=str(settings.data_dir), ENGRAM_EMBEDDING_MODEL="hash")
    server = StdioServerParameters(command=sys.executable, args=["-c", _TRACED_SERVER, str(marker)], env=env)
    async with Client(stdio_client(server)) as client:
        result = await client.call_tool("recall", {"user_id": "alice", "query": QUESTION})
        assert not result.is_error, result.content
        assert result.structured_content is not None
        contents = [hit["content"] for hit in result.structured_content["hits"]]
        assert set(contents) == set(FACTS)  # answered from the user's memories: the check below is not vacuous
        assert not marker.exists(), f"imported before the first answer: {marker.read_text()[:200]}"
    assert not marker.exists(), f"imported by the end of the session: {marker.read_text()[:200]}"


def test_the_latest_version_read_from_file_names_is_lancedbs(tmp_path: Path) -> None:
    store = _store(tmp_path)
    try:
        table = lancedb.connect(str(tmp_path), read_consistency_interval=timedelta(0)).open_table(TABLE_NAME)
        for batch in range(3):
            _fill(store, [_memory(batch * 10 + i) for i in range(5)])
            assert latest_version(tmp_path / f"{TABLE_NAME}.lance") == table.version
        store.optimize()
        assert latest_version(tmp_path / f"{TABLE_NAME}.lance") == table.version
    finally:
        store.close()


def test_only_a_table_stamped_with_the_configured_model_waits(tmp_path: Path) -> None:
    assert not can_wait(tmp_path, {TABLE_NAME: (EMBEDDER.model_id, EMBEDDER.dimensions)}), "no table yet"
    _store(tmp_path).close()
    found = latest_manifest(tmp_path / f"{TABLE_NAME}.lance")
    assert found is not None
    assert stamped_with(found[1], EMBEDDER.model_id, EMBEDDER.dimensions)
    assert not stamped_with(found[1], EMBEDDER.model_id, EMBEDDER.dimensions + 1)
    assert not stamped_with(found[1], "another-model", EMBEDDER.dimensions)
    assert can_wait(tmp_path, {TABLE_NAME: (EMBEDDER.model_id, EMBEDDER.dimensions)})


def test_the_named_columns_are_the_schemas() -> None:
    schema = memory_schema(1, "x")
    assert [f.name for f in schema if f.name not in {"vector", "index_text", "entity_keys"}] == _COLUMNS
    from engram.storage.knowledge import _COLUMNS as knowledge_columns
    from engram.storage.knowledge import knowledge_schema

    assert knowledge_columns == [f.name for f in knowledge_schema(1, "x") if f.name != "vector"]
