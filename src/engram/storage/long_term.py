"""LanceDB-backed long-term memory: one table of memories with their embeddings, searched per user."""

from __future__ import annotations

import logging

try:
    import fcntl
except ImportError:  # Windows: no cross-process lock; commits then rely on conflict retries
    fcntl = None  # type: ignore[assignment]
import threading
from collections.abc import Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from engram.core.filters import MemoryFilters
from engram.core.models import AgentActivity, Memory
from engram.core.ports import Candidate, StoredMemory, Vectors
from engram.storage.deferred_open import Deferred, can_wait, manifests
from engram.storage.filters import ids_clause, memory_filter, quote, timestamp
from engram.storage.lance_support import (
    ReadersWriterLock,
    _fsync_new,
    _table_files,
    connect,
    directory_bytes,
    erase_rows,
    open_checked_table,
    read_retrying,
    retry_on_conflict,
    traces,
)
from engram.storage.location import Location, location_lock
from engram.storage.memory_rows import (
    _ADDED_COLUMNS,
    _COLUMNS,
    _FTS_COLUMN,
    TABLE_NAME,
    _candidate,
    _to_memory,
    _to_row,
    _utc,
    memory_schema,
)
from engram.storage.passages import TABLE_NAME as PASSAGES_TABLE
from engram.storage.passages import PassageMatch, PassageTable
from engram.storage.presence import StorePresence
from engram.storage.table_upkeep import TableUpkeep

logger = logging.getLogger(__name__)

_ANN_EF = 100
T = TypeVar("T")


class LanceLongTermStore(TableUpkeep):
    """Long-term memories in a LanceDB table; every query is prefiltered to one user."""

    def __init__(self, directory: Location, *, dimensions: int, model_id: str) -> None:
        self._directory = directory
        if isinstance(directory, Path):
            directory.mkdir(parents=True, exist_ok=True)  # for the lock files, before LanceDB is connected
        self._write_lock = threading.Lock()
        # Servers sharing this directory take turns to write: concurrent LanceDB commits conflict, and two
        # conditional inserts of the same id racing in two processes could both insert it.
        self._process_lock = location_lock(directory, "write")
        # Upkeep (compaction, index upkeep, version clean-up) runs in one process at a time, outside the write lock
        # so that writes go on meanwhile; erasure takes it too, since erasure deletes unreferenced files.
        self._upkeep_lock = location_lock(directory, "upkeep")
        self._readers = ReadersWriterLock()
        self._commits = 0
        self._erased_through = 0  # the table version this store's latest erasure ended at
        self._presence = StorePresence(directory / ".engram-open.lock") if isinstance(directory, Path) else None
        self._closed = False
        # LanceDB (its import and both tables) is opened at the first use that needs it when the files show that
        # opening can only confirm them: a first recall answered from a recall snapshot never needs it
        # (storage/deferred_open.py). Otherwise now, as a fresh or foreign table must be created or refused at start.
        self._engine: Deferred[tuple[Any, Any, PassageTable]] = Deferred(
            partial(self._open_engine, dimensions, model_id)
        )
        shape = (model_id, dimensions)
        if not can_wait(directory, {TABLE_NAME: shape, PASSAGES_TABLE: shape}):
            with self._process_lock:
                self._engine.get()

    def _open_engine(self, dimensions: int, model_id: str) -> tuple[Any, Any, PassageTable]:
        """Connect to LanceDB and open both tables (creating, upgrading and indexing them as needed)."""
        # Opened at first use without the write lock, which the caller may hold already: the tables exist then,
        # and what opening may still commit (added columns, missing indexes) is retried on conflict.
        db = connect(self._directory)
        table = self._open_or_create(db, dimensions, model_id)
        return db, table, PassageTable(db, self._directory, dimensions=dimensions, model_id=model_id)

    @property
    def _db(self) -> Any:
        return self._engine.get()[0]

    @property
    def _table(self) -> Any:
        return None if self._closed else self._engine.get()[1]

    @property
    def _passages(self) -> PassageTable:
        return self._engine.get()[2]

    @property
    def opened(self) -> bool:
        """Whether LanceDB has been opened for this store (it is opened at the first use that needs it)."""
        return self._engine.opened

    def _open_or_create(self, db: Any, dimensions: int, model_id: str) -> Any:
        table, created = open_checked_table(
            db, TABLE_NAME, memory_schema(dimensions, model_id), self._directory, "long-term memory"
        )
        if not created:
            missing = {name: value for name, value in _ADDED_COLUMNS.items() if name not in table.schema.names}
            if missing:
                logger.info("upgrading the long-term table: adding columns %s", ", ".join(missing))
                retry_on_conflict(lambda: table.add_columns(missing))
        self._ensure_indexes(table)
        return table

    def add(self, memory: Memory, index_text: str, vector: Vectors) -> bool:
        """Insert unless a memory with this id exists; return whether it was inserted."""
        return bool(self.add_many([memory], [index_text], np.asarray(vector, dtype=np.float32).reshape(1, -1)))

    def add_many(self, memories: Sequence[Memory], index_texts: Sequence[str], vectors: Vectors) -> set[str]:
        """Insert, in one commit, those memories whose id is not stored yet, durably; return the ids inserted."""
        rows: dict[str, dict[str, Any]] = {}
        for memory, text, vector in zip(memories, index_texts, vectors, strict=True):
            rows.setdefault(memory.id, _to_row(memory, text, vector))
        if not rows:
            return set()
        with self._write_lock, self._process_lock:
            existing = self.existing_ids(list(rows)) if len(rows) > 1 else set()
            # On object storage an acknowledged PUT is durable; only local files need syncing.
            local = isinstance(self._directory, Path)
            before = _table_files(self._table_dir) if local else set()
            result = self._insert_locked(list(rows.values()))
            # LanceDB does not fsync; a journal may only let go of entries once their rows are on disk.
            if local:
                _fsync_new(self._table_dir, before)
        if len(rows) == 1:
            return set(rows) if result.num_inserted_rows else set()
        return set(rows) - existing

    def add_passages(self, user_id: str, memory_id: str, texts: Sequence[str], vectors: Vectors) -> None:
        """Store the passages of a long memory (beyond its first window), each with its own vector."""
        with self._write_lock, self._process_lock:
            self._passages.add(user_id, memory_id, texts, vectors)
            self._commits += 1

    def _insert_locked(self, rows: list[dict[str, Any]]) -> Any:
        """One conditional-insert commit (caller holds the write locks)."""
        # merge_insert on the content id makes a retried write a no-op instead of a duplicate.
        result = retry_on_conflict(lambda: self._table.merge_insert("id").when_not_matched_insert_all().execute(rows))
        self._commits += 1
        return result

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of these ids the table holds (any user: ids are content-addressed per user)."""
        if not ids:
            return set()
        query = self._table.search().where(ids_clause(ids)).select(["id"]).limit(len(ids))
        with self._readers.shared():
            rows = read_retrying(query.to_list)
        return {r["id"] for r in rows}

    def all_ids(self) -> list[str]:
        """The id of every stored memory."""
        with self._readers.shared():
            ids = read_retrying(
                lambda: self._table.search().select(["id"]).limit(None).to_arrow().column("id").to_pylist()
            )
        return [str(i) for i in ids]

    @property
    def commits(self) -> int:
        """Commits this process made since it opened the store (upkeep watches it for bursts)."""
        return self._commits

    def _select(self, where: str, limit: int) -> list[Memory]:
        """Memories matching a where-clause (no ranking), at most `limit`."""
        query = self._table.search().where(where).select(_COLUMNS).limit(limit)
        with self._readers.shared():
            rows = read_retrying(query.to_list)
        return [_to_memory(r) for r in rows]

    def get(self, user_id: str, ids: Sequence[str]) -> list[Memory]:
        """Return the user's memories with these ids (missing ones are skipped)."""
        if not ids:
            return []
        return self._select(f"{memory_filter(user_id)} AND {ids_clause(ids)}", len(ids))

    def vector_search(
        self, user_id: str, vector: Vectors, filters: MemoryFilters, limit: int, *, passages: bool = True
    ) -> list[Candidate]:
        """Up to `limit` of the user's memories matching `filters`, by cosine similarity (the score), best first.

        A long memory scores its best passage; `passages=False` searches the memories' own vectors only."""
        query = (
            self._table.search(np.asarray(vector, dtype=np.float32).reshape(-1), vector_column_name="vector")
            .distance_type("cosine")
            # Used only once upkeep has built the ANN index; exact search ignores them.
            # HNSW needs ef >= the rows asked for; at 50k real embeddings ef 100 gave recall@10 0.989 at 5.7 ms against
            # 9.9 ms exact, and a refine step cost more than it gained (benchmarks/ann.py).
            .ef(max(_ANN_EF, 2 * limit))
            .where(memory_filter(user_id, filters), prefilter=True)
            .select([*_COLUMNS, "vector", "_distance"])
            .limit(limit)
        )
        with self._readers.shared():
            rows = read_retrying(query.to_list)
            matches = self._passages.search(user_id, vector, limit) if passages else []
        found = [_candidate(r, 1.0 - float(r["_distance"])) for r in rows]
        return self._with_passages(user_id, found, matches, filters, limit)

    def _with_passages(
        self,
        user_id: str,
        found: list[Candidate],
        matches: list[PassageMatch],
        filters: MemoryFilters,
        limit: int,
    ) -> list[Candidate]:
        """Merge passage matches into the memories found: a memory scores its best window, and comes back once."""
        by_id = {c.memory.id: c for c in found}
        better = [m for m in matches if m.memory_id not in by_id or m.score > by_id[m.memory_id].score]
        if not better:
            return found
        missing = [m.memory_id for m in better if m.memory_id not in by_id]
        if missing:
            # The passage table knows no filters: the memories it points at are read back through them.
            where = f"{memory_filter(user_id, filters)} AND {ids_clause(missing)}"
            query = self._table.search().where(where).select([*_COLUMNS, "vector"]).limit(len(missing))
            with self._readers.shared():
                rows = read_retrying(query.to_list)
            by_id.update({r["id"]: _candidate(r, 0.0) for r in rows})
        for match in better:
            if match.memory_id in by_id:
                memory = by_id[match.memory_id].memory
                by_id[match.memory_id] = Candidate(
                    memory=memory, score=match.score, vector=match.vector, passage=match.text
                )
        ranked = sorted(by_id.values(), key=lambda c: -c.score)
        return ranked[:limit]

    def keyword_search(self, user_id: str, text: str, filters: MemoryFilters, limit: int) -> list[Candidate]:
        """Up to `limit` of the user's memories matching `filters`, by BM25 over the index text, best first."""
        from lancedb.query import MatchQuery

        query = (
            # Plain terms, never query syntax: a string query in quotes is a phrase query, which fails on an index
            # without positions, and any text a caller sends is a valid query. (mypy misses the pydantic defaults.)
            self._table.search(MatchQuery(text, _FTS_COLUMN), query_type="fts")  # type: ignore[call-arg]
            .where(memory_filter(user_id, filters), prefilter=True)
            .select([*_COLUMNS, "vector", "_score"])
            .limit(limit)
        )
        with self._readers.shared():
            rows = read_retrying(query.to_list)
        return [_candidate(r, float(r["_score"])) for r in rows]

    def delete(self, user_id: str, ids: Sequence[str]) -> int:
        """Delete the user's memories with these ids; return how many were deleted."""
        if not ids:
            return 0
        deleted = self._erase(f"{memory_filter(user_id)} AND {ids_clause(ids)}")
        self._erase_passages(user_id, ids)
        return deleted

    def _erase_passages(self, user_id: str, ids: Sequence[str] | None, *, clean: bool = False) -> None:
        """Erase the passages of these memories of the user (all of them with None), under the erasure locks."""
        with self._upkeep_lock, self._write_lock, self._process_lock, self._readers.exclusive():
            self._passages.erase(user_id, ids, clean=clean)

    def list_memories(self, user_id: str, filters: MemoryFilters, limit: int, offset: int = 0) -> list[Memory]:
        """The user's memories matching `filters`, newest first, skipping `offset` of them."""
        from lancedb.query import ColumnOrdering

        query = (
            self._table.search()
            .where(memory_filter(user_id, filters))
            .order_by(
                [
                    ColumnOrdering(column_name="created_at", ascending=False),
                    ColumnOrdering(column_name="id", ascending=True),
                ]
            )
            .select(_COLUMNS)
            .offset(offset)
            .limit(limit)
        )
        with self._readers.shared():
            rows = read_retrying(query.to_list)
        return [_to_memory(r) for r in rows]

    def replace(
        self, user_id: str, old_id: str, memory: Memory, index_text: str | None = None, vector: Vectors | None = None
    ) -> bool:
        """Replace the user's memory `old_id` by `memory` in one commit (keeping its index text and vector unless
        given); a changed id removes the old row in the same commit. Return False if `old_id` is not held."""
        where = f"{memory_filter(user_id)} AND {ids_clause([old_id])}"
        # The upkeep lock too: a replacement keeps the row count, so it must not land inside another process's
        # upkeep, whose commits that process counts as row-preserving by the row count (storage/own_upkeep.py).
        with self._upkeep_lock, self._write_lock, self._process_lock:
            query = self._table.search().where(where).select(["index_text", "vector"]).limit(1)
            with self._readers.shared():
                rows = read_retrying(query.to_list)
            if not rows:
                return False
            text = rows[0]["index_text"] if index_text is None else index_text
            row = _to_row(memory, text, rows[0]["vector"] if vector is None else vector)

            def merge() -> Any:
                builder = self._table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all()
                if memory.id != old_id:
                    builder = builder.when_not_matched_by_source_delete(where)
                return builder.execute([row])

            retry_on_conflict(merge)
            self._commits += 1
        if index_text is not None:
            # New content: the old content's passages go (the writer stores the new content's own).
            self._erase_passages(user_id, [old_id])
        return True

    def agent_activity(self, user_id: str) -> list[AgentActivity]:
        """Per agent that wrote the user's memories: shared and private counts and the latest write."""
        query = (
            self._table.search()
            .where(memory_filter(user_id))
            .select(["agent_id", "visibility", "created_at"])
            .limit(None)
        )
        with self._readers.shared():
            rows = read_retrying(query.to_list)
        activity: dict[str | None, dict[str, Any]] = {}
        for row in rows:
            entry = activity.setdefault(row["agent_id"], {"shared": 0, "private": 0, "last": None})
            entry[row["visibility"]] += 1
            created = _utc(row["created_at"])
            if entry["last"] is None or (created is not None and created > entry["last"]):
                entry["last"] = created
        return [
            AgentActivity(agent_id=agent, shared=e["shared"], private=e["private"], last_written_at=e["last"])
            for agent, e in sorted(activity.items(), key=lambda item: (item[0] is None, item[0] or ""))
        ]

    def delete_older_than(self, cutoff: datetime, category: str | None = None, exclude: Sequence[str] = ()) -> int:
        """Delete memories of every user created before `cutoff`: of one category, or of all but `exclude`."""
        clauses = [f"created_at < {timestamp(cutoff)}"]
        if category is not None:
            clauses.append(f"category = {quote(category)}")
        elif exclude:
            clauses.append(f"(category IS NULL OR category NOT IN ({', '.join(quote(c) for c in exclude)}))")
        where = " AND ".join(clauses)
        # The passages go by their memories' ids, read first: the passages table knows no dates or categories.
        query = self._table.search().where(where).select(["id"]).limit(None)
        with self._readers.shared():
            doomed = sorted({str(r["id"]) for r in read_retrying(query.to_list)})
        deleted = self._erase(where)
        if doomed:
            with self._upkeep_lock, self._write_lock, self._process_lock, self._readers.exclusive():
                self._passages.erase_memories(doomed)
        return deleted

    def stored_memories(self, user_id: str, project: str | None = None) -> list[StoredMemory]:
        """Every memory of the user (of one project, if given), whatever its agent or visibility, oldest first."""
        where = memory_filter(user_id)
        if project is not None:
            where += f" AND project = {quote(project)}"
        query = self._table.search().where(where).select([*_COLUMNS, "index_text", "vector"]).limit(None)
        with self._readers.shared():
            rows = read_retrying(query.to_list)
        found = [
            StoredMemory(memory=_to_memory(r), index_text=r["index_text"], vector=np.asarray(r["vector"], np.float32))
            for r in rows
        ]
        return sorted(found, key=lambda s: (s.memory.created_at, s.memory.id))

    def delete_project(self, user_id: str, project: str) -> list[str]:
        """Delete every memory of the user's project; return the ids deleted."""
        where = f"{memory_filter(user_id)} AND project = {quote(project)}"
        query = self._table.search().where(where).select(["id"]).limit(None)
        with self._readers.shared():
            ids = [str(r["id"]) for r in read_retrying(query.to_list)]
        if ids:
            self._erase(f"{memory_filter(user_id)} AND {ids_clause(ids)}")
            self._erase_passages(user_id, ids)
        return ids

    def delete_user(self, user_id: str) -> int:
        """Delete every memory of the user; return how many were deleted."""
        # Older versions are removed even when no row is left, so the check that nothing remains can pass.
        deleted = self._erase(memory_filter(user_id), clean=True)
        self._erase_passages(user_id, None, clean=True)
        return deleted

    def _erase(self, where: str, clean: bool = False) -> int:
        """Delete matching rows and then every trace of them on disk; return how many rows were deleted.

        A LanceDB delete only hides rows: the data files, older table versions (with the delete's own filter
        text), and the scalar and full-text indexes keep them. So the deleted rows are compacted out of their
        fragments, every index is rebuilt from the live rows, and all older versions are removed. Queries of
        this process wait meanwhile; other processes' queries racing the clean-up may fail once and succeed
        when retried.
        """
        # The upkeep lock first (the order every path takes): clean-up below deletes files no version references,
        # which would include the output of another process's compaction still in progress.
        with self._upkeep_lock, self._write_lock, self._process_lock, self._readers.exclusive():
            deleted = erase_rows(self._table, where, self._directory, "long-term", self._rebuild_indexes, clean=clean)
            if deleted or clean:
                # Every older version was removed just now: one found later is a trace, not another server's commit.
                self._erased_through = int(self._table.version)
            return deleted

    def traces_of(self, user_id: str) -> list[str]:
        """What is left of the user on disk (rows, older table versions, files holding the key), without content."""
        with self._readers.shared():
            found = traces(
                self._table, memory_filter(user_id), self._directory, user_id, erased_through=self._erased_through
            )
            return found + self._passages.traces_of(user_id)

    def count(self) -> int:
        """Number of memories of all users."""
        return int(self._table.count_rows())

    def bytes_on_disk(self) -> int:
        """Size of the store's files."""
        return directory_bytes(self._directory)

    def close(self) -> None:
        """Release the store; the last process to close a local store removes its superseded versions."""
        if self._presence is not None and not self._closed:
            if self._engine.opened or self._superseded_on_disk():
                self._settle_alone(self._presence)
            else:
                self._presence.leave()  # never opened, and one version of each table: nothing to settle or save
            self._presence = None
        self._closed = True

    def _superseded_on_disk(self) -> bool:
        """Whether either table keeps a superseded version on disk (from the files; a local store only)."""
        if not isinstance(self._directory, Path):
            return True
        return any(manifests(self._directory / f"{name}.lance") > 1 for name in (TABLE_NAME, PASSAGES_TABLE))
