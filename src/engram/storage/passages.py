"""The passages of long memories in their own LanceDB table: one vector per window of text, searched per user."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from engram.core.ports import Vectors
from engram.storage.filters import quote
from engram.storage.lance_support import (
    META_MODEL,
    ensure_indexes,
    erase_rows,
    open_checked_table,
    optimize_table,
    read_retrying,
    remove_superseded_versions,
    retry_on_conflict,
    rows_unchanged,
    traces,
)
from engram.storage.location import Location, ObjectStore
from engram.storage.no_rows import holds_no_rows
from engram.storage.own_upkeep import UpkeepWindow
from engram.storage.passage_index import PASSAGE_OVERHEAD, PassageIndex, UserPassages

if TYPE_CHECKING:
    import pyarrow as pa

logger = logging.getLogger(__name__)

TABLE_NAME = "passages"
#: What a passage's text costs in memory, for deciding before a whole-table load (a window is ~100 words).
_TEXT_BYTES = 700


def passage_schema(dimensions: int, model_id: str) -> pa.Schema:
    """The Arrow schema of the passages table, stamped with the embedding model like the memories table."""
    import pyarrow as pa

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


def _vectors(rows: pa.Table | pa.RecordBatch) -> npt.NDArray[np.float32]:
    """The vector column of an Arrow table or batch as a float32 matrix."""
    import pyarrow as pa

    column = rows.column("vector")
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return np.asarray(column.flatten(), dtype=np.float32).reshape(rows.num_rows, -1)


def _memory_ids_clause(ids: Sequence[str]) -> str:
    return f"memory_id IN ({', '.join(quote(i) for i in ids)})"


class PassageTable:
    """Passages of long memories, kept next to the memories table (the caller holds that store's locks)."""

    def __init__(self, db: Any, directory: Location, *, dimensions: int, model_id: str) -> None:
        self._directory = directory
        self._dimensions = dimensions
        # Created on open: a data directory written before passages existed simply has none yet.
        self._table, _ = open_checked_table(db, TABLE_NAME, passage_schema(dimensions, model_id), directory, "passage")
        self._ensure_indexes()
        self._index: PassageIndex | None = None
        self._upkeep_window: UpkeepWindow | None = None  # this process's compaction, while it runs

    def hold_in_memory(self, cap_bytes: int) -> None:
        """Answer searches from each user's passages held in memory, within `cap_bytes` (0: ask LanceDB)."""
        self._index = PassageIndex(cap_bytes) if cap_bytes > 0 else None

    def indexed_users(self) -> list[str]:
        """The users whose passages are held in memory, least recently searched first."""
        return [] if self._index is None else list(self._index.users)

    def _ensure_indexes(self, rebuild: bool = False) -> None:
        from lancedb.index import Bitmap, BTree

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
        if not rows:
            return
        if self._index is None:
            # A plain append: a conditional insert scanned every passage first (ingest slowed as the table grew).
            retry_on_conflict(lambda: self._table.add(rows))
            return
        index = self._index
        # Under the index lock from before the commit until the index has it: no search sees the table ahead.
        with index.lock:
            result = retry_on_conflict(lambda: self._table.add(rows))
            version = getattr(result, "version", None)
            if version is None or not self._follow(index, int(version) - 1):
                index.reset(None)  # rows changed by another commit in between (or no version to account for)
                return
            index.version = int(version)
            if self._upkeep_window is not None:
                self._upkeep_window.added(int(version), len(rows))
            held = index.users.get(user_id)
            if held is None and index.complete:
                held = UserPassages()  # the user's first long memory: an index holding every user stays complete
                index.users[user_id] = held
            if held is not None:
                held.add([memory_id] * len(rows), list(texts), np.asarray(vectors, dtype=np.float32))
                index.put(user_id, held)

    def search(self, user_id: str, vector: Vectors, limit: int) -> list[PassageMatch]:
        """The user's memories whose passages are closest to `vector`: each memory once, at its best passage."""
        if holds_no_rows(self._directory, TABLE_NAME) or not read_retrying(self._table.count_rows):
            return []  # most stores hold no long memory: a listing or the row count answers, a search is not
        if self._index is not None:
            return self._search_held(user_id, vector, limit)
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

    def _search_held(self, user_id: str, vector: Vectors, limit: int) -> list[PassageMatch]:
        """`search` answered from the user's passages in memory (loaded first if need be)."""
        index = self._index
        assert index is not None
        with index.lock:
            version = int(read_retrying(lambda: self._table.version))
            if not self._follow(index, version):
                index.reset(version)
            if not index.users and not index.complete:
                # An empty index (at start, or after a change): one scan of the whole table when it fits the cap,
                # rather than a first slow search for each user in turn.
                self._load_all(index)
            held = index.get(user_id)
            if held is None:
                held = UserPassages() if index.complete else self._load(user_id)
                index.put(user_id, held)
            best: dict[str, PassageMatch] = {}
            for row, distance in held.nearest(np.asarray(vector, dtype=np.float32), limit):
                memory_id = held.memory_ids[row]
                if memory_id not in best:
                    best[memory_id] = PassageMatch(
                        memory_id=memory_id, text=held.texts[row], vector=held.vectors[row], score=1.0 - distance
                    )
            return list(best.values())

    def _follow(self, index: PassageIndex, version: int) -> bool:
        """Whether the held passages hold for `version` (now recorded): no commit since theirs changed a row.

        Upkeep compacts this table between searches: dropping everything then would reload it all each time."""
        known = index.version
        if known is None or version < known:
            return False
        window = self._upkeep_window
        if window is not None and version > max(known, window.start):
            return False  # this process's compaction is committing: not worth the transaction log (see compact)
        if version > known and not rows_unchanged(self._table, known, list(range(known + 1, version + 1))):
            return False
        index.version = version
        return True

    def _load_all(self, index: PassageIndex) -> None:
        """Hold every user's passages, read in one streamed scan, if the whole table fits the cap (else none)."""
        rows = int(read_retrying(self._table.count_rows))
        if rows * (4 * self._dimensions + PASSAGE_OVERHEAD + _TEXT_BYTES) > index.cap_bytes:
            return
        query = self._table.search().select(["user_id", "memory_id", "text", "vector"]).limit(None)
        for batch in read_retrying(lambda: query.to_batches(batch_size=4096)):
            users = batch.column("user_id").to_pylist()
            rows_of: dict[str, list[int]] = {}
            for row, user_id in enumerate(users):
                rows_of.setdefault(user_id, []).append(row)
            for user_id, picked in rows_of.items():
                part = batch.take(picked)
                held = index.users.get(user_id)
                if held is None:
                    held = index.users[user_id] = UserPassages()
                held.add(part.column("memory_id").to_pylist(), part.column("text").to_pylist(), _vectors(part))
        index.complete = True
        index.fit()

    def _load(self, user_id: str) -> UserPassages:
        """Read the user's passages from the table."""
        query = (
            self._table.search()
            .where(f"user_id = {quote(user_id)}")
            .select(["memory_id", "text", "vector"])
            .limit(None)
        )
        table = read_retrying(query.to_arrow)
        held = UserPassages()
        if table.num_rows:
            held.add(table.column("memory_id").to_pylist(), table.column("text").to_pylist(), _vectors(table))
        return held

    def erase(self, user_id: str, memory_ids: Sequence[str] | None = None, *, clean: bool = False) -> int:
        """Erase the passages of these memories of the user (all of the user's without ids), leaving no trace."""
        where = f"user_id = {quote(user_id)}"
        if memory_ids is not None:
            if not memory_ids:
                return 0
            where += f" AND {_memory_ids_clause(memory_ids)}"
        try:
            return erase_rows(
                self._table, where, self._directory, "passage", lambda: self._ensure_indexes(True), clean=clean
            )
        finally:
            self._forget_held()

    def erase_memories(self, memory_ids: Sequence[str]) -> int:
        """Erase the passages of these memories of any user (a deletion by age spans users)."""
        if not memory_ids:
            return 0
        try:
            return erase_rows(
                self._table,
                _memory_ids_clause(memory_ids),
                self._directory,
                "passage",
                lambda: self._ensure_indexes(True),
            )
        finally:
            self._forget_held()

    def _forget_held(self) -> None:
        """Drop every user's passages held in memory, with the rows erased (before the erasure returns)."""
        if self._index is not None:
            with self._index.lock:
                self._index.reset(None)

    def traces_of(self, user_id: str) -> list[str]:
        """Passages of the user left on disk, named by place (the directory-wide file scan is the caller's)."""
        # Files are scanned once, for the whole directory, by the memories store: a path with no files here.
        place = self._directory
        nowhere = place.child(".no-such-dir") if isinstance(place, ObjectStore) else place / ".no-such-dir"
        found = traces(self._table, f"user_id = {quote(user_id)}", nowhere, user_id)
        return [f"passages: {t}" for t in found]

    def compact(self, keep_versions_for: timedelta | None = None) -> None:
        """Fold small fragments together, bring the indexes up to date and, with `keep_versions_for`, remove the
        versions superseded more than that long ago (readers of older ones have finished).

        Passages arrive one memory per commit: unfolded, 300 commits made a search cost ~100 ms CPU, folded ~13 ms.
        The held passages stay valid across it when the row count shows no other commit changed rows meanwhile
        (engram.storage.own_upkeep: no transaction log read, so no second Lance engine).
        """
        index = self._index
        if index is None:
            optimize_table(self._table, keep_versions_for)
            return
        with index.lock:
            window = self._upkeep_window = UpkeepWindow(self._table)
        try:
            optimize_table(self._table, keep_versions_for)
        finally:
            end = int(self._table.version)
            with index.lock:
                self._upkeep_window = None
                known = index.version
                if known is not None and window.start <= known <= end and window.unchanged_through(self._table, end):
                    index.version = end

    def remove_superseded_versions(self) -> None:
        """Remove every older version at once (the caller knows no other process has the store open)."""
        remove_superseded_versions(self._table)

    def count(self) -> int:
        """Number of passages of all users."""
        return int(self._table.count_rows())
