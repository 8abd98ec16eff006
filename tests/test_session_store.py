"""The diskcache session store beyond the port contract (tests/contract): constant-cost appends, expiry, old records."""

from __future__ import annotations

import sqlite3
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import diskcache
from pytest import MonkeyPatch

from engram.core.models import Role, Turn
from engram.storage.session_disk import PlainJSONDisk
from engram.storage.sessions import DiskSessionStore

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
USER = "k-user"


def _store(path: Path, *, working_ttl: float = 86_400, short_term_ttl: float = 604_800) -> DiskSessionStore:
    return DiskSessionStore(
        path,
        working_turns=3,
        working_ttl=timedelta(seconds=working_ttl),
        short_term_turns=5,
        short_term_ttl=timedelta(seconds=short_term_ttl),
    )


def _turn(i: int) -> Turn:
    return Turn(memory_id=f"m{i}", seq=0, role=Role.USER, content=f"turn number {i} " + "x" * 200, created_at=NOW)


def _largest_value(path: Path) -> int:
    with diskcache.Cache(str(path), disk=PlainJSONDisk) as cache:
        return max(len(str(cache.get(key))) for key in cache.iterkeys())


def test_an_append_writes_one_entry_and_no_value_grows_with_the_session(tmp_path: Path) -> None:
    store = DiskSessionStore(
        tmp_path, working_turns=20, working_ttl=timedelta(days=1), short_term_turns=500, short_term_ttl=timedelta(7)
    )
    for i in range(10):
        store.append_turn(USER, "s", _turn(i), NOW)
    early = _largest_value(tmp_path)
    for i in range(10, 400):
        store.append_turn(USER, "s", _turn(i), NOW)
    store.close()
    # Rewriting the whole transcript on every append made the largest value ~40x larger by turn 400.
    assert _largest_value(tmp_path) < early * 1.5


def test_purging_removes_the_turns_of_expired_sessions(tmp_path: Path) -> None:
    store = _store(tmp_path)
    for i in range(4):
        store.append_turn(USER, "gone", _turn(i), NOW)
        store.append_turn(USER, "kept", _turn(i), NOW)
    with diskcache.Cache(str(tmp_path), disk=PlainJSONDisk) as cache:
        # Expire one session's headers now, as the clock would after a week, without waiting on it.
        assert cache.touch(f"st|{USER}|gone", expire=-1) and cache.touch(f"wm|{USER}|gone", expire=-1)
    assert store.transcript(USER, "gone") is None and store.working(USER, "gone") == []
    before = store.count()
    assert store.purge_expired() == 2 + 4  # two headers, four turns
    assert store.count() == before - 6
    assert [t.memory_id for t in store.transcript(USER, "kept") or []] == ["m0", "m1", "m2", "m3"]
    store.close()


def test_a_record_written_with_the_turns_inline_is_read_and_extended(tmp_path: Path) -> None:
    turns = [_turn(i).model_copy(update={"seq": i}).model_dump(mode="json") for i in range(4)]
    with diskcache.Cache(str(tmp_path), disk=diskcache.JSONDisk, tag_index=True) as cache:
        record = {
            "session_id": "old",
            "started_at": NOW.isoformat(),
            "last_active_at": NOW.isoformat(),
            "turn_count": 4,
            "agents": [],
            "summary": None,
            "summarized_until": 0,
            "turns": turns,
        }
        cache.set(f"st|{USER}|old", record, expire=600, tag=USER)
        cache.set(f"wm|{USER}|old", {"summary": None, "turns": turns[2:]}, expire=600, tag=USER)
        cache.set(f"idx|{USER}", ["old"], expire=600, tag=USER)
    store = _store(tmp_path)
    assert [t.memory_id for t in store.working(USER, "old")] == ["m2", "m3"]
    store.append_turn(USER, "old", _turn(4), NOW)
    assert [t.memory_id for t in store.transcript(USER, "old") or []] == ["m0", "m1", "m2", "m3", "m4"]
    assert [t.memory_id for t in store.working(USER, "old")] == ["m2", "m3", "m4"]
    assert store.forget_user(USER) == (1, 1)
    assert store.traces_of(USER) == []
    store.close()


def test_an_append_reads_the_same_entries_at_turn_5_and_at_turn_500(tmp_path: Path) -> None:
    store = DiskSessionStore(
        tmp_path, working_turns=20, working_ttl=timedelta(days=1), short_term_turns=500, short_term_ttl=timedelta(7)
    )
    reads: list[object] = []
    real = store._cache.get
    store._cache.get = lambda key, *a, **k: reads.append(key) or real(key, *a, **k)  # type: ignore[method-assign]
    per_append: dict[int, int] = {}
    for i in range(501):
        reads.clear()
        store.append_turn(USER, "s", _turn(i), NOW)
        per_append[i] = len(reads)
    store.close()
    # The headers and the previous turn: never the transcript, whatever its length.
    assert per_append[5] == per_append[500] <= 5


def test_session_values_are_stored_as_plain_json_text(tmp_path: Path) -> None:
    """Compressing each value was about half the CPU of an append (#15): values are JSON text, not zlib bytes."""
    store = _store(tmp_path)
    store.append_turn(USER, "s", _turn(1), NOW)
    store.close()
    with sqlite3.connect(tmp_path / "cache.db") as db:
        kinds = {kind for (kind,) in db.execute("SELECT typeof(value) FROM Cache")}
    assert kinds == {"text"}


def test_a_session_written_with_compressed_values_is_read_extended_and_erased(tmp_path: Path) -> None:
    """A data directory from before plain JSON values (zlib-compressed JSON, one entry per turn) still works."""
    turns = [_turn(i).model_copy(update={"seq": i}).model_dump(mode="json") for i in range(4)]
    with diskcache.Cache(str(tmp_path), disk=diskcache.JSONDisk, tag_index=True) as cache:
        record = {
            "session_id": "old",
            "started_at": NOW.isoformat(),
            "last_active_at": NOW.isoformat(),
            "turn_count": 4,
            "agents": [],
            "summary": None,
            "summarized_until": 0,
        }
        for data in turns:
            cache.set(f"tt|{USER}|old|{data['seq']}", data, tag=USER)
        cache.set(f"st|{USER}|old", record, expire=600, tag=USER)
        cache.set(f"wm|{USER}|old", {"summary": None, "from_seq": 0, "next_seq": 4}, expire=600, tag=USER)
        cache.set(f"idx|{USER}", ["old"], expire=600, tag=USER)
    store = _store(tmp_path)
    assert [t.memory_id for t in store.working(USER, "old")] == ["m1", "m2", "m3"]
    appended = store.append_turn(USER, "old", _turn(4), NOW)
    assert appended.seq == 4 and appended.previous is not None and appended.previous.memory_id == "m3"
    assert [t.memory_id for t in store.transcript(USER, "old") or []] == ["m0", "m1", "m2", "m3", "m4"]
    assert [s.session_id for s in store.sessions(USER)] == ["old"]
    assert store.forget_user(USER) == (1, 1)
    assert store.traces_of(USER) == []
    store.close()


def test_a_steady_append_encodes_only_the_keys_it_has_not_seen(tmp_path: Path, monkeypatch: MonkeyPatch) -> None:
    store = _store(tmp_path)
    for i in range(10):
        store.append_turn(USER, "s", _turn(i), NOW)
    compress = zlib.compress
    calls: list[bytes] = []

    def counted(data: bytes, /, level: int = -1, wbits: int = 15) -> bytes:
        calls.append(data)
        return compress(data, level, wbits)

    monkeypatch.setattr(zlib, "compress", counted)
    for i in range(10, 30):
        store.append_turn(USER, "s", _turn(i), NOW)
    store.close()
    # Keys are zlib-compressed JSON (diskcache's JSONDisk); an append touches ~9 keys, and compressing each again
    # (a fresh ~256 KB deflate state every time) was most of an append's CPU in the server (#15). Only the new
    # turn's key and the one it pushes out of the window are new: no value is compressed.
    assert len(calls) <= 2 * 20
    assert sorted(set(calls)) == sorted(calls)  # no key compressed twice


def test_erasing_a_user_drops_the_remembered_stored_form_of_their_keys(tmp_path: Path) -> None:
    from engram.storage.session_disk import _encoded_key

    store = _store(tmp_path)
    for i in range(5):
        store.append_turn(USER, "s", _turn(i), NOW)
    assert _encoded_key.cache_info().currsize > 0
    store.forget_user(USER)
    store.close()
    # Keys hold the user's pseudonym and session ids: erasure leaves no copy of them in the process either.
    assert _encoded_key.cache_info().currsize == 0
