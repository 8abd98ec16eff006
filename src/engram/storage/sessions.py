"""diskcache-backed working memory (a session's recent turns) and short-term memory (a user's recent sessions)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import diskcache

from engram.core.models import SessionInfo, Turn
from engram.core.ports import AppendedTurn
from engram.storage.residue import files_containing
from engram.storage.session_disk import PlainJSONDisk, forget_encoded_keys


def _working_key(user_id: str, session_id: str) -> str:
    return f"wm|{user_id}|{session_id}"


def _short_term_key(user_id: str, session_id: str) -> str:
    return f"st|{user_id}|{session_id}"


def _turn_key(user_id: str, session_id: str, seq: int) -> str:
    return f"tt|{user_id}|{session_id}|{seq}"


def _index_key(user_id: str) -> str:
    return f"idx|{user_id}"


class DiskSessionStore:
    """Both session tiers in one diskcache directory; every key is tagged with its user for erasure.

    Each turn is its own entry, written once; a session's two small headers (its short-term record and its
    working-memory window) say which turns are live, so an append costs the same at turn 5 and at turn 500.
    Turn entries carry no expiry of their own: they live as long as either header of their session, and
    `purge_expired` removes the ones no header refers to any more.
    """

    def __init__(
        self,
        directory: Path,
        *,
        working_turns: int,
        working_ttl: timedelta,
        short_term_turns: int,
        short_term_ttl: timedelta,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        # JSON, not pickle: nothing read back from disk can execute code. No eviction: memory is never
        # dropped for space, only by expiry or erasure.
        self._cache = diskcache.Cache(
            str(directory),
            disk=PlainJSONDisk,
            tag_index=True,
            eviction_policy="none",
            size_limit=2**62,
            # Deleted and expired entries are overwritten on disk, not just unlinked from the b-tree.
            sqlite_secure_delete=1,
        )
        self._directory = directory
        self._working_turns = working_turns
        self._working_ttl = working_ttl.total_seconds()
        self._short_term_turns = short_term_turns
        self._short_term_ttl = short_term_ttl.total_seconds()
        # The index must outlive both tiers so erasure and listing can find every session.
        self._index_ttl = max(self._working_ttl, self._short_term_ttl)
        # A turn entry is dropped once neither tier's window can reach it any more.
        self._kept_turns = max(working_turns, short_term_turns)

    def append_turn(self, user_id: str, session_id: str, turn: Turn, now: datetime) -> AppendedTurn:
        """Record a turn in both tiers and refresh their expiry; say where it landed and what preceded it."""
        wkey, skey, ikey = _working_key(user_id, session_id), _short_term_key(user_id, session_id), _index_key(user_id)
        with self._cache.transact():
            record = self._record(user_id, session_id) or new_session_record(session_id, now)
            count = record["turn_count"]
            last = self._turn(user_id, session_id, count - 1) if count else None
            if last is not None and last.memory_id == turn.memory_id and last.role == turn.role:
                # The same speaker repeating the same content back to back is a retried call, not a new turn.
                previous = self._turn(user_id, session_id, count - 2) if count > 1 else None
                return AppendedTurn(last.seq, len(self.working(user_id, session_id)), previous)
            turn = turn.model_copy(update={"seq": count})
            self._cache.set(_turn_key(user_id, session_id, count), turn.model_dump(mode="json"), tag=user_id)
            self._cache.delete(_turn_key(user_id, session_id, count - self._kept_turns))
            record["turn_count"] = count + 1
            record["last_active_at"] = now.isoformat()
            if turn.agent_id and turn.agent_id not in record["agents"]:
                record["agents"].append(turn.agent_id)
            self._cache.set(skey, record, expire=self._short_term_ttl, tag=user_id)

            window = self._window(user_id, session_id) or {"summary": None, "from_seq": 0}
            window["next_seq"] = count + 1
            self._cache.set(wkey, window, expire=self._working_ttl, tag=user_id)

            index: list[str] = self._cache.get(ikey) or []
            if session_id not in index:
                index.append(session_id)
            self._cache.set(ikey, index, expire=self._index_ttl, tag=user_id)
            working = len(self._working_seqs(window)) + (1 if window["summary"] else 0)
        return AppendedTurn(turn.seq, working, last)

    def _record(self, user_id: str, session_id: str) -> dict[str, Any] | None:
        """The session's short-term header, upgrading a record written by an older Engram (turns inline)."""
        record: dict[str, Any] | None = self._cache.get(_short_term_key(user_id, session_id))
        if record is not None and "turns" in record:
            self._upgrade(user_id, session_id, record)
        return record

    def _window(self, user_id: str, session_id: str) -> dict[str, Any] | None:
        """The session's working-memory header: the summary, and the seqs its window starts and ends at."""
        window: dict[str, Any] | None = self._cache.get(_working_key(user_id, session_id))
        if window is not None and "turns" in window:
            self._record(user_id, session_id)  # upgrades the working header as well
            window = self._cache.get(_working_key(user_id, session_id))
        return window

    def _upgrade(self, user_id: str, session_id: str, record: dict[str, Any]) -> None:
        """Move an older record's inline turns into one entry each, keeping both headers' expiry."""
        with self._cache.transact():
            for data in record.pop("turns"):
                self._cache.set(_turn_key(user_id, session_id, data["seq"]), data, tag=user_id)
            skey, wkey = _short_term_key(user_id, session_id), _working_key(user_id, session_id)
            self._cache.set(skey, record, expire=self._remaining(skey), tag=user_id)
            working = self._cache.get(wkey)
            if working is not None and "turns" in working:
                for data in working["turns"]:
                    self._cache.set(_turn_key(user_id, session_id, data["seq"]), data, tag=user_id)
                seqs = [t["seq"] for t in working["turns"]]
                window = {
                    "summary": working["summary"],
                    "from_seq": min(seqs) if seqs else record["turn_count"],
                    "next_seq": record["turn_count"],
                }
                self._cache.set(wkey, window, expire=self._remaining(wkey), tag=user_id)

    def _turn(self, user_id: str, session_id: str, seq: int) -> Turn | None:
        data = self._cache.get(_turn_key(user_id, session_id, seq))
        return None if data is None else Turn.model_validate(data)

    def _working_seqs(self, window: dict[str, Any]) -> range:
        end = int(window.get("next_seq", 0))
        return range(max(int(window["from_seq"]), end - self._working_turns, 0), end)

    def _turns(self, user_id: str, session_id: str, seqs: range) -> list[Turn]:
        """The turns at these positions that are still stored (a forgotten turn leaves a gap)."""
        found = (self._turn(user_id, session_id, seq) for seq in seqs)
        return [turn for turn in found if turn is not None]

    def _transcript_seqs(self, record: dict[str, Any]) -> range:
        end = int(record["turn_count"])
        return range(max(end - self._short_term_turns, 0), end)

    def working(self, user_id: str, session_id: str) -> list[Turn]:
        """The session's working memory, oldest first (empty when expired or unknown)."""
        window = self._window(user_id, session_id)
        if not window:
            return []
        turns = self._turns(user_id, session_id, self._working_seqs(window))
        if window["summary"]:
            turns.insert(0, Turn.model_validate(window["summary"]))
        return turns

    def transcript(self, user_id: str, session_id: str) -> list[Turn] | None:
        """The session's short-term transcript (verbatim turns), or None when unknown or expired."""
        record = self._record(user_id, session_id)
        if record is None:
            return None
        return self._turns(user_id, session_id, self._transcript_seqs(record))

    def summarized_until(self, user_id: str, session_id: str) -> int:
        """Seq before which the session's turns are already covered by a summary (0 if none)."""
        record = self._cache.get(_short_term_key(user_id, session_id))
        return int(record["summarized_until"]) if record else 0

    def apply_summary(self, user_id: str, session_id: str, summary: Turn, keep_from_seq: int, now: datetime) -> int:
        """Replace working turns older than `keep_from_seq` by `summary`; return the working turn count."""
        wkey, skey, ikey = _working_key(user_id, session_id), _short_term_key(user_id, session_id), _index_key(user_id)
        with self._cache.transact():
            # The index must outlive the entries it lists, so it is refreshed with them.
            self._cache.touch(ikey, expire=self._index_ttl)
            record = self._record(user_id, session_id)
            window = self._window(user_id, session_id)
            if window is None:
                # Working memory had expired: it restarts with the summary alone, not with the expired turns.
                end = int(record["turn_count"]) if record else keep_from_seq
                window = {"summary": None, "from_seq": end, "next_seq": end}
            # Two summaries racing must not bring turns back that the other one covered.
            window["from_seq"] = max(int(window["from_seq"]), keep_from_seq)
            window["summary"] = summary.model_dump(mode="json")
            self._cache.set(wkey, window, expire=self._working_ttl, tag=user_id)
            if record is not None:
                # Two summaries racing must not move the marker backwards.
                record["summarized_until"] = max(record["summarized_until"], keep_from_seq)
                record["summary"] = summary.content
                record["last_active_at"] = now.isoformat()
                self._cache.set(skey, record, expire=self._short_term_ttl, tag=user_id)
            return len(self._turns(user_id, session_id, self._working_seqs(window))) + 1

    def remove_memory(self, user_id: str, memory_id: str) -> int:
        """Drop every turn (or summary) of the user's sessions that holds `memory_id`; return how many."""
        removed = 0
        with self._cache.transact():
            for session_id in self._cache.get(_index_key(user_id)) or []:
                record = self._record(user_id, session_id)
                window = self._window(user_id, session_id)
                seqs: set[int] = set()
                if window is not None:
                    seqs.update(self._working_seqs(window))
                    summary = window["summary"]
                    if summary is not None and summary["memory_id"] == memory_id:
                        wkey = _working_key(user_id, session_id)
                        window["summary"] = None
                        self._cache.set(wkey, window, expire=self._remaining(wkey), tag=user_id)
                        removed += 1
                if record is not None:
                    seqs.update(self._transcript_seqs(record))
                for turn in self._turns(user_id, session_id, range(min(seqs, default=0), max(seqs, default=-1) + 1)):
                    if turn.memory_id == memory_id:
                        # One entry serves both tiers, so the turn is counted once.
                        self._cache.delete(_turn_key(user_id, session_id, turn.seq))
                        removed += 1
        return removed

    def _remaining(self, key: str) -> float | None:
        """Seconds until `key` expires, so a rewrite does not extend its life."""
        _, expire_time = self._cache.get(key, expire_time=True)
        return None if expire_time is None else max(0.001, expire_time - time.time())

    def sessions(self, user_id: str) -> list[SessionInfo]:
        """The user's sessions still in short-term memory, most recently active first."""
        infos: list[SessionInfo] = []
        for session_id in self._cache.get(_index_key(user_id)) or []:
            record = self._cache.get(_short_term_key(user_id, session_id))
            if record is not None:
                infos.append(session_info(session_id, record))
        return sorted(infos, key=lambda s: s.last_active_at, reverse=True)

    def forget_user(self, user_id: str) -> tuple[int, int]:
        """Erase every entry of the user; return (working sessions, short-term sessions) erased."""
        with self._cache.transact():
            sessions = self._cache.get(_index_key(user_id)) or []
            working = sum(1 for s in sessions if _working_key(user_id, s) in self._cache)
            short_term = sum(1 for s in sessions if _short_term_key(user_id, s) in self._cache)
            self._cache.evict(user_id)
        forget_encoded_keys()
        self._scrub_log()  # secure_delete overwrote the pages; drop the WAL too
        if files_containing(self._directory, user_id):
            # secure_delete zeroes a row where it lies, but a page that SQLite rebuilt earlier (other writers'
            # inserts rebalance the tree) can keep a stale copy of a moved row in its free gap. Rewriting the whole
            # file is the one way to drop it; it is rare, and only erasure pays for it.
            self._cache._sql("VACUUM")
            self._scrub_log()
        return working, short_term

    def traces_of(self, user_id: str) -> list[str]:
        """What is left of the user: entries (keys and values are compressed, so every key is decoded) and files
        whose bytes still hold the user's key (such as a write-ahead log not yet truncated), named without content."""
        needles = (f"|{user_id}|", f"idx|{user_id}")
        tagged = int(self._cache._sql("SELECT COUNT(*) FROM Cache WHERE tag = ?", (user_id,)).fetchone()[0])
        keyed = sum(1 for key in self._cache.iterkeys() if any(n in str(key) for n in needles))
        found = [f"{count} {what}" for count, what in ((tagged, "tagged entries"), (keyed, "keyed entries")) if count]
        return found + [f"the file {name}" for name in files_containing(self._directory, user_id)]

    def purge_expired(self) -> int:
        """Physically remove expired entries and the turns of expired sessions, then checkpoint the WAL."""
        removed = int(self._cache.expire())
        # A turn is live while a header of its session is, and below that session's next seq (a session that
        # expired and began again under the same id overwrites from seq 0; its older, higher seqs are dead).
        ends: dict[str, int] = {}
        for key in list(self._cache.iterkeys()):
            if not (isinstance(key, str) and key.startswith("tt|")):
                continue
            session, seq = key[3:].rsplit("|", 1)
            if session not in ends:
                ends[session] = self._session_end(session)
            if int(seq) >= ends[session]:
                removed += int(self._cache.delete(key))
        self._scrub_log()  # the WAL would otherwise keep the old pages
        return removed

    def _scrub_log(self) -> bool:
        """Checkpoint the write-ahead log into the database file and truncate it; True if that completed.

        Until a checkpoint completes, the database file keeps the pages as they were before a deletion. A reader of
        another server holding an older snapshot makes it stop short, so it is tried again for a moment (the whole
        wait is under half a second) before the caller's own check decides.
        """
        for pause in (0.0, 0.01, 0.02, 0.05, 0.1, 0.2):
            time.sleep(pause)
            busy, _, _ = self._cache._sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return True
        return False

    def _session_end(self, session: str) -> int:
        """The next seq of a `user|session` pair, from whichever header is still there (0 when neither is)."""
        record, window = self._cache.get(f"st|{session}"), self._cache.get(f"wm|{session}")
        return max(int(record["turn_count"]) if record else 0, int(window.get("next_seq", 0)) if window else 0)

    def count(self) -> int:
        """Number of entries in the cache (session headers and turns)."""
        return len(self._cache)

    def bytes_on_disk(self) -> int:
        """Size of the cache's files."""
        return sum(p.stat().st_size for p in self._directory.rglob("*") if p.is_file())

    def close(self) -> None:
        """Close the cache's SQLite connections."""
        self._cache.close()


def new_session_record(session_id: str, now: datetime) -> dict[str, Any]:
    """A new session's short-term record, as every session store keeps it (its turns are stored apart)."""
    return {
        "session_id": session_id,
        "started_at": now.isoformat(),
        "last_active_at": now.isoformat(),
        "turn_count": 0,
        "agents": [],
        "summary": None,
        "summarized_until": 0,
    }


def session_info(session_id: str, record: dict[str, Any]) -> SessionInfo:
    """A session's short-term record (as every session store keeps it) as the domain's `SessionInfo`."""
    return SessionInfo(
        session_id=session_id,
        started_at=datetime.fromisoformat(record["started_at"]),
        last_active_at=datetime.fromisoformat(record["last_active_at"]),
        turns=record["turn_count"],
        agents=record["agents"],
        summary=record["summary"],
    )
