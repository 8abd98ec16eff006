"""The passages of long memories in their own LanceDB table: one vector per window of text, searched per user."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
from lancedb.index import Bitmap, BTree

from engram.core.ports import Vectors
from engram.storage.filters import quote
from engram.storage.lance_support import (
    META_MODEL,
    ensure_indexes,
    erase_rows,
    lance_dataset,
    open_checked_table,
    read_retrying,
    retry_on_conflict,
    traces,
)
from engram.storage.location import Location, ObjectStore

logger = logging.getLogger(__name__)

TABLE_NAME = "passages"


def passage_schema(dimensions: int, model_id: str) -> pa.Schema:
    """The Arrow schema of the passages table, stamped with the embedding model like the memories table."""
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("memory_id", pa.string(), nullable=False),
            pa.field("user_id", pa.string(), nullable=False),
            pa.field("position", pa.int32(), nullable=False),
            pa.field("text", pa.string(), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), dimensions)),
        ],
        metadata={META_MODEL: model_id.encode()},
    )


@dataclass(frozen=True)
class PassageMatch:
    """The best-matching passage of one memory: its text, vector and cosine similarity to the query."""

    memory_id: str
    text: str
    vector: Vectors
    score: float


def _memory_ids_clause(ids: Sequence[str]) -> str:
    return f"memory_id IN ({', '.join(quote(i) for i in ids)})"


class PassageTable:
    """Passages of long memories, kept next to the memories table (the caller holds that store's locks)."""

    def __init__(self, db: Any, directory: Location, *, dimensions: int, model_id: str) -> None:
        self._directory = directory
        # Created on open: a data directory written before passages existed simply has none yet.
        self._table, _ = open_checked_table(db, TABLE_NAME, passage_schema(dimensions, model_id), directory, "passage")
        self._ensure_indexes()

    def _ensure_indexes(self, rebuild: bool = False) -> None:
        ensure_indexes(self._table, [("id", BTree()), ("user_id", Bitmap()), ("memory_id", BTree())], rebuild)

    def add(self, user_id: str, memory_id: str, texts: Sequence[str], vectors: Vectors) -> None:
        """Store a memory's passages (the writer adds them once, when it inserts their memory)."""
        rows = [
            {
                "id": f"{memory_id}:{position}",
                "memory_id": memory_id,
                "user_id": user_id,
                "position": position,
                "text": text,
                "vector": np.asarray(vector, dtype=np.float32).reshape(-1).tolist(),
            }
            for position, (text, vector) in enumerate(zip(texts, vectors, strict=True), start=1)
        ]
        if rows:
            # A plain append: a conditional insert scanned every passage first (ingest slowed as the table grew).
            retry_on_conflict(lambda: self._table.add(rows))

    def search(self, user_id: str, vector: Vectors, limit: int) -> list[PassageMatch]:
        """The user's memories whose passages are closest to `vector`: each memory once, at its best passage."""
        if not read_retrying(self._table.count_rows):
            return []  # most stores hold no long memory: the row count is read from the manifest, a search is not
        query = (
            self._table.search(np.asarray(vector, dtype=np.float32).reshape(-1), vector_column_name="vector")
            .distance_type("cosine")
            .where(f"user_id = {quote(user_id)}", prefilter=True)
            .select(["memory_id", "text", "vector", "_distance"])
            .limit(limit)
        )
        best: dict[str, PassageMatch] = {}
        for row in read_retrying(query.to_list):
            if row["memory_id"] not in best:  # rows come best first
                best[row["memory_id"]] = PassageMatch(
                    memory_id=row["memory_id"],
                    text=row["text"],
                    vector=np.asarray(row["vector"], dtype=np.float32),
                    score=1.0 - float(row["_distance"]),
                )
        return list(best.values())

    def erase(self, user_id: str, memory_ids: Sequence[str] | None = None, *, clean: bool = False) -> int:
        """Erase the passages of these memories of the user (all of the user's without ids), leaving no trace."""
        where = f"user_id = {quote(user_id)}"
        if memory_ids is not None:
            if not memory_ids:
                return 0
            where += f" AND {_memory_ids_clause(memory_ids)}"
        return erase_rows(
            self._table, where, self._directory, "passage", lambda: self._ensure_indexes(True), clean=clean
        )

    def erase_memories(self, memory_ids: Sequence[str]) -> int:
        """Erase the passages of these memories of any user (a deletion by age spans users)."""
        if not memory_ids:
            return 0
        return erase_rows(
            self._table, _memory_ids_clause(memory_ids), self._directory, "passage", lambda: self._ensure_indexes(True)
        )

    def traces_of(self, user_id: str) -> list[str]:
        """Passages of the user left on disk, named by place (the directory-wide file scan is the caller's)."""
        # Files are scanned once, for the whole directory, by the memories store: a path with no files here.
        place = self._directory
        nowhere = place.child(".no-such-dir") if isinstance(place, ObjectStore) else place / ".no-such-dir"
        found = traces(self._table, f"user_id = {quote(user_id)}", nowhere, user_id)
        return [f"passages: {t}" for t in found]

    def compact(self) -> None:
        """Fold small fragments together and bring the indexes up to date.

        Passages arrive one memory per commit: unfolded, 300 commits made a search cost ~100 ms CPU, folded ~13 ms.
        """
        retry_on_conflict(lambda: lance_dataset(self._table).optimize.compact_files(num_threads=1))
        retry_on_conflict(lambda: lance_dataset(self._table).optimize.optimize_indices())

    def remove_versions_superseded_before(self, cutoff: datetime) -> None:
        """Remove table versions that a newer one superseded before `cutoff` (readers of older ones have finished)."""
        versions = sorted(lance_dataset(self._table).versions(), key=lambda v: v["version"])
        doomed = [
            older["version"]
            for older, newer in itertools.pairwise(versions)
            if newer["timestamp"].astimezone(UTC) < cutoff  # pylance gives naive local time
        ]
        if doomed:
            retry_on_conflict(lambda: lance_dataset(self._table).cleanup_old_versions(versions=doomed))

    def count(self) -> int:
        """Number of passages of all users."""
        return int(self._table.count_rows())
