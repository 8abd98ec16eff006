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


def _working_key(user_id: str, session_id: str) -> str:
    return f"wm|{user_id}|{session_id}"


def _short_term_key(user_id: str, session_id: str) -> str:
    return f"st|{user_id}|{session_id}"


def _index_key(user_id: str) -> str:
    return f"idx|{user_id}"


class DiskSessionStore:
    """Both session tiers in one diskcache directory; every key is tagged with its user for erasure."""

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
            disk=diskcache.JSONDisk,
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

    def append_turn(self, user_id: str, session_id: str, turn: Turn, now: datetime) -> AppendedTurn:
        """Record a turn in both tiers and refresh their expiry; say where it landed and what preceded it."""
        wkey, skey, ikey = _working_key(user_id, session_id), _short_term_key(user_id, session_id), _index_key(user_id)
        with self._cache.transact():
            record = self._cache.get(skey) or _new_record(session_id, now)
            turns = record["turns"]
            last = turns[-1] if turns else None
            if last is not None and last["memory_id"] == turn.memory_id and last["role"] == turn.role:
                # The same speaker repeating the same content back to back is a retried call, not a new turn.
                previous = Turn.model_validate(turns[-2]) if len(turns) > 1 else None
                return AppendedTurn(last["seq"], len(self.working(user_id, session_id)), previous)
            previous = Turn.model_validate(last) if last is not None else None
            turn = turn.model_copy(update={"seq": record["turn_count"]})
            record["turn_count"] += 1
            record["last_active_at"] = now.isoformat()
            if turn.agent_id and turn.agent_id not in record["agents"]:
                record["agents"].append(turn.agent_id)
            record["turns"] = [*turns, turn.model_dump(mode="json")][-self._short_term_turns :]
            self._cache.set(skey, record, expire=self._short_term_ttl, tag=user_id)

            working = self._cache.get(wkey) or {"summary": None, "turns": []}
            working["turns"] = [*working["turns"], turn.model_dump(mode="json")][-self._working_turns :]
            self._cache.set(wkey, working, expire=self._working_ttl, tag=user_id)

            index: list[str] = self._cache.get(ikey) or []
            if session_id not in index:
                index.append(session_id)
            self._cache.set(ikey, index, expire=self._index_ttl, tag=user_id)
        return AppendedTurn(turn.seq, len(working["turns"]) + (1 if working["summary"] else 0), previous)

    def working(self, user_id: str, session_id: str) -> list[Turn]:
        """The session's working memory, oldest first (empty when expired or unknown)."""
        working = self._cache.get(_working_key(user_id, session_id))
        if not working:
            return []
        turns = [Turn.model_validate(t) for t in working["turns"]]
        if working["summary"]:
            turns.insert(0, Turn.model_validate(working["summary"]))
        return turns

    def transcript(self, user_id: str, session_id: str) -> list[Turn] | None:
        """The session's short-term transcript (verbatim turns), or None when unknown or expired."""
        record = self._cache.get(_short_term_key(user_id, session_id))
        if record is None:
            return None
        return [Turn.model_validate(t) for t in record["turns"]]

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
            working = self._cache.get(wkey) or {"summary": None, "turns": []}
            working["turns"] = [t for t in working["turns"] if t["seq"] >= keep_from_seq]
            working["summary"] = summary.model_dump(mode="json")
            self._cache.set(wkey, working, expire=self._working_ttl, tag=user_id)
            record = self._cache.get(skey)
            if record is not None:
                # Two summaries racing must not move the marker backwards.
                record["summarized_until"] = max(record["summarized_until"], keep_from_seq)
                record["summary"] = summary.content
                record["last_active_at"] = now.isoformat()
                self._cache.set(skey, record, expire=self._short_term_ttl, tag=user_id)
        return len(working["turns"]) + 1

    def remove_memory(self, user_id: str, memory_id: str) -> int:
        """Drop every turn (or summary) of the user's sessions that holds `memory_id`; return how many."""
        removed = 0
        with self._cache.transact():
            for session_id in self._cache.get(_index_key(user_id)) or []:
                wkey, skey = _working_key(user_id, session_id), _short_term_key(user_id, session_id)
                from_working = from_transcript = 0
                working = self._cache.get(wkey)
                if working is not None:
                    kept = [t for t in working["turns"] if t["memory_id"] != memory_id]
                    summary = working["summary"]
                    if summary is not None and summary["memory_id"] == memory_id:
                        summary = None
                    from_working = len(working["turns"]) - len(kept) + int(summary != working["summary"])
                    if from_working:
                        working = {"summary": summary, "turns": kept}
                        self._cache.set(wkey, working, expire=self._remaining(wkey), tag=user_id)
                record = self._cache.get(skey)
                if record is not None:
                    kept = [t for t in record["turns"] if t["memory_id"] != memory_id]
                    from_transcript = len(record["turns"]) - len(kept)
                    if from_transcript:
                        record["turns"] = kept
                        self._cache.set(skey, record, expire=self._remaining(skey), tag=user_id)
                # The same turn usually sits in both tiers: count it once.
                removed += max(from_working, from_transcript)
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
                infos.append(
                    SessionInfo(
                        session_id=session_id,
                        started_at=datetime.fromisoformat(record["started_at"]),
                        last_active_at=datetime.fromisoformat(record["last_active_at"]),
                        turns=record["turn_count"],
                        agents=record["agents"],
                        summary=record["summary"],
                    )
                )
        return sorted(infos, key=lambda s: s.last_active_at, reverse=True)

    def forget_user(self, user_id: str) -> tuple[int, int]:
        """Erase every entry of the user; return (working sessions, short-term sessions) erased."""
        with self._cache.transact():
            sessions = self._cache.get(_index_key(user_id)) or []
            working = sum(1 for s in sessions if _working_key(user_id, s) in self._cache)
            short_term = sum(1 for s in sessions if _short_term_key(user_id, s) in self._cache)
            self._cache.evict(user_id)
        self._cache._sql("PRAGMA wal_checkpoint(TRUNCATE)")  # secure_delete overwrote the pages; drop the WAL too
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
        """Physically remove expired entries: delete their rows, then checkpoint the WAL so no copy lingers."""
        removed = int(self._cache.expire())
        self._cache._sql("PRAGMA wal_checkpoint(TRUNCATE)")  # the WAL would otherwise keep the old pages
        return removed

    def count(self) -> int:
        """Number of entries in the cache."""
        return len(self._cache)

    def bytes_on_disk(self) -> int:
        """Size of the cache's files."""
        return sum(p.stat().st_size for p in self._directory.rglob("*") if p.is_file())

    def close(self) -> None:
        """Close the cache's SQLite connections."""
        self._cache.close()


def _new_record(session_id: str, now: datetime) -> dict[str, Any]:
    return {
        "session_id": session_id,
        "started_at": now.isoformat(),
        "last_active_at": now.isoformat(),
        "turn_count": 0,
        "agents": [],
        "summary": None,
        "summarized_until": 0,
        "turns": [],
    }
