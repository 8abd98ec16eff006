"""Index and file upkeep of the memories table: its indexes, compaction, version clean-up and health."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

from engram.storage.lance_support import (
    ReadersWriterLock,
    _count_files,
    cache_bytes,
    ensure_indexes,
    optimize_table,
    remove_superseded_versions,
    retry_on_conflict,
)
from engram.storage.location import Location, ObjectStore, StoreLock
from engram.storage.memory_rows import _FTS_COLUMN, TABLE_NAME
from engram.storage.passages import PassageTable
from engram.storage.presence import StorePresence

logger = logging.getLogger(__name__)

#: `optimize` compacts into fragments of up to a million rows, so below that it rewrites the whole table (0.4-1.1 s
#: of CPU at 100,000 rows; README "Writes, durability and upkeep").
#: Past this many rows upkeep builds an ANN index on the vectors (IVF_HNSW_SQ); below it an exact scan of one user's
#: rows is fast enough and exact. Query-time settings: recall@10 against exact search >= 0.95 (benchmarks/ann.py).
VECTOR_INDEX_MIN_ROWS = 50_000


@dataclass(frozen=True)
class StoreHealth:
    """The state of the table that upkeep acts on."""

    rows: int
    fragments: int
    unindexed_rows: int
    versions: int
    data_files: int
    #: What LanceDB's caches of the store's connection hold (bounded by lance_support's cache sizes).
    cache_bytes: int = 0


class TableUpkeep:
    """The upkeep half of the long-term store: what keeps its table compact, indexed and free of old versions."""

    _directory: Location
    _upkeep_lock: StoreLock
    _readers: ReadersWriterLock

    @property
    def _table(self) -> Any:
        """The memories table (the store opens it)."""
        raise NotImplementedError

    @property
    def _db(self) -> Any:
        """The store's LanceDB connection (the store opens it)."""
        raise NotImplementedError

    @property
    def _passages(self) -> PassageTable:
        """The passages table (the store opens it)."""
        raise NotImplementedError

    @staticmethod
    def _ensure_indexes(table: Any, rebuild: bool = False) -> None:
        """Create the scalar and full-text indexes a fresh or older table lacks.

        The id index makes the conditional insert and look-ups by id cheap; the user index makes every
        per-user prefilter an index probe instead of a scan. Rows added after an index was built are still
        searched (brute force) until compaction folds them in, so the write path never rebuilds an index.
        """
        from lancedb.index import FTS, Bitmap, BTree, LabelList

        wanted: list[tuple[str, Any]] = [
            ("id", BTree()),
            ("user_id", Bitmap()),
            ("agent_id", Bitmap()),
            ("tags", LabelList()),
            (_FTS_COLUMN, FTS(stem=True, remove_stop_words=True, ascii_folding=True)),
        ]
        ensure_indexes(table, wanted, rebuild)

    @property
    def _table_dir(self) -> Path:
        # Only local stores have a directory to fsync and count files in (absorb runs with the local journal).
        assert isinstance(self._directory, Path), "a store on object storage has no local table directory"
        return self._directory / f"{TABLE_NAME}.lance"

    def optimize(self) -> None:
        """Compact fragments and fold new rows into the indexes now (old versions are kept for readers)."""
        with self._upkeep_lock:
            self._compact_and_reindex()

    def health(self) -> StoreHealth:
        """What upkeep looks at: fragments, rows outside the indexes, versions and data files."""
        with self._readers.shared():
            table_stats = self._table.stats()
            versions = self._table.list_versions()
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
                rows=int(table_stats["num_rows"]),
                fragments=int(table_stats["fragment_stats"]["num_fragments"]),
                unindexed_rows=unindexed,
                versions=len(versions),
                data_files=self._data_files(versions),
                cache_bytes=cache_bytes(self._db),
            )

    def _data_files(self, versions: list[dict[str, Any]]) -> int:
        if isinstance(self._directory, ObjectStore):
            # From the latest manifest: listing a bucket prefix costs a request per thousand objects.
            latest = max(versions, key=lambda v: v["version"])
            return int(latest["metadata"].get("total_data_files", 0))
        return _count_files(self._table_dir / "data")

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
            self._compact_and_reindex(keep_versions_for)
        finally:
            self._upkeep_lock.release()
        return True

    def _settle_alone(self, presence: StorePresence) -> None:
        """At close: if no other process has the store open, remove every superseded version and its files now.

        Below a million rows each compaction rewrites the table, and its predecessors are kept for other processes'
        readers for the retention margin: after 10,000 single writes they held 109 MB for 17 MB of rows. With no
        other process left, no reader can be on them. A process opening the store meanwhile waits for this.
        """
        try:
            if presence.alone() and self._upkeep_lock.acquire(blocking=False):
                try:
                    # No compaction here (the next upkeep does it): a stdio client gives a server 2 s to exit.
                    remove_superseded_versions(self._table)
                    self._passages.remove_superseded_versions()
                finally:
                    self._upkeep_lock.release()
        except Exception:  # clean-up is an optimisation: the next upkeep removes them by age instead
            logger.exception("could not remove the table's superseded versions at close")
        finally:
            presence.leave()

    def _compact_and_reindex(self, keep_versions_for: timedelta | None = None) -> None:
        """Compact both tables, fold new rows into their indexes and, with `keep_versions_for`, remove the versions
        superseded more than that long ago; build the vector index once the table is large enough."""
        started = time.perf_counter()
        stats = optimize_table(self._table, keep_versions_for)
        compacted = time.perf_counter()
        self._ensure_vector_index()
        self._passages.compact(keep_versions_for)
        # Timed per part, so a memory or CPU sampler beside the server can tell which part a jump belongs to.
        logger.debug(
            "upkeep: memories table %.3f s (fragments %s rewritten into %s), passages %.3f s",
            compacted - started,
            getattr(getattr(stats, "compaction", None), "fragments_removed", "?"),
            getattr(getattr(stats, "compaction", None), "fragments_added", "?"),
            time.perf_counter() - compacted,
        )

    def _has_vector_index(self) -> bool:
        return any(index.columns == ["vector"] for index in self._table.list_indices())

    def _ensure_vector_index(self, rebuild: bool = False) -> None:
        if self._table.count_rows() < VECTOR_INDEX_MIN_ROWS or (self._has_vector_index() and not rebuild):
            return
        from lancedb.index import HnswSq

        logger.info("building the vector index (%d rows)", self._table.count_rows())
        retry_on_conflict(
            lambda: self._table.create_index("vector", config=HnswSq(distance_type="cosine"), replace=True)
        )

    def _rebuild_indexes(self) -> None:
        """Rebuild every index from the live rows, after an erasure (the vector index holds quantised vectors)."""
        self._ensure_indexes(self._table, rebuild=True)
        if self._has_vector_index():
            if self._table.count_rows() < VECTOR_INDEX_MIN_ROWS:
                for name in [i.name for i in self._table.list_indices() if i.columns == ["vector"]]:
                    retry_on_conflict(partial(self._table.drop_index, name))
            else:
                self._ensure_vector_index(rebuild=True)
