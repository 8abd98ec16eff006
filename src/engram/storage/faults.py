"""Engine errors told apart and named: a damaged file of a tier, or a disk that refused (full, read-only, ...).

LanceDB, SQLite and the operating system each report the same few faults in their own words. Here they become
Engram's TierDamaged and StorageFailure, naming the tier and the file, so a caller learns what failed and what to
do instead of a bare "Error executing tool". Stores are wrapped at the composition root by their port's decorator
(`storage/guarded.py`), so that every port method is covered without touching each store.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from engram.core.errors import EngramError, StorageFailure, TierDamaged
from engram.core.health import TierHealth

logger = logging.getLogger(__name__)

T = TypeVar("T")
S = TypeVar("S")

_ERRNO_KINDS = {
    errno.ENOSPC: "disk_full",
    errno.EDQUOT: "disk_full",
    errno.EROFS: "read_only",
    errno.EACCES: "permission",
    errno.EPERM: "permission",
    errno.EIO: "io_error",
}
#: How LanceDB (Rust) and SQLite spell the same faults in their messages, lower-cased.
_MESSAGE_KINDS = (
    ("no space left on device", "disk_full"),
    ("database or disk is full", "disk_full"),
    ("disk quota exceeded", "disk_full"),
    ("read-only file system", "read_only"),
    ("attempt to write a readonly database", "read_only"),
    ("permission denied", "permission"),
    ("operation not permitted", "permission"),
    ("disk i/o error", "io_error"),
    ("input/output error", "io_error"),
)
#: Signs that a file's content is wrong or a file the table lists is gone: the store's files are damaged.
_DAMAGE_SIGNS = (
    "file is not a database",
    "database disk image is malformed",
    "failed to fill whole buffer",
    "not found",
    "no such file",
    "corrupt",
    "unexpected eof",
    "invalid protobuf",
    "invalid data",
    "bad magic",
    "not a lance file",
)
#: Messages that say an open or a write failed without saying why: the file system itself is asked.
_UNSPECIFIC = ("unable to open database file", "disk i/o error", "lanceerror(io)")
_PATH = re.compile(r"(/[^\s,'\"()]+)")


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and the errors it was raised from or while handling (a failed rollback hides the real cause)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _named_file(message: str, directory: Path) -> str:
    """The file under `directory` that an engine's message names, else the directory itself."""
    root = str(directory)
    for found in _PATH.findall(message):
        if str(found).startswith(root):
            return str(found).rstrip(".:")
    return root


def _probe(directory: Path) -> str | None:
    """What keeps the file system under `directory` from taking writes right now (read-only, full), if anything."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        state = os.statvfs(existing)
    except OSError:
        return None
    if state.f_flag & os.ST_RDONLY:
        return "read_only"
    if state.f_bavail == 0:
        return "disk_full"
    if not os.access(existing, os.W_OK):
        return "permission"
    return None


def classify(exc: BaseException, tier: str, directory: Path) -> EngramError | None:
    """The Engram error that `exc` (raised by a store of `tier` in `directory`) stands for, or None if unknown."""
    chain = _chain(exc)
    for error in chain:
        if isinstance(error, OSError) and error.errno in _ERRNO_KINDS:
            where = str(error.filename) if isinstance(error.filename, str) else str(directory)
            return StorageFailure(_ERRNO_KINDS[error.errno], tier, where)
    messages = [str(error) for error in chain if isinstance(error, (OSError, RuntimeError, ValueError, sqlite3.Error))]
    for message in messages:
        lowered = message.lower()
        for sign, kind in _MESSAGE_KINDS:
            if sign in lowered:
                return StorageFailure(kind, tier, _named_file(message, directory))
    if any(sign in message.lower() for message in messages for sign in _UNSPECIFIC):
        refusal = _probe(directory)
        if refusal is not None:
            return StorageFailure(refusal, tier, _named_file(messages[0], directory))
    for message in messages:
        lowered = message.lower()
        engine_error = "lance" in lowered or any(isinstance(e, sqlite3.DatabaseError) for e in chain)
        # Only the engines' own reports count: a plain missing file is more often a race with a clean-up.
        if engine_error and any(s in lowered for s in _DAMAGE_SIGNS):
            detail = "a file is missing" if "not found" in lowered or "no such file" in lowered else "unreadable data"
            return TierDamaged(tier, _named_file(message, directory), detail)
    return None


def translated(call: Callable[[], T], tier: str, directory: Path, health: TierHealth | None = None) -> T:
    """Run `call`; an engine error it raises that `classify` recognises is raised as Engram's own (and logged)."""
    try:
        return call()
    except EngramError:
        raise
    except Exception as exc:
        fault = classify(exc, tier, directory)
        if fault is None:
            raise
        if isinstance(fault, TierDamaged) and health is not None:
            health.record(fault)
        # One line for the operator; the engine's own words are kept for diagnosis.
        logger.error("%s (engine error: %s: %s)", fault, type(exc).__name__, str(exc)[:300])
        raise fault from exc


class DamagedStore:
    """Stands in for a tier whose files could not even be opened: every use raises the damage found at opening."""

    def __init__(self, error: TierDamaged) -> None:
        self._error = error

    def close(self) -> None:
        """Nothing was opened."""

    def bytes_on_disk(self) -> int:
        """Unknown for a store that cannot be opened."""
        raise self._error

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        error = self._error

        def refuse(*_: Any, **__: Any) -> Any:
            raise error

        return refuse


def open_tier(
    opener: Callable[[], S],
    guard: Callable[[S, str, Path, TierHealth], Any],
    tier: str,
    directory: Path,
    health: TierHealth,
) -> Any:
    """Open a tier's store behind `guard` (its port's decorator in `storage/guarded.py`); a damaged one becomes a
    DamagedStore (and is recorded).

    Other faults at opening (a full or read-only disk, a model mismatch) still stop the start: they concern the
    whole data directory, not one tier.
    """
    try:
        store = translated(opener, tier, directory, health)
    except TierDamaged as error:
        return DamagedStore(error)
    return guard(store, tier, directory, health)
