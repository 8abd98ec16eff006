"""Redis-backed working and short-term memory, shared by any number of replicas, with Redis's own expiry."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from engram.core.errors import InvalidInput
from engram.core.models import SessionInfo, Turn
from engram.core.ports import AppendedTurn
from engram.storage.sessions import new_session_record, session_info

if TYPE_CHECKING:
    import redis

logger = logging.getLogger(__name__)

#: Every key Engram writes starts with this, so a Redis shared with other applications can be scanned for ours.
KEY_PREFIX = "engram:"
_SCAN_BATCH = 500


def _glob_escaped(text: str) -> str:
    """`text` as a literal inside a SCAN MATCH pattern."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


class RedisSessionStore:
    """Both session tiers in Redis; per session two JSON headers and one hash of turns, per user a set of sessions.

    Keys (all under KEY_PREFIX): `st|user|session` (short-term record), `wm|user|session` (working-memory window),
    `tt|user|session` (hash: seq -> turn) and `idx|user` (set of session ids). Each carries a native TTL refreshed
    when the session is written; the turns hash and index live as long as the longer tier. Every read-modify-write
    runs as a WATCH/MULTI transaction, so replicas writing one session concurrently retry instead of losing turns.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        working_turns: int,
        working_ttl: timedelta,
        short_term_turns: int,
        short_term_ttl: timedelta,
        rewrite_after_erasure: bool = True,
    ) -> None:
        # decode_responses=True: every reply is str (redis-py's types cannot say so).
        self._redis: Any = client
        self._working_turns = working_turns
        self._working_ttl = _milliseconds(working_ttl)
        self._short_term_turns = short_term_turns
        self._short_term_ttl = _milliseconds(short_term_ttl)
        self._index_ttl = max(self._working_ttl, self._short_term_ttl)
        self._kept_turns = max(working_turns, short_term_turns)
        self._rewrite_after_erasure = rewrite_after_erasure

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        working_turns: int,
        working_ttl: timedelta,
        short_term_turns: int,
        short_term_ttl: timedelta,
        rewrite_after_erasure: bool = True,
    ) -> RedisSessionStore:
        """Connect to `redis://[:password@]host:port/db` (or `rediss://` for TLS) and check that it answers."""
        import redis

        try:
            client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=30, health_check_interval=30)
        except ValueError as exc:
            raise InvalidInput(
                "ENGRAM_SESSIONS_URL", f"is not a Redis URL ({exc}); use redis://[:password@]host:port/db or rediss://."
            ) from exc
        client.ping()
        return cls(
            client,
            working_turns=working_turns,
            working_ttl=working_ttl,
            short_term_turns=short_term_turns,
            short_term_ttl=short_term_ttl,
            rewrite_after_erasure=rewrite_after_erasure,
        )

    # -- keys

    @staticmethod
    def _key(kind: str, user_id: str, session_id: str | None = None) -> str:
        return f"{KEY_PREFIX}{kind}|{user_id}" + ("" if session_id is None else f"|{session_id}")

    def _keys(self, user_id: str, session_id: str) -> tuple[str, str, str, str]:
        return (
            self._key("wm", user_id, session_id),
            self._key("st", user_id, session_id),
            self._key("tt", user_id, session_id),
            self._key("idx", user_id),
        )

    # -- writes

    def append_turn(self, user_id: str, session_id: str, turn: Turn, now: datetime) -> AppendedTurn:
        """Record a turn in both tiers and refresh their expiry; say where it landed and what preceded it."""
        wkey, skey, tkey, ikey = self._keys(user_id, session_id)
        result: list[AppendedTurn] = []

        def transaction(pipe: Any) -> None:
            result.clear()
            record = _loads(pipe.get(skey))
            window = _loads(pipe.get(wkey))
            fresh = record is None and window is None
            if record is None:
                record = new_session_record(session_id, now)
                # A session that expired and starts again under its id begins at seq 0 over an empty hash.
                if window is not None:
                    record["turn_count"] = int(window.get("next_seq", 0))
            count = int(record["turn_count"])
            last = None if fresh or not count else _turn(pipe.hget(tkey, str(count - 1)))
            if last is not None and last.memory_id == turn.memory_id and last.role == turn.role:
                previous = _turn(pipe.hget(tkey, str(count - 2))) if count > 1 else None
                working = len(self._live(pipe, tkey, self._working_seqs(window))) if window else 0
                if window and window.get("summary"):
                    working += 1
                result.append(AppendedTurn(last.seq, working, previous))
                pipe.multi()
                return
            placed = turn.model_copy(update={"seq": count})
            record["turn_count"] = count + 1
            record["last_active_at"] = now.isoformat()
            if placed.agent_id and placed.agent_id not in record["agents"]:
                record["agents"].append(placed.agent_id)
            window = window or {"summary": None, "from_seq": 0}
            window["next_seq"] = count + 1
            live = self._live(pipe, tkey, self._working_seqs(window)[:-1])
            working = len(live) + 1 + (1 if window["summary"] else 0)
            pipe.multi()
            if fresh:
                pipe.delete(tkey)
            pipe.hset(tkey, str(count), placed.model_dump_json())
            if count - self._kept_turns >= 0:
                pipe.hdel(tkey, str(count - self._kept_turns))
            pipe.set(skey, json.dumps(record), px=self._short_term_ttl)
            pipe.set(wkey, json.dumps(window), px=self._working_ttl)
            pipe.pexpire(tkey, self._index_ttl)
            pipe.sadd(ikey, session_id)
            pipe.pexpire(ikey, self._index_ttl)
            result.append(AppendedTurn(count, working, last))

        self._redis.transaction(transaction, wkey, skey, tkey, ikey)
        return result[0]

    def apply_summary(self, user_id: str, session_id: str, summary: Turn, keep_from_seq: int, now: datetime) -> int:
        """Replace working turns older than `keep_from_seq` by `summary`; return the working turn count."""
        wkey, skey, tkey, ikey = self._keys(user_id, session_id)
        result: list[int] = []

        def transaction(pipe: Any) -> None:
            result.clear()
            record = _loads(pipe.get(skey))
            window = _loads(pipe.get(wkey))
            if window is None:
                # Working memory had expired: it restarts with the summary alone, not with the expired turns.
                end = int(record["turn_count"]) if record else keep_from_seq
                window = {"summary": None, "from_seq": end, "next_seq": end}
            # Two summaries racing must not bring back turns the other one covered.
            window["from_seq"] = max(int(window["from_seq"]), keep_from_seq)
            window["summary"] = summary.model_dump(mode="json")
            working = len(self._live(pipe, tkey, self._working_seqs(window))) + 1
            pipe.multi()
            pipe.set(wkey, json.dumps(window), px=self._working_ttl)
            if record is not None:
                record["summarized_until"] = max(int(record["summarized_until"]), keep_from_seq)
                record["summary"] = summary.content
                record["last_active_at"] = now.isoformat()
                pipe.set(skey, json.dumps(record), px=self._short_term_ttl)
            pipe.pexpire(tkey, self._index_ttl)
            pipe.sadd(ikey, session_id)
            pipe.pexpire(ikey, self._index_ttl)
            result.append(working)

        self._redis.transaction(transaction, wkey, skey, tkey, ikey)
        return result[0]

    def remove_memory(self, user_id: str, memory_id: str) -> int:
        """Drop every turn (or summary) of the user's sessions that holds `memory_id`; return how many."""
        return sum(
            self._remove_from_session(user_id, session_id, memory_id)
            for session_id in sorted(self._redis.smembers(self._key("idx", user_id)))
        )

    def _remove_from_session(self, user_id: str, session_id: str, memory_id: str) -> int:
        wkey, _, tkey, _ = self._keys(user_id, session_id)
        counted: list[int] = []

        def transaction(pipe: Any) -> None:
            counted.clear()
            window = _loads(pipe.get(wkey))
            ttl = pipe.pttl(wkey)
            doomed = [seq for seq, raw in pipe.hgetall(tkey).items() if json.loads(raw)["memory_id"] == memory_id]
            drop_summary = bool(window and window["summary"] and window["summary"]["memory_id"] == memory_id)
            pipe.multi()
            if doomed:
                pipe.hdel(tkey, *doomed)
            if drop_summary and window is not None:
                window["summary"] = None
                # Rewritten without extending its life.
                pipe.set(wkey, json.dumps(window), px=ttl if ttl > 0 else self._working_ttl)
            counted.append(len(doomed) + int(drop_summary))

        self._redis.transaction(transaction, wkey, tkey)
        return counted[0]

    def forget_user(self, user_id: str) -> tuple[int, int]:
        """Erase every key of the user, then have Redis rewrite its AOF and snapshot (the deleted bytes stay in both
        until then) where the server allows it; return (working sessions, short-term sessions) erased."""
        sessions = self._redis.smembers(self._key("idx", user_id))
        working = sum(1 for s in sessions if self._redis.exists(self._key("wm", user_id, s)))
        short_term = sum(1 for s in sessions if self._redis.exists(self._key("st", user_id, s)))
        keys = self._user_keys(user_id)
        if keys:
            self._redis.delete(*keys)
        if self._rewrite_after_erasure:
            self.rewrite_persistence()
        return working, short_term

    def rewrite_persistence(self) -> list[str]:
        """Ask Redis to rewrite its append-only file (BGREWRITEAOF) and, if it snapshots, its RDB file (BGSAVE), so
        erased keys leave the files too; return what was started. A managed Redis that forbids these is logged."""
        import redis

        started: list[str] = []
        try:
            persistence: dict[str, Any] = self._redis.info("persistence")
            if int(persistence.get("aof_enabled", 0)):
                self._redis.bgrewriteaof()
                started.append("BGREWRITEAOF")
            if int(persistence.get("rdb_last_save_time", 0)) and self._snapshots():
                self._redis.bgsave(schedule=True)
                started.append("BGSAVE")
        except redis.ResponseError as exc:
            logger.warning(
                "Redis refused to rewrite its persistence files after an erasure (%s): the erased keys stay in its "
                "AOF/RDB files until the operator rewrites them (README: Working memory in Redis)",
                exc,
            )
        return started

    def _snapshots(self) -> bool:
        """Whether the server takes RDB snapshots (a `save` schedule is set)."""
        import redis

        try:
            return bool(self._redis.config_get("save").get("save"))
        except redis.ResponseError:  # CONFIG disabled (managed Redis): assume it snapshots
            return True

    def purge_expired(self) -> int:
        """Redis expires entries itself; drop index entries of sessions with no key left and return how many."""
        removed = 0
        for ikey in self._redis.scan_iter(match=f"{KEY_PREFIX}idx|*", count=_SCAN_BATCH):
            user_id = ikey[len(KEY_PREFIX) + 4 :]
            for session_id in self._redis.smembers(ikey):
                wkey, skey, tkey, _ = self._keys(user_id, session_id)
                if not self._redis.exists(wkey, skey, tkey):
                    removed += int(self._redis.srem(ikey, session_id))
        return removed

    # -- reads

    def working(self, user_id: str, session_id: str) -> list[Turn]:
        """The session's working memory, oldest first (empty when expired or unknown)."""
        window = _loads(self._redis.get(self._key("wm", user_id, session_id)))
        if not window:
            return []
        turns = self._live(self._redis, self._key("tt", user_id, session_id), self._working_seqs(window))
        if window["summary"]:
            turns.insert(0, Turn.model_validate(window["summary"]))
        return turns

    def transcript(self, user_id: str, session_id: str) -> list[Turn] | None:
        """The session's short-term transcript (verbatim turns), or None when unknown or expired."""
        record = _loads(self._redis.get(self._key("st", user_id, session_id)))
        if record is None:
            return None
        end = int(record["turn_count"])
        seqs = range(max(end - self._short_term_turns, 0), end)
        return self._live(self._redis, self._key("tt", user_id, session_id), seqs)

    def summarized_until(self, user_id: str, session_id: str) -> int:
        """Seq before which the session's turns are already covered by a summary (0 if none)."""
        record = _loads(self._redis.get(self._key("st", user_id, session_id)))
        return int(record["summarized_until"]) if record else 0

    def sessions(self, user_id: str) -> list[SessionInfo]:
        """The user's sessions still in short-term memory, most recently active first."""
        infos: list[SessionInfo] = []
        for session_id in self._redis.smembers(self._key("idx", user_id)):
            record = _loads(self._redis.get(self._key("st", user_id, session_id)))
            if record is not None:
                infos.append(session_info(session_id, record))
        return sorted(infos, key=lambda s: s.last_active_at, reverse=True)

    def traces_of(self, user_id: str) -> list[str]:
        """What is left of the user: Redis keys naming the user's key, counted by kind, without content."""
        kinds: dict[str, int] = {}
        for key in self._user_keys(user_id):
            kind = key[len(KEY_PREFIX) :].split("|", 1)[0]
            kinds[kind] = kinds.get(kind, 0) + 1
        return [f"{count} Redis keys of kind {kind}" for kind, count in sorted(kinds.items())]

    def count(self) -> int:
        """Number of Engram keys in the Redis database (session headers, turn hashes, indexes)."""
        return sum(1 for _ in self._redis.scan_iter(match=f"{KEY_PREFIX}*", count=_SCAN_BATCH))

    def bytes_on_disk(self) -> int:
        """Memory the Redis server's data set takes (shared with anything else in that server)."""
        memory: dict[str, Any] = self._redis.info("memory")
        return int(memory.get("used_memory_dataset", memory.get("used_memory", 0)))

    def close(self) -> None:
        """Close the connection pool."""
        self._redis.close()

    # -- helpers

    def _user_keys(self, user_id: str) -> list[str]:
        """Every Engram key of the user, found by scanning (not only through the index, which may have expired)."""
        escaped = _glob_escaped(user_id)
        keys: list[str] = []
        for pattern in (f"{KEY_PREFIX}*|{escaped}|*", f"{KEY_PREFIX}idx|{escaped}"):
            keys.extend(self._redis.scan_iter(match=pattern, count=_SCAN_BATCH))
        return keys

    def _working_seqs(self, window: dict[str, Any]) -> range:
        end = int(window.get("next_seq", 0))
        return range(max(int(window["from_seq"]), end - self._working_turns, 0), end)

    @staticmethod
    def _live(client: Any, tkey: str, seqs: range) -> list[Turn]:
        """The turns at these positions that are still stored (a forgotten turn leaves a gap)."""
        if not len(seqs):
            return []
        found = client.hmget(tkey, [str(seq) for seq in seqs])
        return [Turn.model_validate_json(raw) for raw in found if raw is not None]


def _milliseconds(ttl: timedelta) -> int:
    return max(1, int(ttl.total_seconds() * 1000))


def _loads(raw: Any) -> dict[str, Any] | None:
    return None if raw is None else dict(json.loads(raw))


def _turn(raw: Any) -> Turn | None:
    return None if raw is None else Turn.model_validate_json(raw)
