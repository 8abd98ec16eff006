"""Which processes have a local store open: a shared flock each, so the last one to close can tell it is alone."""

from __future__ import annotations

import os
import weakref
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Linux or macOS
    fcntl = None  # type: ignore[assignment]


class StorePresence:
    """A shared advisory lock held while a store is open in this process (one per open store object).

    Removing a table's superseded versions at once is only safe when no other process may be reading one of them
    (README, "Writes, durability and upkeep"): the process that can turn its shared lock into an exclusive one is the
    only one with the store open, and a process opening the store meanwhile waits until it lets go.
    """

    def __init__(self, path: Path) -> None:
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        # A store never closed (a crash path, a test) lets go when collected: closing the file releases its flock.
        self._release = weakref.finalize(self, os.close, self._fd)
        if fcntl is not None:
            fcntl.flock(self._fd, fcntl.LOCK_SH)

    def alone(self) -> bool:
        """Try to become the only holder, without waiting; True: no other process has the store open until leave().

        On False this process no longer holds the lock at all: call only when closing the store.
        """
        if fcntl is None or self._fd is None:
            return False
        # Dropped first: flock may not convert shared to exclusive atomically, and a failed try would leave no lock.
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def leave(self) -> None:
        """Give the lock back (whichever kind is held)."""
        self._fd = None
        self._release()  # closing the file releases its flock
