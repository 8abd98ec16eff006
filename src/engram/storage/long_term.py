"""LanceDB-backed long-term memory: one table of memories with their embeddings, searched per user."""

from __future__ import annotations

import itertools
import json
import logging
import os

try:
    import fcntl
except ImportError:  # Windows: no cross-process lock; commits then rely on conflict retries
    fcntl = None  # type: ignore[assignment]
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
from lancedb.index import FTS, Bitmap, BTree, HnswSq, LabelList
from lancedb.query import ColumnOrdering, MatchQuery

from engram.core.models import AgentActivity, Kind, Memory, RecallFilters, Role, Sentiment, Visibility
from engram.core.ports import Candidate, StoredMemory, Vectors
from engram.core.timeutil import to_utc
from engram.storage.filters import ids_clause, memory_filter, quote, timestamp
from engram.storage.journal import WriteJournal
from engram.storage.lance_support import (
    META_MODEL,
    FileLock,
    ReadersWriterLock,
    connect,
    directory_bytes,
    ensure_indexes,
    erase_rows,
    lance_dataset,
    open_checked_table,
    read_retrying,
    retry_on_conflict,
    traces,
)
from engram.storage.passages import PassageMatch, PassageTable

logger = logging.getLogger(__name__)

TABLE_NAME = "memories"
SCHEMA_VERSION = "2"
_META_VERSION = b"engram.schema_version"
#: Compaction merges small fragments up to this many rows and leaves bigger ones alone, so upkeep rewrites
#: recent data rather than the whole table every time.
_FRAGMENT_ROWS = 20_000
#: Past this many rows upkeep builds an ANN index on the vectors (IVF_HNSW_SQ); below it an exact scan of one user's
#: rows is fast enough and exact. Query-time settings: recall@10 against exact search >= 0.95 (benchmarks/ann.py).
VECTOR_INDEX_MIN_ROWS = 50_000
_ANN_EF = 100


def memory_schema(dimensions: int, model_id: str) -> pa.Schema:
    """The Arrow schema of the memories table, stamped with the schema version and embedding model."""
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("user_id", pa.string(), nullable=False),
            pa.field("agent_id", pa.string()),
            pa.field("visibility", pa.string(), nullable=False),
            pa.field("session_id", pa.string()),
            pa.field("project", pa.string()),
            pa.field("role", pa.string()),
            pa.field("kind", pa.string(), nullable=False),
            pa.field("content", pa.string(), nullable=False),
            pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
            pa.field("updated_at", pa.timestamp("us", tz="UTC")),
            pa.field("tags", pa.list_(pa.string())),
            pa.field("category", pa.string()),
            pa.field("entities", pa.list_(pa.string())),
            # Case-folded entities: what an `entity` filter matches, whatever case the caller writes.
            pa.field("entity_keys", pa.list_(pa.string())),
            pa.field("sentiment", pa.string()),
            pa.field("sentiment_score", pa.float32()),
            pa.field("resolved", pa.bool_()),
            pa.field("importance", pa.float32()),
            pa.field("links", pa.list_(pa.string())),
            pa.field("turn_index", pa.int32()),
            pa.field("metadata", pa.string()),
            # Content plus the context a question asks about (speaker, date, the turn replied to): what keyword
            # search matches and the vector embeds, kept apart so the stored content stays verbatim.
            pa.field("index_text", pa.string(), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), dimensions)),
        ],
        metadata={_META_VERSION: SCHEMA_VERSION.encode(), META_MODEL: model_id.encode()},
    )


_COLUMNS = [f.name for f in memory_schema(1, "x") if f.name not in {"vector", "index_text", "entity_keys"}]
#: Columns added after schema version 1, with the SQL value that existing rows get.
_ADDED_COLUMNS = {
    "visibility": "'shared'",
    "entity_keys": "arrow_cast(NULL, 'List(Utf8)')",
    "project": "arrow_cast(NULL, 'Utf8')",
}
_FTS_COLUMN = "index_text"
T = TypeVar("T")


@dataclass(frozen=True)
class StoreHealth:
    """The state of the table that upkeep acts on."""

    rows: int
    fragments: int
    unindexed_rows: int
    versions: int
    data_files: int


class LanceLongTermStore:
    """Long-term memories in a LanceDB table; every query is prefiltered to one user."""

    def __init__(self, directory: Path, *, dimensions: int, model_id: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._directory = directory
        self._db: Any = connect(directory)
        self._write_lock = threading.Lock()
        # Servers sharing this directory take turns to write: concurrent LanceDB commits conflict, and two
        # conditional inserts of the same id racing in two processes could both insert it.
        self._process_lock = FileLock(directory / ".engram-write.lock")
        # Upkeep (compaction, index upkeep, version clean-up) runs in one process at a time, outside the write lock
        # so that writes go on meanwhile; erasure takes it too, since erasure deletes unreferenced files.
        self._upkeep_lock = FileLock(directory / ".engram-upkeep.lock")
        self._readers = ReadersWriterLock()
        self._commits = 0
        self._erased_through = 0  # the table version this store's latest erasure ended at
        with self._process_lock:
            self._table: Any = self._open_or_create(dimensions, model_id)
            self._passages = PassageTable(self._db, directory, dimensions=dimensions, model_id=model_id)

    def _open_or_create(self, dimensions: int, model_id: str) -> Any:
        table, created = open_checked_table(
            self._db, TABLE_NAME, memory_schema(dimensions, model_id), self._directory, "long-term memory"
        )
        if not created:
            missing = {name: value for name, value in _ADDED_COLUMNS.items() if name not in table.schema.names}
            if missing:
                logger.info("upgrading the long-term table: adding columns %s", ", ".join(missing))
                retry_on_conflict(lambda: table.add_columns(missing))
        self._ensure_indexes(table)
        return table

    @staticmethod
    def _ensure_indexes(table: Any, rebuild: bool = False) -> None:
        """Create the scalar and full-text indexes a fresh or older table lacks.

        The id index makes the conditional insert and look-ups by id cheap; the user index makes every
        per-user prefilter an index probe instead of a scan. Rows added after an index was built are still
        searched (brute force) until compaction folds them in, so the write path never rebuilds an index.
        """
        wanted: list[tuple[str, Any]] = [
            ("id", BTree()),
            ("user_id", Bitmap()),
            ("agent_id", Bitmap()),
            ("tags", LabelList()),
            (_FTS_COLUMN, FTS(stem=True, remove_stop_words=True, ascii_folding=True)),
        ]
        ensure_indexes(table, wanted, rebuild)

    def add(self, memory: Memory, index_text: str, vector: Vectors) -> bool:
        """Insert unless a memory with this id exists; return whether it was inserted."""
        return bool(self.add_many([memory], [index_text], np.asarray(vector, dtype=np.float32).reshape(1, -1)))

    def add_many(self, memories: Sequence[Memory], index_texts: Sequence[str], vectors: Vectors) -> set[str]:
        """Insert, in one commit, those memories whose id is not stored yet; return the ids inserted."""
        rows: dict[str, dict[str, Any]] = {}
        for memory, text, vector in zip(memories, index_texts, vectors, strict=True):
            rows.setdefault(memory.id, _to_row(memory, text, vector))
        if not rows:
            return set()
        with self._write_lock, self._process_lock:
            existing = self.existing_ids(list(rows)) if len(rows) > 1 else set()
            result = self._insert_locked(list(rows.values()))
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
            ids = read_retrying(lambda: lance_dataset(self._table).to_table(columns=["id"]).column("id").to_pylist())
        return [str(i) for i in ids]

    def absorb(self, journal: WriteJournal, batch: int) -> int:
        """Move up to `batch` journalled writes into the table in one commit, durably; return how many moved.

        Runs under the write locks, so two processes never move the same entries; an entry moved twice (a crash
        between the commit and the trim) is a no-op the second time, since the insert is conditional on the id.
        """
        with self._write_lock, self._process_lock:
            entries = journal.pending(batch)
            if not entries:
                return 0
            rows: dict[str, dict[str, Any]] = {}
            for entry in entries:
                rows.setdefault(entry.memory.id, _to_row(entry.memory, entry.index_text, entry.vector))
            before = _table_files(self._table_dir)
            self._insert_locked(list(rows.values()))
            # LanceDB does not fsync; the journal may only let go of entries once their rows are on disk.
            _fsync_new(self._table_dir, before)
            journal.trim(entries[-1].seq)
        return len(entries)

    @property
    def commits(self) -> int:
        """Commits this process made since it opened the store (upkeep watches it for bursts)."""
        return self._commits

    @property
    def _table_dir(self) -> Path:
        return self._directory / f"{TABLE_NAME}.lance"

    def _select(self, where: str, limit: int) -> list[Memory]:
        """Memories matching a where-clause (no ranking), at most `limit`."""
        query = self._table.search().where(where).select(_COLUMNS).limit(limit)
        with self._readers.shared():
            rows = read_retrying(query.to_list)
        return [_to_memory(r) for r in rows]

    def optimize(self) -> None:
        """Compact fragments and fold new rows into the indexes now (old versions are kept for readers)."""
        with self._upkeep_lock:
            self._compact_and_reindex()

    def health(self) -> StoreHealth:
        """What upkeep looks at: fragments, rows outside the indexes, versions and data files."""
        with self._readers.shared():
            latest = lance_dataset(self._table)
            unindexed = 0
            # The vector index is left out: its statistics are costly (lance logs a warning about their size), and
            # rows missing from it are missing from the others too, which upkeep brings up to date all together.
            for index in self._table.list_indices():
                if index.columns == ["vector"]:
                    continue
                stats = self._table.index_stats(index.name)
                if stats is not None:
                    unindexed = max(unindexed, int(stats.num_unindexed_rows))
            return StoreHealth(
                rows=int(latest.count_rows()),
                fragments=len(latest.get_fragments()),
                unindexed_rows=unindexed,
                versions=len(latest.versions()),
                data_files=_count_files(self._table_dir / "data"),
            )

    def upkeep(self, keep_versions_for: timedelta) -> bool:
        """Compact, bring the indexes up to date, and remove versions superseded more than `keep_versions_for` ago.

        Returns False without doing anything when another process is already doing upkeep. Writes go on
        meanwhile (LanceDB lets appends and a compaction commit side by side; a conflict is retried). Versions are
        removed only once they have been superseded for the whole margin, so a query another process started on
        an older version finishes before that version's files go.
        """
        if not self._upkeep_lock.acquire(blocking=False):
            return False
        try:
            self._compact_and_reindex()
            self._remove_versions_superseded_before(datetime.now(UTC) - keep_versions_for)
            self._passages.remove_versions_superseded_before(datetime.now(UTC) - keep_versions_for)
        finally:
            self._upkeep_lock.release()
        return True

    def _compact_and_reindex(self) -> None:
        # The dataset handle is taken per attempt: a conflict means another process committed a newer version.
        retry_on_conflict(
            lambda: lance_dataset(self._table).optimize.compact_files(
                target_rows_per_fragment=_FRAGMENT_ROWS, num_threads=1
            )
        )
        retry_on_conflict(lambda: lance_dataset(self._table).optimize.optimize_indices())
        self._ensure_vector_index()
        self._passages.compact()

    def _has_vector_index(self) -> bool:
        return any(index.columns == ["vector"] for index in self._table.list_indices())

    def _ensure_vector_index(self, rebuild: bool = False) -> None:
        if self._table.count_rows() < VECTOR_INDEX_MIN_ROWS or (self._has_vector_index() and not rebuild):
            return
        logger.info("building the vector index (%d rows)", self._table.count_rows())
        retry_on_conflict(
            lambda: self._table.create_index("vector", config=HnswSq(distance_type="cosine"), replace=True)
        )

    def _remove_versions_superseded_before(self, cutoff: datetime) -> None:
        versions = sorted(lance_dataset(self._table).versions(), key=lambda v: v["version"])
        doomed = [
            older["version"]
            for older, newer in itertools.pairwise(versions)
            # pylance reports local wall-clock time without a zone; astimezone reads a naive time as local.
            if newer["timestamp"].astimezone(UTC) < cutoff
        ]
        if doomed:
            retry_on_conflict(lambda: lance_dataset(self._table).cleanup_old_versions(versions=doomed))

    def get(self, user_id: str, ids: Sequence[str]) -> list[Memory]:
        """Return the user's memories with these ids (missing ones are skipped)."""
        if not ids:
            return []
        return self._select(f"{memory_filter(user_id)} AND {ids_clause(ids)}", len(ids))

    def vector_search(
        self, user_id: str, vector: Vectors, filters: RecallFilters, limit: int, *, passages: bool = True
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
        filters: RecallFilters,
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

    def keyword_search(self, user_id: str, text: str, filters: RecallFilters, limit: int) -> list[Candidate]:
        """Up to `limit` of the user's memories matching `filters`, by BM25 over the index text, best first."""
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

    def list_memories(self, user_id: str, filters: RecallFilters, limit: int, offset: int = 0) -> list[Memory]:
        """The user's memories matching `filters`, newest first, skipping `offset` of them."""
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
        with self._write_lock, self._process_lock:
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

    def _rebuild_indexes(self) -> None:
        """Rebuild every index from the live rows, after an erasure (the vector index holds quantised vectors)."""
        self._ensure_indexes(self._table, rebuild=True)
        if self._has_vector_index():
            if self._table.count_rows() < VECTOR_INDEX_MIN_ROWS:
                for name in [i.name for i in self._table.list_indices() if i.columns == ["vector"]]:
                    retry_on_conflict(partial(self._table.drop_index, name))
            else:
                self._ensure_vector_index(rebuild=True)

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
        """Release the store (LanceDB holds no process-wide locks; dropping references is enough)."""
        self._table = None
        self._passages = None  # type: ignore[assignment]
        self._db = None


def _to_row(memory: Memory, index_text: str, vector: Vectors) -> dict[str, Any]:
    row = memory.model_dump(mode="python")
    row["index_text"] = index_text
    row["role"] = memory.role.value if memory.role else None
    row["visibility"] = memory.visibility.value
    row["entity_keys"] = sorted({entity.casefold() for entity in memory.entities})
    row["kind"] = memory.kind.value
    row["sentiment"] = memory.sentiment.value if memory.sentiment else None
    row["metadata"] = json.dumps(memory.metadata, ensure_ascii=False, sort_keys=True)
    row["vector"] = np.asarray(vector, dtype=np.float32).reshape(-1).tolist()
    return row


def _candidate(row: dict[str, Any], score: float) -> Candidate:
    return Candidate(memory=_to_memory(row), score=score, vector=np.asarray(row["vector"], dtype=np.float32))


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else to_utc(value)


def _to_memory(row: dict[str, Any]) -> Memory:
    created_at = _utc(row["created_at"])
    assert created_at is not None
    return Memory(
        id=row["id"],
        user_id=row["user_id"],
        agent_id=row["agent_id"],
        visibility=Visibility(row["visibility"]),
        session_id=row["session_id"],
        project=row.get("project"),
        role=Role(row["role"]) if row["role"] else None,
        kind=Kind(row["kind"]),
        content=row["content"],
        created_at=created_at,
        updated_at=_utc(row["updated_at"]),
        tags=list(row["tags"] or []),
        category=row["category"],
        entities=list(row["entities"] or []),
        sentiment=Sentiment(row["sentiment"]) if row["sentiment"] else None,
        sentiment_score=None if row["sentiment_score"] is None else round(float(row["sentiment_score"]), 6),
        resolved=row["resolved"],
        importance=None if row["importance"] is None else round(float(row["importance"]), 6),
        links=list(row["links"] or []),
        turn_index=row["turn_index"],
        metadata=json.loads(row["metadata"]) if row["metadata"] else {},
    )


def _table_files(root: Path) -> set[str]:
    """The table's data, version and transaction files (what a commit adds)."""
    names: set[str] = set()
    for sub in ("data", "_versions", "_transactions"):
        try:
            names.update(f"{sub}/{entry.name}" for entry in os.scandir(root / sub))
        except FileNotFoundError:
            continue
    return names


def _fsync_new(root: Path, before: set[str]) -> None:
    """Flush to disk the files a commit added, and the directories that list them."""
    # A concurrent compaction (upkeep runs outside the write lock) adds files too, some of them temporary and gone
    # a moment later: syncing its files is harmless, and a vanished one is not ours.
    added = {name for name in _table_files(root) - before if not name.split("/", 1)[1].startswith(".")}
    for path in [*(root / name for name in added), *{root / name.split("/", 1)[0] for name in added}]:
        try:
            descriptor = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _count_files(directory: Path) -> int:
    try:
        return sum(1 for entry in os.scandir(directory) if entry.is_file())
    except FileNotFoundError:
        return 0
