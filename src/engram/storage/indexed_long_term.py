"""Long-term memory searched from a per-user in-memory index, kept coherent with the LanceDB table by its version.

Each user's rows are loaded into a `UserIndex` at their first search and kept within a byte cap (least recently
searched users go first). The index always answers for one table version: this process's own writes are applied to
it as they commit (their versions are known); any other version change, found by reading the table's version
before every search (another server or the CLI wrote, or erased), is looked up in LanceDB's transaction log: a
compaction or index rebuild leaves the rows alone and keeps the index, anything else drops every user's index,
so a memory forgotten anywhere is never found here again. Searches with a filter the index lacks, and users too
large for the cap, go to LanceDB as before.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from engram.core.filters import MemoryFilters
from engram.core.models import Memory
from engram.core.ports import Candidate, Vectors
from engram.storage.deferred_open import latest_version
from engram.storage.filters import memory_filter
from engram.storage.lance_support import read_retrying, rows_unchanged
from engram.storage.location import Location
from engram.storage.long_term import LanceLongTermStore
from engram.storage.memory_rows import _COLUMNS, TABLE_NAME
from engram.storage.no_rows import holds_no_rows
from engram.storage.own_upkeep import UpkeepWindow
from engram.storage.passages import TABLE_NAME as PASSAGES_TABLE
from engram.storage.passages import PassageMatch, PassageTable
from engram.storage.presence import StorePresence
from engram.storage.recall_index import _ROW_OVERHEAD, UserIndex
from engram.storage.recall_snapshot import FOLDER, erase_snapshots, load_snapshot, save_snapshot

if TYPE_CHECKING:
    import pyarrow as pa

logger = logging.getLogger(__name__)

#: After another process changed rows, searches go to LanceDB until this long has passed without another change.
_RELOAD_BACKOFF_S = 2.0
#: At most this many rows of indexes are saved at close (~16 ms of CPU per 1,000 rows, measured).
_SNAPSHOT_ROWS = 20_000
#: How old the versions folder's modification time must be before it alone may say that nothing was committed.
_SETTLED_NS = 2_000_000_000


def _vectors(rows: pa.Table | pa.RecordBatch) -> npt.NDArray[np.float32]:
    """The vector column of an Arrow table or batch as a float32 matrix."""
    import pyarrow as pa

    column = rows.column("vector")
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return np.asarray(column.flatten(), dtype=np.float32).reshape(rows.num_rows, -1)


class RecallIndex:
    """The loaded users' indexes (least recently searched first), the table version they answer for, the cap."""

    def __init__(self, cap_bytes: int) -> None:
        self.cap_bytes = cap_bytes
        self.lock = threading.RLock()
        self.version: int | None = None
        self.users: OrderedDict[str, UserIndex] = OrderedDict()
        self.own: set[int] = set()  # versions this process committed and already applied
        self.oversized: set[str] = set()

    def reset(self, version: int | None) -> None:
        """Drop every user's index; the index now answers for `version`."""
        self.users.clear()
        self.oversized.clear()
        self.own.clear()
        self.version = version

    def get(self, user_id: str) -> UserIndex | None:
        """The user's index if loaded, marked as the most recently used."""
        found = self.users.get(user_id)
        if found is not None:
            self.users.move_to_end(user_id)
        return found

    def put(self, user_id: str, index: UserIndex) -> None:
        """Keep the user's index, evicting the least recently searched users to stay within the cap."""
        self.users[user_id] = index
        self.fit()

    def fit(self) -> None:
        """Evict least recently searched users until the indexes fit the cap."""
        total = sum(u.nbytes for u in self.users.values())
        while total > self.cap_bytes and self.users:
            _, evicted = self.users.popitem(last=False)
            total -= evicted.nbytes

    @property
    def nbytes(self) -> int:
        """What the loaded indexes hold, roughly."""
        return sum(u.nbytes for u in self.users.values())


class IndexedLongTermStore(LanceLongTermStore):
    """LanceLongTermStore whose vector and keyword searches are answered from a per-user in-memory index."""

    def __init__(
        self,
        directory: Location,
        *,
        dimensions: int,
        model_id: str,
        index_bytes: int,
        reload_backoff_s: float = _RELOAD_BACKOFF_S,
    ) -> None:
        # Long memories' passages are held beside the memories, within the same cap (their own LRU), once opened.
        self._passages_cap = index_bytes
        super().__init__(directory, dimensions=dimensions, model_id=model_id)
        self._reload_backoff_s = reload_backoff_s
        self._busy_until = 0.0
        self._upkeep_window: UpkeepWindow | None = None  # this process's upkeep, while it runs
        self._dimensions = dimensions
        self._model_id = model_id
        # Users' indexes saved at close, read at their first search while the table is at the version they answer for.
        self._snapshots = directory / FOLDER if isinstance(directory, Path) else None
        self.snapshot_loaded: dict[str, int] = {}  # user -> the version their snapshot answered for when read
        # What one row costs in the index, for deciding before loading: the vector plus the memory's values.
        self._row_bytes = 4 * dimensions + _ROW_OVERHEAD + 300
        self.recall_index = RecallIndex(index_bytes)
        self._versions_folder = directory / f"{TABLE_NAME}.lance" / "_versions" if isinstance(directory, Path) else None
        self._settled: tuple[int, bool] = (0, False)
        self._settled_version = 0

    def _open_engine(self, dimensions: int, model_id: str) -> tuple[Any, Any, PassageTable]:
        db, table, passages = super()._open_engine(dimensions, model_id)
        passages.hold_in_memory(self._passages_cap)
        return db, table, passages

    # -- searches ---------------------------------------------------------------------------------------------

    def vector_search(
        self, user_id: str, vector: Vectors, filters: MemoryFilters, limit: int, *, passages: bool = True
    ) -> list[Candidate]:
        """Up to `limit` of the user's memories matching `filters`, by cosine similarity (the score), best first.

        A long memory scores its best passage; `passages=False` searches the memories' own vectors only."""
        with self.recall_index.lock:
            indexed = self._indexed(user_id, filters)
            found = None if indexed is None else indexed[0].vector_search(vector, indexed[1], limit)
        if found is None or indexed is None:
            return super().vector_search(user_id, vector, filters, limit, passages=passages)
        if not passages:
            return found
        # Passages of long memories live in their own table (held in memory once read; a row count when it is empty).
        with self._readers.shared():
            matches = self._passage_matches(user_id, vector, limit)
        # The memories they point at come from the index, not a LanceDB read; their passage's score replaces -inf.
        known = {c.memory.id for c in found}
        with self.recall_index.lock:
            if self.recall_index.users.get(user_id) is not indexed[0]:
                return self._with_passages(user_id, found, matches, filters, limit)  # dropped meanwhile: LanceDB
            found += indexed[0].admitted_candidates(
                [m.memory_id for m in matches if m.memory_id not in known], indexed[1], float("-inf")
            )
        return self._with_passages(user_id, found, matches, filters, limit)

    def _passage_matches(self, user_id: str, vector: Vectors, limit: int) -> list[PassageMatch]:
        """The user's best passages; none, without opening LanceDB, while the passages table has never held a row."""
        if not self.opened and holds_no_rows(self._directory, PASSAGES_TABLE):
            return []
        return self._passages.search(user_id, vector, limit)

    def keyword_search(self, user_id: str, text: str, filters: MemoryFilters, limit: int) -> list[Candidate]:
        """Up to `limit` of the user's memories matching `filters`, by BM25 over the index text, best first."""
        with self.recall_index.lock:
            found = self._indexed(user_id, filters)
            if found is not None:
                return found[0].keyword_search(text, found[1], limit)
        return super().keyword_search(user_id, text, filters, limit)

    def _indexed(self, user_id: str, filters: MemoryFilters) -> tuple[UserIndex, Any] | None:
        """The user's index, current with the table, and the slots `filters` admit; None: ask LanceDB."""
        index = self.recall_index
        if index.cap_bytes <= 0:
            return None
        if not self._follow(self._latest_version()):
            return None  # this process's upkeep is committing: its versions are accounted for when it is done
        if time.monotonic() < self._busy_until:
            return None  # another process is writing: its commits would make every load stale at once
        user = index.get(user_id)
        # Only the asking user's rows are read (not every user's in one scan): a server's first recall, or the first
        # after another process changed rows, pays for its own user alone (~0.1 CPU-s per 1,000 rows).
        if user is None:
            if user_id in index.oversized:
                return None
            user = self._load(user_id)
            if user is None:
                return None
        admitted = user.mask(filters)
        return None if admitted is None else (user, admitted)

    def _latest_version(self) -> int:
        """The table's latest version. Asking LanceDB costs ~0.2 ms of CPU and a hop to its event loop; a local
        table's versions folder answers for ~5 us when its modification time shows no commit since the last ask."""
        folder = self._versions_folder
        stamp = None
        if folder is not None:
            try:
                stamp = os.stat(folder).st_mtime_ns
            except OSError:
                stamp = None
            if stamp is not None and self._settled == (stamp, True):
                return self._settled_version
        # Before LanceDB is opened, the manifests' names say the same (storage/deferred_open.py).
        unopened = None if self.opened or folder is None else latest_version(folder.parent)
        version = int(self._table.version) if unopened is None else unopened
        if stamp is not None:
            # File times are coarse (a commit in the same clock tick may leave the time as it was): a time is trusted
            # only if it was already old when the version was read, so any later commit must move it.
            self._settled = (stamp, time.time_ns() - stamp > _SETTLED_NS)
            self._settled_version = version
        return version

    def _follow(self, latest: int) -> bool:
        """Make the index answer for table version `latest`: keep it if no row changed since, else drop it; False
        (index untouched) while this process's upkeep is committing versions not accounted for yet."""
        index = self.recall_index
        known = index.version
        if known == latest:
            return True
        if known is None or latest < known:
            index.reset(latest)
            return True
        others = [v for v in range(known + 1, latest + 1) if v not in index.own]
        window = self._upkeep_window
        if others and window is not None and min(others) > window.start:
            return False
        if others and (not index.users or not self._rows_unchanged(known, others)):
            index.reset(latest)
            # Several servers writing one directory (replicas, the CLI) would otherwise reload every user at each
            # other's commits: LanceDB answers until the others have been quiet for a moment.
            self._busy_until = time.monotonic() + self._reload_backoff_s
            return True
        index.version = latest
        index.own = {v for v in index.own if v > latest}
        return True

    def _compact_and_reindex(self, keep_versions_for: timedelta | None = None) -> None:
        # This process's compaction and index commits keep every row: counted as its own when the row count shows
        # that nobody else changed rows meanwhile (engram.storage.own_upkeep), so no search reads their log.
        with self.recall_index.lock:
            window = self._upkeep_window = UpkeepWindow(self._table)
        try:
            super()._compact_and_reindex(keep_versions_for)
        finally:
            end = int(self._table.version)
            with self.recall_index.lock:
                self._upkeep_window = None
                if window.unchanged_through(self._table, end):
                    self.recall_index.own.update(range(window.start + 1, end + 1))

    def _rows_unchanged(self, known: int, versions: list[int]) -> bool:
        """Whether the commits of these versions (another process's) left every row as it was."""
        return rows_unchanged(self._table, known, versions)

    def _load(self, user_id: str) -> UserIndex | None:
        """Read the user's rows into a new index (None, and remembered, when it would not fit the cap)."""
        index = self.recall_index
        if self._snapshots is not None and index.version is not None:
            saved = load_snapshot(
                self._snapshots, user_id, index.version, self._dimensions, self._model_id, self._table_dir
            )
            if saved is not None and saved.live * self._row_bytes <= index.cap_bytes:
                index.put(user_id, saved)
                self.snapshot_loaded[user_id] = index.version
                return saved
        query = (
            self._table.search()
            .where(memory_filter(user_id))
            .select([*_COLUMNS, "entity_keys", "index_text", "vector"])
            .limit(None)
        )
        with self._readers.shared():
            table = read_retrying(query.to_arrow)
        if table.num_rows * self._row_bytes > index.cap_bytes:
            index.oversized.add(user_id)
            return None
        user = UserIndex(self._dimensions)
        if table.num_rows:
            user.add(table.drop_columns(["vector"]).to_pydict(), _vectors(table))
        index.put(user_id, user)
        return user

    # -- this process's commits: applied to the loaded indexes as they happen -------------------------------------

    # Lock order: the store's write locks, then the index lock (searches take the index lock, then the readers'
    # lock; erasure takes the store's locks and the index lock only after them). So a recall never waits for
    # another process's write lock, only for this process's commit itself.

    def _insert_locked(self, rows: list[dict[str, Any]]) -> Any:
        # Under the index lock from before the commit until the index has it: no search sees the table ahead.
        with self.recall_index.lock:
            result = super()._insert_locked(rows)
            index = self.recall_index
            version = getattr(result, "version", None)
            if version is None:  # no version to account for: let the next search check the table
                index.reset(None)
                return result
            by_user: dict[str, list[dict[str, Any]]] = {}
            for row in rows:
                by_user.setdefault(row["user_id"], []).append(row)
            for user_id, mine in by_user.items():
                user = index.users.get(user_id)
                if user is not None:
                    # Rows already held were not inserted (the insert is conditional on the id).
                    user.add_rows(mine)
            index.own.add(int(version))
            if self._upkeep_window is not None:
                self._upkeep_window.added(int(version), int(getattr(result, "num_inserted_rows", -1)))
            index.fit()
            return result

    def replace(
        self, user_id: str, old_id: str, memory: Memory, index_text: str | None = None, vector: Vectors | None = None
    ) -> bool:
        """See LanceLongTermStore.replace; the indexes are dropped (rare: corrections and supersession)."""
        try:
            return super().replace(user_id, old_id, memory, index_text, vector)
        finally:
            with self.recall_index.lock:
                self.recall_index.reset(None)
            if self._snapshots is not None:
                erase_snapshots(self._snapshots)  # stale now, and holding the replaced content

    def _erase(self, where: str, clean: bool = False) -> int:
        # Every loaded index is dropped with the rows, before the erasure returns. A search meanwhile sees the
        # table's new version (its log says rows were deleted) and drops them too.
        try:
            return super()._erase(where, clean)
        finally:
            with self.recall_index.lock:
                self.recall_index.reset(None)
            if self._snapshots is not None:
                # Every snapshot is stale after the erasure's commit, and one may hold what was erased.
                erase_snapshots(self._snapshots)

    def _save_snapshots(self) -> None:
        """Write a snapshot of each loaded user's index if it answers for the table's latest version."""
        assert self._snapshots is not None
        index = self.recall_index
        # Under the write lock, which every erasure holds while it commits: a snapshot is either written before an
        # erasure (which then removes it) or finds the table at the erasure's version and is not written.
        with self._process_lock, index.lock:
            latest = int(self._table.version)
            if index.version is None or not index.users or not self._follow(latest) or index.version != latest:
                return
            budget = _SNAPSHOT_ROWS
            # Most recently searched first, and a bounded total: a stdio client gives a closing server 2 s to exit.
            for user_id, user in reversed(index.users.items()):
                budget -= user.size
                if budget < 0:
                    break
                if self.snapshot_loaded.get(user_id) != latest:  # else the file on disk says the same already
                    save_snapshot(self._snapshots, user_id, latest, self._model_id, user, self._table_dir)

    def _settle_alone(self, presence: StorePresence) -> None:
        # After the clean-up of superseded versions, whose files the snapshot's list of data files must not name.
        try:
            super()._settle_alone(presence)
        finally:
            if self._snapshots is not None and self.opened and self._table is not None:
                try:
                    self._save_snapshots()
                except Exception:  # an optimisation only: the next start reads the table instead
                    logger.exception("could not save the recall index snapshots")

    def close(self) -> None:
        """Save the loaded users' indexes for the next start (at the clean-up), drop them and release the table."""
        try:
            super().close()
        finally:
            with self.recall_index.lock:
                self.recall_index.reset(None)
