"""Recall index snapshots: written at close, read at the next start only while current, erased with the user."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from engram.core.filters import MemoryFilters
from engram.runtime import open_memory
from engram.storage import indexed_long_term
from engram.storage.indexed_long_term import IndexedLongTermStore
from engram.storage.recall_snapshot import FOLDER, snapshot_path
from tests.helpers import stepping_clock
from tests.test_recall_index import EMBEDDER, FILTER_CASES, _fill, _memory, _settings, _store

QUERY = "Lisbon tomatoes refund"


def _answers(store: IndexedLongTermStore, user: str = "alice") -> list[object]:
    """Every filter case's vector and keyword answers for `user`: memories, scores and vectors."""
    vector = EMBEDDER.embed([QUERY])[0]
    found: list[object] = []
    for viewer in (None, "planner"):
        for case in sorted(FILTER_CASES):
            filters = MemoryFilters.model_validate(FILTER_CASES[case]).seen_by(viewer)
            for hits in (
                store.vector_search(user, vector, filters, 100),
                store.keyword_search(user, QUERY, filters, 100),
            ):
                found.append([(c.memory, round(c.score, 9), c.vector.tolist()) for c in hits])
    return found


def _closed_with_snapshot(directory: Path) -> list[object]:
    """Fill a store, search alice (loading her index from the table), close it; her answers then."""
    store = _store(directory)
    _fill(store, [_memory(i) for i in range(40)] + [_memory(i, user="bob") for i in range(10)])
    store.delete("alice", [_memory(3).id])  # a removed slot is held too
    _fill(store, [_memory(60, content="Bought a harpsichord in Lisbon")])
    answers = _answers(store)
    store.close()
    return answers


def test_the_first_search_after_a_restart_answers_the_same_from_the_snapshot(tmp_path: Path) -> None:
    before = _closed_with_snapshot(tmp_path)
    assert snapshot_path(tmp_path / FOLDER, "alice").exists()
    assert not snapshot_path(tmp_path / FOLDER, "bob").exists(), "only loaded users are saved"
    store = _store(tmp_path)
    try:
        assert _answers(store) == before
        assert "alice" in store.snapshot_loaded, "the snapshot was not used"
        assert "bob" not in store.snapshot_loaded
        # Own writes after a snapshot load reach the index as before.
        _fill(store, [_memory(61, content="The violin bow needs rehair")])
        found = store.keyword_search("alice", "rehair", MemoryFilters(projects="any").seen_by("planner"), 5)
        assert [c.memory.id for c in found] == [_memory(61).id]
    finally:
        store.close()


def test_a_write_by_another_store_after_the_snapshot_is_seen(tmp_path: Path) -> None:
    _closed_with_snapshot(tmp_path)
    writer, reader = _store(tmp_path), _store(tmp_path)
    try:
        added = _memory(70, content="Ordered a theorbo", project=None)
        _fill(writer, [added])
        found = reader.keyword_search("alice", "theorbo", MemoryFilters(projects="any").seen_by("planner"), 5)
        assert [c.memory.id for c in found] == [added.id]
        assert "alice" not in reader.snapshot_loaded, "a stale snapshot was used"
    finally:
        writer.close()
        reader.close()


@pytest.mark.parametrize("damage", ["missing", "truncated", "garbage", "another user's"])
def test_a_missing_damaged_or_foreign_snapshot_is_ignored(tmp_path: Path, damage: str) -> None:
    before = _closed_with_snapshot(tmp_path)
    path = snapshot_path(tmp_path / FOLDER, "alice")
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a snapshot at all")
    else:
        # Alice's snapshot under bob's name: never read for bob.
        path.rename(snapshot_path(tmp_path / FOLDER, "bob"))
        store = _store(tmp_path)
        try:
            hits = store.vector_search("bob", EMBEDDER.embed([QUERY])[0], MemoryFilters(projects="any"), 100)
            assert {c.memory.user_id for c in hits} == {"bob"}
            assert "bob" not in store.snapshot_loaded
        finally:
            store.close()
        return
    store = _store(tmp_path)
    try:
        assert _answers(store) == before
        assert "alice" not in store.snapshot_loaded
    finally:
        store.close()


def test_snapshots_are_owner_only(tmp_path: Path) -> None:
    _closed_with_snapshot(tmp_path)
    assert stat.S_IMODE((tmp_path / FOLDER).stat().st_mode) == 0o700
    assert stat.S_IMODE(snapshot_path(tmp_path / FOLDER, "alice").stat().st_mode) == 0o600


def test_an_erasure_removes_the_snapshots(tmp_path: Path) -> None:
    _closed_with_snapshot(tmp_path)
    assert snapshot_path(tmp_path / FOLDER, "alice").exists()
    store = _store(tmp_path)
    try:
        store.delete("alice", [_memory(5).id])
        assert not (tmp_path / FOLDER).exists()
    finally:
        store.close()


@pytest.mark.anyio
async def test_forget_user_erases_the_snapshot_and_its_check_would_see_one_left(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    memory = open_memory(settings, EMBEDDER, clock=stepping_clock)
    await memory.remember("alice", "The spare key is under the blue flowerpot")
    assert (await memory.recall("alice", "flowerpot")).memories
    memory.close()
    folder = settings.long_term_dir / FOLDER
    (saved,) = folder.iterdir()
    kept = saved.read_bytes()
    memory = open_memory(settings, EMBEDDER, clock=stepping_clock)
    try:
        assert (await memory.recall("alice", "flowerpot")).memories
        receipt = await memory.forget_user("alice", confirm=True)
        assert receipt.erased
        assert not folder.exists() or not any(folder.iterdir())
        # A snapshot left behind is a trace the erasure check reports (it holds the user's stored id in clear).
        folder.mkdir(exist_ok=True)
        saved.write_bytes(kept)
        left = memory.long_term.traces_of(memory.user_key("alice"))
        assert any(FOLDER in trace for trace in left), left
    finally:
        memory.close()


def test_close_saves_the_most_recently_searched_users_within_a_row_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(indexed_long_term, "_SNAPSHOT_ROWS", 45)  # bob's 10 rows fit, then alice's 40 do not
    store = _store(tmp_path)
    _fill(store, [_memory(i) for i in range(40)] + [_memory(i, user="bob") for i in range(10)])
    _answers(store, "alice")
    _answers(store, "bob")
    store.close()
    assert snapshot_path(tmp_path / FOLDER, "bob").exists()
    assert not snapshot_path(tmp_path / FOLDER, "alice").exists()


@pytest.mark.anyio
async def test_a_restarted_servers_first_recall_is_the_same_with_and_without_the_snapshot(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    memory = open_memory(settings, EMBEDDER, clock=stepping_clock)
    for text in ("The spare key is under the blue flowerpot", "Ana likes grilled sardines", "Tax refund due in May"):
        await memory.remember("alice", text)
    await memory.recall("alice", "key")
    memory.close()
    folder = settings.long_term_dir / FOLDER
    assert any(folder.iterdir())

    async def first_recall() -> tuple[object, bool]:
        restarted = open_memory(settings, EMBEDDER, clock=stepping_clock)
        try:
            found = await restarted.recall("alice", "what does Ana like to eat?")
            store = restarted.long_term.inner.store  # guarded -> journaled -> indexed
            assert isinstance(store, IndexedLongTermStore)
            return found.model_dump(), bool(store.snapshot_loaded)
        finally:
            restarted.close()

    with_snapshot, used = await first_recall()
    assert used
    for saved in folder.iterdir():
        saved.unlink()
    without_snapshot, used = await first_recall()
    assert not used
    assert with_snapshot == without_snapshot
