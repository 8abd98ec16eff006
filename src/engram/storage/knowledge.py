"""LanceDB-backed knowledge memory: one table of document chunks with their embeddings, searched per owner."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engram.core.knowledge_models import ChunkCandidate, KnowledgeChunk, Origin, StoredSource
from engram.core.ports import Vectors
from engram.core.timeutil import to_utc
from engram.storage.deferred_open import Deferred, can_wait
from engram.storage.filters import quote

# The long-term store's cross-process write lock, commit-conflict retries and readers/writer lock; knowledge uses
# the same discipline on its own table and lock file.
from engram.storage.lance_support import (
    META_MODEL,
    ReadersWriterLock,
    connect,
    directory_bytes,
    ensure_indexes,
    erase_rows,
    open_checked_table,
    read_retrying,
    retry_on_conflict,
    traces,
)
from engram.storage.location import Location, location_lock
from engram.storage.no_rows import holds_no_rows

if TYPE_CHECKING:
    import pyarrow as pa

logger = logging.getLogger(__name__)

TABLE_NAME = "knowledge"
SCHEMA_VERSION = "1"
_META_VERSION = b"engram.schema_version"
_FTS_COLUMN = "index_text"
_SOURCE_COLUMNS = ["owner", "source", "origin", "title", "source_hash", "chunks", "ingested_at"]


def knowledge_schema(dimensions: int, model_id: str) -> pa.Schema:
    """The Arrow schema of the knowledge table, stamped with the schema version and embedding model."""
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            # "*" for knowledge shared by every user, else the user's pseudonymous key.
            pa.field("owner", pa.string(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("origin", pa.string(), nullable=False),
            pa.field("title", pa.string(), nullable=False),
            pa.field("heading_path", pa.list_(pa.string())),
            pa.field("position", pa.int32(), nullable=False),
            pa.field("chunks", pa.int32(), nullable=False),
            pa.field("page", pa.int32()),
            pa.field("content", pa.string(), nullable=False),
            pa.field("index_text", pa.string(), nullable=False),
            # Every chunk carries its source's hash: it commits with the chunks, so a file whose chunks did not
            # commit is not recorded as ingested and the next ingest redoes it.
            pa.field("source_hash", pa.string(), nullable=False),
            pa.field("ingested_at", pa.timestamp("us", tz="UTC"), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), dimensions)),
        ],
        metadata={_META_VERSION: SCHEMA_VERSION.encode(), META_MODEL: model_id.encode()},
    )


#: The chunks' columns but the vector, as `knowledge_schema` lists them (named here: no pyarrow before LanceDB opens).
_COLUMNS = [
    "id", "owner", "source", "origin", "title", "heading_path", "position", "chunks", "page", "content", "index_text",
    "source_hash", "ingested_at",
]  # fmt: skip


def _owners_clause(owners: Sequence[str]) -> str:
    return f"owner IN ({', '.join(quote(o) for o in owners)})"


def _sources_clause(owner: str, sources: Sequence[str]) -> str:
    return f"owner = {quote(owner)} AND source IN ({', '.join(quote(s) for s in sources)})"


class LanceKnowledgeStore:
    """Knowledge chunks in a LanceDB table in their own directory; every query names the owners it may see."""

    def __init__(self, directory: Location, *, dimensions: int, model_id: str) -> None:
        self._directory = directory
        if isinstance(directory, Path):
            directory.mkdir(parents=True, exist_ok=True)  # for the lock file, before LanceDB is connected
        self._write_lock = threading.Lock()
        self._process_lock = location_lock(directory, "write")
        self._readers = ReadersWriterLock()
        self._erased_through = 0  # the table version this store's latest erasure ended at
        self._closed = False
        # Opened at the first use that needs LanceDB when the files show opening can only confirm them (recall asks
        # a store that never held a chunk nothing more than a listing): storage/deferred_open.py.
        self._engine: Deferred[tuple[Any, Any]] = Deferred(partial(self._open_engine, dimensions, model_id))
        if not can_wait(directory, {TABLE_NAME: (model_id, dimensions)}):
            with self._process_lock:
                self._engine.get()

    def _open_engine(self, dimensions: int, model_id: str) -> tuple[Any, Any]:
        # Other servers on the same data directory may ingest too: every read must see their commits.
        db = connect(self._directory)
        return db, self._open_or_create(db, dimensions, model_id)

    @property
    def _db(self) -> Any:
        return self._engine.get()[0]

    @property
    def _table(self) -> Any:
        return None if self._closed else self._engine.get()[1]

    def _open_or_create(self, db: Any, dimensions: int, model_id: str) -> Any:
        table, _ = open_checked_table(
            db, TABLE_NAME, knowledge_schema(dimensions, model_id), self._directory, "knowledge memory"
        )
        self._ensure_indexes(table)
        return table

    @staticmethod
    def _ensure_indexes(table: Any, rebuild: bool = False) -> None:
        """Create the id, owner, source and full-text indexes a fresh table lacks (or rebuild them all)."""
        from lancedb.index import FTS, Bitmap, BTree

        wanted: list[tuple[str, Any]] = [
            ("id", BTree()),
            ("owner", Bitmap()),
            ("source", BTree()),
            (_FTS_COLUMN, FTS(stem=True, remove_stop_words=True, ascii_folding=True)),
        ]
        ensure_indexes(table, wanted, rebuild)

    def _read(self, query: Any) -> list[dict[str, Any]]:
        with self._readers.shared():
            rows: list[dict[str, Any]] = read_retrying(query.to_list)
        return rows

    def sources(self, owners: Sequence[str]) -> list[StoredSource]:
        """Every source of these owners, with its hash and chunk count."""
        query = self._table.search().where(_owners_clause(owners)).select(_SOURCE_COLUMNS).limit(None)
        with self._readers.shared():
            table = read_retrying(query.to_arrow)
        found: dict[tuple[str, str], StoredSource] = {}
        for row in table.to_pylist():
            key = (row["owner"], row["source"])
            if key not in found:
                found[key] = StoredSource(
                    owner=row["owner"],
                    source=row["source"],
                    origin=_origin(row["origin"]),
                    title=row["title"],
                    source_hash=row["source_hash"],
                    chunks=int(row["chunks"]),
                    ingested_at=to_utc(row["ingested_at"]),
                )
        return list(found.values())

    def vectors_of(self, owner: str, sources: Sequence[str]) -> dict[str, Vectors]:
        """The stored vectors of these sources' chunks, keyed by the chunk's index text."""
        if not sources:
            return {}
        query = self._table.search().where(_sources_clause(owner, sources)).select(["index_text", "vector"]).limit(None)
        return {r["index_text"]: np.asarray(r["vector"], dtype=np.float32) for r in self._read(query)}

    def replace_sources(
        self, owner: str, sources: Sequence[str], chunks: Sequence[KnowledgeChunk], vectors: Vectors
    ) -> None:
        """Make `chunks` the whole content of `sources` of this owner, in one commit.

        One merge-insert on the chunk id updates chunks that stayed, inserts new ones and deletes the sources'
        chunks that are no longer produced; readers see the sources entirely before or entirely after.
        """
        rows = [_to_row(c, v) for c, v in zip(chunks, vectors, strict=True)]
        if not rows:
            return
        condition = _sources_clause(owner, sources)
        with self._write_lock, self._process_lock:
            retry_on_conflict(
                lambda: (
                    self._table.merge_insert("id")
                    .when_matched_update_all()
                    .when_not_matched_insert_all()
                    .when_not_matched_by_source_delete(condition)
                    .execute(rows)
                )
            )

    def chunks_of(self, owner: str) -> list[ChunkCandidate]:
        """Every chunk of the owner's sources with its vector (score 0), by source and position."""
        query = self._table.search().where(_owners_clause([owner])).select([*_COLUMNS, "vector"]).limit(None)
        found = [_candidate(row, 0.0) for row in self._read(query)]
        return sorted(found, key=lambda c: (c.chunk.source, c.chunk.position))

    def remove_sources(self, owner: str, sources: Sequence[str]) -> int:
        """Erase every chunk of these sources of this owner; return how many chunks were erased."""
        return self._erase(_sources_clause(owner, sources)) if sources else 0

    def delete_owner(self, owner: str) -> int:
        """Erase every chunk of the owner, and every older table version even when none is left; return how many."""
        # Older versions might hold chunks the owner removed earlier: they go too, so the check that nothing of the
        # owner is left (which counts versions) can pass.
        return self._erase(f"owner = {quote(owner)}", always_clean=True)

    def _erase(self, where: str, always_clean: bool = False) -> int:
        """Delete matching rows and every trace of them on disk (see lance_support.erase_rows)."""
        with self._write_lock, self._process_lock, self._readers.exclusive():
            rebuild = partial(self._ensure_indexes, self._table, rebuild=True)
            deleted = erase_rows(self._table, where, self._directory, "knowledge", rebuild, clean=always_clean)
            if deleted or always_clean:
                # Every older version was removed just now: one found later is a trace, not another server's commit.
                self._erased_through = int(self._table.version)
            return deleted

    def vector_search(self, owners: Sequence[str], vector: Vectors, limit: int) -> list[ChunkCandidate]:
        """Up to `limit` chunks of these owners by cosine similarity (the score), best first."""
        query = (
            self._table.search(np.asarray(vector, dtype=np.float32).reshape(-1), vector_column_name="vector")
            .distance_type("cosine")
            .where(_owners_clause(owners), prefilter=True)
            .select([*_COLUMNS, "vector", "_distance"])
            .limit(limit)
        )
        return [_candidate(r, 1.0 - float(r["_distance"])) for r in self._read(query)]

    def keyword_search(self, owners: Sequence[str], text: str, limit: int) -> list[ChunkCandidate]:
        """Up to `limit` chunks of these owners by BM25 over the index text, best first."""
        from lancedb.query import MatchQuery

        query = (
            # Plain terms, never query syntax: a string query in quotes is a phrase query, which fails on an index
            # without positions, and any text a caller sends is a valid query. (mypy misses the pydantic defaults.)
            self._table.search(MatchQuery(text, _FTS_COLUMN), query_type="fts")  # type: ignore[call-arg]
            .where(_owners_clause(owners), prefilter=True)
            .select([*_COLUMNS, "vector", "_score"])
            .limit(limit)
        )
        return [_candidate(r, float(r["_score"])) for r in self._read(query)]

    def traces_of_owner(self, owner: str) -> list[str]:
        """What is left of the owner on disk (rows, older table versions, files holding the key), without content."""
        with self._readers.shared():
            return traces(
                self._table, f"owner = {quote(owner)}", self._directory, owner, erased_through=self._erased_through
            )

    def optimize(self) -> None:
        """Compact fragments and fold new rows into the indexes (old versions are kept for readers)."""
        with self._write_lock, self._process_lock:
            retry_on_conflict(self._table.optimize)

    def count(self) -> int:
        """Number of chunks of all owners."""
        # Recall asks on every call: a store that never held a chunk answers from a listing, not LanceDB.
        return 0 if self.holds_nothing() else int(self._table.count_rows())

    def holds_nothing(self) -> bool:
        """True when the table has never held a chunk (a directory listing: microseconds, no LanceDB)."""
        return holds_no_rows(self._directory, TABLE_NAME)

    def bytes_on_disk(self) -> int:
        """Size of the store's files."""
        return directory_bytes(self._directory)

    def close(self) -> None:
        """Release the store."""
        self._closed = True


def _origin(value: str) -> Origin:
    return "text" if value == "text" else "file"


def _to_row(chunk: KnowledgeChunk, vector: Vectors) -> dict[str, Any]:
    return {
        "id": chunk.id,
        "owner": chunk.owner,
        "source": chunk.source,
        "origin": chunk.origin,
        "title": chunk.title,
        "heading_path": list(chunk.heading_path),
        "position": chunk.position,
        "chunks": chunk.chunks,
        "page": chunk.page,
        "content": chunk.content,
        "index_text": chunk.index_text,
        "source_hash": chunk.source_hash,
        "ingested_at": chunk.ingested_at,
        "vector": np.asarray(vector, dtype=np.float32).reshape(-1).tolist(),
    }


def _candidate(row: dict[str, Any], score: float) -> ChunkCandidate:
    ingested: datetime = to_utc(row["ingested_at"])
    chunk = KnowledgeChunk(
        id=row["id"],
        owner=row["owner"],
        source=row["source"],
        origin=_origin(row["origin"]),
        title=row["title"],
        heading_path=list(row["heading_path"] or []),
        position=int(row["position"]),
        chunks=int(row["chunks"]),
        page=row["page"],
        content=row["content"],
        index_text=row["index_text"],
        source_hash=row["source_hash"],
        ingested_at=ingested,
    )
    return ChunkCandidate(chunk=chunk, score=score, vector=np.asarray(row["vector"], dtype=np.float32))
