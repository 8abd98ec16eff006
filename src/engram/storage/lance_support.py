"""What every LanceDB store of Engram shares: opening a table checked against the embedding model, commit and
read retries across processes, and the locks that keep writers and erasures apart."""

from __future__ import annotations

import itertools
import logging
import os
import random

try:
    import fcntl
except ImportError:  # Windows: no cross-process lock; commits then rely on conflict retries
    fcntl = None  # type: ignore[assignment]
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from engram.core.errors import EmbeddingModelMismatch, ErasureBlocked
from engram.storage.location import Location, ObjectStore, location_bytes, location_holding

if TYPE_CHECKING:
    import pyarrow as pa

logger = logging.getLogger(__name__)

T = TypeVar("T")
META_MODEL = b"engram.embedding_model"
#: LanceDB's index and metadata caches default to gigabytes and keep an entry per table version and index
#: generation: under single writes they fill with superseded ones (5 MB more per 1,000 writes, 2,300 entries, with
#: upkeep after every 50 commits), so their bound is what they add to the server (README, "Memory under a stream
#: of writes"). What searches use is far less: 60 recalls over 10 users of a 10,000-memory table touched 2.9 MB,
#: and recalls answered by the in-memory recall index (the default) do not use them at all. At 24 + 4 MB the server
#: held 40 MB more after 10,000 single writes than at these bounds, for the same CPU.
INDEX_CACHE_BYTES = 8 << 20
METADATA_CACHE_BYTES = 2 << 20
#: Lance runs each read it has in flight on a blocking thread of its own, and the pool keeps such threads while reads
#: keep coming: under a stream of single writes the server held 100-140 of them (about 0.5 MB of stack each) at
#: Lance's default and 42 at this bound (README, "Memory under a stream of writes"). An operator's own
#: `LANCE_IO_THREADS` wins.
IO_THREADS = 4
_READ_ATTEMPTS = 4
_COMMIT_ATTEMPTS = 10
#: Each connection's caches (LanceDB's connection does not give its session back).
_SESSIONS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def connect(directory: Location) -> Any:
    """Open a LanceDB database whose reads see other processes' commits, with Engram's bounded caches; a local
    directory is created first, a store on object storage gets its S3 options."""
    # Read when Lance first does I/O in this process, so before any store of it is opened.
    os.environ.setdefault("LANCE_IO_THREADS", str(IO_THREADS))
    import lancedb

    # One session per store, not per process: a store reopened after damage must read the disk, not a cache.
    session = lancedb.Session(index_cache_size_bytes=INDEX_CACHE_BYTES, metadata_cache_size_bytes=METADATA_CACHE_BYTES)
    # Several servers may share a data directory (Claude Desktop and an IDE each launch one): every read
    # must see the other processes' commits, or inserts duplicate and deletes miss rows.
    if isinstance(directory, ObjectStore):
        db = lancedb.connect(
            directory.uri,
            read_consistency_interval=timedelta(0),
            session=session,
            storage_options=directory.storage_options,
        )
    else:
        directory.mkdir(parents=True, exist_ok=True)
        db = lancedb.connect(str(directory), read_consistency_interval=timedelta(0), session=session)
    _SESSIONS[db] = session
    return db


def cache_bytes(db: Any) -> int:
    """What LanceDB's index and metadata caches of a connection made by `connect` hold now, in bytes."""
    session = _SESSIONS.get(db)
    return 0 if session is None else int(session.size_bytes)


def lance_dataset(table: Any) -> Any:
    """The table's latest version as a Lance dataset (compaction, versions), with bounded caches.

    `Table.to_lance()` opens it with Lance's default caches, which grow with every version it has seen.
    """
    import lance

    if "://" in str(table.uri):
        # On object storage the connection's S3 options are needed, which only the table's own handle carries.
        return table.to_lance()
    return lance.dataset(
        table.uri,
        index_cache_size_bytes=INDEX_CACHE_BYTES,
        metadata_cache_size_bytes=METADATA_CACHE_BYTES,
    )


#: Commits that rewrite files or indexes without changing any row: an in-memory copy stays valid across them.
_ROWS_UNCHANGED = frozenset({"Rewrite", "CreateIndex"})


def rows_unchanged(table: Any, known: int, versions: list[int]) -> bool:
    """Whether the commits of `table` at these versions (after `known`) left every row as it was."""
    try:
        dataset = lance_dataset(table)
        newest = int(dataset.version)
        operations = {
            newest - i: None if t is None else type(t.operation).__name__
            for i, t in enumerate(dataset.get_transactions(newest - known))
        }
        files = {int(v["version"]): v["metadata"] for v in dataset.versions()}
    except Exception:  # an unreadable log is a change as far as the index knows
        logger.debug("could not read the table's transactions; dropping the in-memory index", exc_info=True)
        return False

    def unchanged(version: int) -> bool:
        if operations.get(version) in _ROWS_UNCHANGED:
            return True
        # Operations pylance does not name (compaction reserving fragment ids) are harmless when they wrote no
        # file: any row added, changed or deleted shows in the version's data or deletion file counts.
        stats, before = files.get(version), files.get(version - 1)
        return operations.get(version) == "BaseOperation" and stats is not None and stats == before

    return all(unchanged(v) for v in versions)


#: Upkeep goes through LanceDB's own `optimize` (compaction, version clean-up, index upkeep), never through the
#: second Lance engine (`pylance`): loading it cost the server ~100 MB of resident code and ~20 threads for good.
#: `optimize` removes versions by their own age, measured after its compaction, not by how long ago they were
#: superseded: the age it is given leaves the first version to keep this much out of reach for that compaction.
_PRUNE_ALLOWANCE = timedelta(seconds=30)
#: What `optimize` is given when no version is to be removed (it always removes some by age).
KEEP_ALL_VERSIONS = timedelta(days=365 * 100)


def optimize_table(table: Any, keep_versions_for: timedelta | None = None) -> Any:
    """Compact the table's fragments and fold new rows into its indexes; with `keep_versions_for`, also remove the
    versions superseded more than that long ago (never the latest). Returns LanceDB's statistics of the run.

    Below a million rows `optimize` rewrites every fragment that its previous run left indexed together with the new
    ones, so each run rewrites the whole table: at 10,000 memories ~30 MB of transient memory, at 30,000 ~60 MB (the
    server's peak; README, "Memory under a stream of writes"). Its compaction takes no fragment size.
    """
    older_than = KEEP_ALL_VERSIONS if keep_versions_for is None else _prune_age(table, keep_versions_for)
    try:
        # The synchronous `optimize` drops the statistics (what was rewritten): the same call on the table's async
        # handle, through LanceDB's own event loop, returns them. Both are LanceDB internals: without them, upkeep
        # still runs through the public call.
        from lancedb.background_loop import LOOP

        optimize_async = table._table.optimize
    except (ImportError, AttributeError):
        return retry_on_conflict(lambda: table.optimize(cleanup_older_than=older_than))
    return retry_on_conflict(lambda: LOOP.run(optimize_async(cleanup_older_than=older_than)))  # type: ignore[no-untyped-call]


def remove_superseded_versions(table: Any) -> None:
    """Remove every version of the table but the latest, and every file no version needs, without compacting (no
    reader may be on an older version: the caller knows no other process has the store open).

    Through pylance: LanceDB's `optimize` removes versions only after a compaction, which below a million rows
    writes a whole new copy of the table and needs a second pass to remove the one it replaced (~1 s each at 10,000
    memories on a busy machine, past the 2 s a stdio client gives a server to exit). Loaded at close, pylance costs
    no resident memory that matters.
    """
    lance_dataset(table).cleanup_old_versions(older_than=timedelta(0), delete_unverified=True)


def _prune_age(table: Any, keep_versions_for: timedelta) -> timedelta:
    """The age past which `optimize` may remove versions, so that only those superseded more than
    `keep_versions_for` ago go.

    A version stays while a reader of another process may still be on it: until its successor has been there for
    the whole margin. Every version older than the first one still within the margin may go; the latest one (which
    the compaction is about to supersede) at most.
    """
    now = datetime.now(UTC)
    cutoff = now - keep_versions_for
    # LanceDB reports local wall-clock time without a zone; astimezone reads a naive time as local.
    stamps: list[datetime] = [
        v["timestamp"].astimezone(UTC) for v in sorted(table.list_versions(), key=lambda v: v["version"])
    ]
    first_kept = next((older for older, newer in itertools.pairwise(stamps) if newer >= cutoff), stamps[-1])
    if first_kept == stamps[0]:
        return KEEP_ALL_VERSIONS
    # `optimize` measures the age after its compaction: the allowance keeps the first kept version out of reach for
    # that long (no allowance is needed when no margin is asked for).
    age: timedelta = now - first_kept + min(keep_versions_for, _PRUNE_ALLOWANCE)
    return max(age, timedelta(milliseconds=1))  # zero would make LanceDB warn about concurrent readers


def open_checked_table(db: Any, name: str, schema: pa.Schema, directory: Location, what: str) -> tuple[Any, bool]:
    """Open table `name`, or create it with `schema`; return it and whether it was created.

    Raises EmbeddingModelMismatch when the stored table was built with another model or dimension than `schema`
    says (`what` names the store in the message).
    """
    try:
        table = db.open_table(name)
    except ValueError:
        logger.info("creating the %s table in %s", what, directory)
        return retry_on_conflict(lambda: db.create_table(name, schema=schema, exist_ok=True)), True
    stored = table.schema
    stored_model = (stored.metadata or {}).get(META_MODEL, b"").decode()
    stored_dims = stored.field("vector").type.list_size
    model_id = (schema.metadata or {}).get(META_MODEL, b"").decode()
    dimensions = schema.field("vector").type.list_size
    if stored_model != model_id or stored_dims != dimensions:
        raise EmbeddingModelMismatch(
            f"The {what} in {directory} was built with embedding model '{stored_model}' ({stored_dims} "
            f"dimensions), but '{model_id}' ({dimensions} dimensions) is configured. Set ENGRAM_EMBEDDING_MODEL "
            "back to the original model, or point ENGRAM_DATA_DIR at a new directory."
        )
    return table, False


def _retrying(
    action: Callable[[], T], attempts: int, retryable: Callable[[str], bool], pause: float, note: str | None = None
) -> T:
    """Run `action`, retrying up to `attempts` times while its error is `retryable`, pausing longer each time."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as exc:
            if attempt == attempts or not retryable(str(exc).lower()):
                raise
            if note:
                logger.info(note)
            # Jitter spreads out servers that collided at the same moment (most often at a shared start-up).
            time.sleep(random.uniform(0.2, 1.0) * pause * attempt)
    raise AssertionError("unreachable")


def ensure_indexes(table: Any, wanted: list[tuple[str, Any]], rebuild: bool = False) -> None:
    """Create each (column, index config) in `wanted` that `table` lacks, or rebuild them all with `rebuild`."""
    for column, config in wanted:

        def create(column: str = column, config: Any = config) -> None:
            # Checked on every attempt: another server starting at the same moment may have just built it.
            indexed = {c for index in table.list_indices() for c in index.columns}
            if rebuild or column not in indexed:
                table.create_index(column, config=config, replace=True)

        retry_on_conflict(create)


def erase_rows(
    table: Any, where: str, directory: Location, what: str, rebuild_indexes: Callable[[], None], *, clean: bool = False
) -> int:
    """Delete the rows matching `where` and every trace of them on disk; return how many were deleted.

    A LanceDB delete only hides rows: the data files, older table versions (with the delete's own filter text)
    and the indexes keep them. So the deleted rows are compacted out of their fragments, `rebuild_indexes`
    rebuilds every index from the live rows, and all older versions are removed (also when nothing matched if
    `clean`, so that a check for leftovers, which counts versions, can pass). The caller holds the locks that
    keep writers, readers and upkeep out meanwhile.
    """
    if table.tags.list():
        raise ErasureBlocked(
            f"The {what} table in {directory} has version tags ({', '.join(sorted(table.tags.list()))}); tagged "
            "versions would keep erased data. Delete the tags (lancedb Table.tags.delete) and try again; nothing "
            "was erased."
        )
    # A delete commits its filter text (the user's key) even when it matches nothing: skip it then.
    deleted = int(retry_on_conflict(lambda: table.delete(where)).num_deleted_rows) if table.count_rows(where) else 0
    if deleted:
        retry_on_conflict(
            lambda: lance_dataset(table).optimize.compact_files(
                materialize_deletions=True, materialize_deletions_threshold=0.0
            )
        )
        rebuild_indexes()
    if deleted or clean:
        retry_on_conflict(
            lambda: lance_dataset(table).cleanup_old_versions(older_than=timedelta(0), delete_unverified=True)
        )
    return deleted


def traces(table: Any, where: str, directory: Location, key: str, *, erased_through: int = 0) -> list[str]:
    """What is left on disk of the rows matching `where` and of `key`, named by place and never by content.

    A trace is a live row, a table version that still holds matching rows or that an erasure ending at version
    `erased_through` should have removed, or a file under `directory` containing `key`. Versions that other
    servers committed after the erasure and that hold no matching row are not traces: they keep other users' data.
    """
    found: list[str] = []
    rows = int(read_retrying(lambda: table.count_rows(where)))
    if rows:
        found.append(f"{rows} row{'s' if rows != 1 else ''} in the table")
    latest = lance_dataset(table)
    for entry in read_retrying(latest.versions):
        version = int(entry["version"])
        if version >= latest.version:
            continue
        try:
            stale = version < erased_through or bool(latest.checkout_version(version).count_rows(filter=where))
        except OSError:  # removed meanwhile by another server's clean-up
            continue
        if stale:
            found.append(f"table version {version}")
    found += [f"the file {name}" for name in location_holding(directory, key)]
    return found


def directory_bytes(directory: Location) -> int:
    """Size of the files under `directory` (or of the objects under its prefix)."""
    return location_bytes(directory)


def retry_on_conflict(action: Callable[[], T]) -> T:
    """Run a table commit, retrying when another process committed first (bounded)."""
    return _retrying(action, _COMMIT_ATTEMPTS, lambda message: "conflict" in message, 0.05)


def read_retrying(read: Callable[[], T]) -> T:
    """Run a read, retrying when another server's erasure clean-up removed a file the read had planned to open."""
    vanished = ("not found", "no such file", "does not exist")
    return _retrying(
        read,
        _READ_ATTEMPTS,
        lambda message: any(v in message for v in vanished),
        0.1,
        "a read raced another process's clean-up; retrying",
    )


class FileLock:
    """An exclusive advisory lock on a file, held across processes (a no-op where fcntl is missing).

    Not re-entrant; a thread lock in front of it keeps two threads of one process from queueing on the flock.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._handle: Any = None
        self._threads = threading.Lock()

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock; without `blocking`, return False at once if anyone (any process) holds it."""
        if not self._threads.acquire(blocking=blocking):
            return False
        handle = open(self._path, "a+b")  # noqa: SIM115 (held until release())
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                self._threads.release()
                return False
        self._handle = handle
        return True

    def release(self) -> None:
        """Give the lock back."""
        handle, self._handle = self._handle, None
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()
        self._threads.release()

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class ReadersWriterLock:
    """Many concurrent readers, or one writer: erasure removes files that a running query may be reading."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._readers = 0
        self._writing = False

    @contextmanager
    def shared(self) -> Iterator[None]:
        """Hold the lock as one of many readers."""
        with self._condition:
            self._condition.wait_for(lambda: not self._writing)
            self._readers += 1
        try:
            yield
        finally:
            with self._condition:
                self._readers -= 1
                self._condition.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the lock alone, once every reader has left."""
        with self._condition:
            self._condition.wait_for(lambda: not self._writing)
            self._writing = True
            self._condition.wait_for(lambda: self._readers == 0)
        try:
            yield
        finally:
            with self._condition:
                self._writing = False
                self._condition.notify_all()


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
