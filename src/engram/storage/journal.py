"""A durable write journal: acknowledged long-term writes wait here (SQLite, fsync'd) until they reach LanceDB."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engram.core.models import Memory
from engram.core.ports import Vectors

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS pending_id ON pending (id);
CREATE TABLE IF NOT EXISTS known (id TEXT PRIMARY KEY) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class JournalEntry:
    """One acknowledged write not yet in the table: the memory, the text it is indexed by, its vector."""

    seq: int
    memory: Memory
    index_text: str
    vector: Vectors


class WriteJournal:
    """Pending long-term writes in one SQLite file, shared by every server process on the data directory.

    WAL with `synchronous=FULL`: a write is on disk (fsync'd) when `append` returns, so it survives a crash or a
    power cut. `secure_delete` overwrites removed entries, and `scrub` truncates the write-ahead log, so an erased
    memory leaves no copy here.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        # One connection shared by this process's threads, serialised by a lock (sqlite3 objects are not
        # thread-safe); other processes open their own and SQLite's file locks order them.
        self._connection = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock:
            connection = self._connection
            # Before any table exists (it cannot be switched on later without a VACUUM): moved entries give their
            # pages back to the file system instead of leaving a file as large as the biggest backlog.
            connection.execute("PRAGMA auto_vacuum=FULL")
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute("PRAGMA secure_delete=ON")
            # The write-ahead log is cut back to 1 MiB after each checkpoint.
            connection.execute("PRAGMA journal_size_limit=1048576")
            connection.executescript(_SCHEMA)

    @property
    def path(self) -> Path:
        """The journal's SQLite file."""
        return self._path

    def append(
        self, memories: Sequence[Memory], index_texts: Sequence[str], vectors: Vectors, *, force: bool = False
    ) -> tuple[set[str], set[str]]:
        """Durably record, in one transaction, the writes whose id is new; return (recorded ids, ids seen before).

        An id is new unless the journal has seen it (pending, or moved into the table since). A seen id that is no
        longer pending is usually in the table, but may have been erased since: the caller checks the table for
        those and appends the missing ones again with `force`.
        """
        recorded: set[str] = set()
        seen: set[str] = set()
        with self._lock:
            connection = self._connection
            connection.execute("BEGIN IMMEDIATE")
            try:
                for memory, text, vector in zip(memories, index_texts, vectors, strict=True):
                    if memory.id in recorded or memory.id in seen:
                        continue
                    new = connection.execute("INSERT OR IGNORE INTO known (id) VALUES (?)", (memory.id,)).rowcount
                    if not new and not force:
                        waiting = connection.execute("SELECT 1 FROM pending WHERE id = ? LIMIT 1", (memory.id,))
                        if waiting.fetchone() is None:
                            seen.add(memory.id)
                        continue
                    body = json.dumps({"memory": memory.model_dump(mode="json"), "index_text": text})
                    blob = np.asarray(vector, dtype=np.float32).reshape(-1).tobytes()
                    connection.execute(
                        "INSERT INTO pending (id, body, vector) VALUES (?, ?, ?)", (memory.id, body, blob)
                    )
                    recorded.add(memory.id)
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        return recorded, seen

    def reset_known(self, table_ids: Sequence[str]) -> None:
        """Make the seen ids exactly the table's ids plus the pending ones (at first use and after erasure)."""
        with self._lock:
            connection = self._connection
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.execute("DELETE FROM known")
                connection.executemany("INSERT OR IGNORE INTO known (id) VALUES (?)", ((i,) for i in table_ids))
                connection.execute("INSERT OR IGNORE INTO known (id) SELECT id FROM pending")
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise

    def knows_any(self) -> bool:
        """Whether any id has been recorded."""
        with self._lock:
            return self._connection.execute("SELECT 1 FROM known LIMIT 1").fetchone() is not None

    def has_pending(self) -> bool:
        """Whether any write (of any process) is waiting to reach the table."""
        with self._lock:
            return self._connection.execute("SELECT 1 FROM pending LIMIT 1").fetchone() is not None

    def pending(self, limit: int) -> list[JournalEntry]:
        """The oldest `limit` waiting writes, in the order they were acknowledged."""
        with self._lock:
            rows = self._connection.execute(
                "SELECT seq, body, vector FROM pending ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return _entries(rows)

    def waiting_after(self, seq: int) -> list[tuple[int, str, str, str, bytes]]:
        """The waiting writes (of any process) past `seq`, oldest first, undecoded: (seq, user, id, body, vector).

        Entries are numbered in the order they commit and leave oldest first, so a reader that remembers the last
        seq it read needs only these to stay in step.
        """
        with self._lock:
            rows = self._connection.execute(
                "SELECT seq, json_extract(body, '$.memory.user_id'), id, body, vector FROM pending WHERE seq > ? "
                "ORDER BY seq",
                (seq,),
            ).fetchall()
        return [(int(s), str(user), memory_id, body, blob) for s, user, memory_id, body, blob in rows]

    def oldest_waiting(self) -> int | None:
        """The seq of the oldest waiting write (every entry before it has been moved); None when none waits."""
        with self._lock:
            row = self._connection.execute("SELECT MIN(seq) FROM pending").fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def trim(self, through_seq: int) -> None:
        """Forget the writes up to `through_seq`: they are in the table now."""
        with self._lock:
            self._connection.execute("DELETE FROM pending WHERE seq <= ?", (through_seq,))

    def scrub(self) -> bool:
        """Checkpoint and truncate the write-ahead log so removed entries survive nowhere; True if it completed."""
        with self._lock:
            busy, _, _ = self._connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return not busy

    def close(self) -> None:
        """Close the connection (pending writes stay on disk for the next open)."""
        with self._lock:
            self._connection.close()


def decoded(seq: int, body: str, blob: bytes) -> JournalEntry:
    """One journal row (seq, body, vector) as an entry."""
    fields = json.loads(body)
    return JournalEntry(
        seq=int(seq),
        memory=Memory.model_validate(fields["memory"]),
        index_text=fields["index_text"],
        vector=np.frombuffer(blob, dtype=np.float32).copy(),
    )


def _entries(rows: list[tuple[int, str, bytes]]) -> list[JournalEntry]:
    """Journal rows (seq, body, vector) as entries."""
    return [decoded(seq, body, blob) for seq, body, blob in rows]
