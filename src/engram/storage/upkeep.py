"""Background store hygiene: compaction, index upkeep and version clean-up, on a schedule and after bursts."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from engram.storage.table_upkeep import StoreHealth

logger = logging.getLogger(__name__)


class Maintainable(Protocol):
    """What upkeep needs from a store."""

    @property
    def commits(self) -> int:
        """Commits this process made so far."""
        ...

    def health(self) -> StoreHealth:
        """The table's fragments, unindexed rows, versions and files."""
        ...

    def upkeep(self, keep_versions_for: timedelta) -> bool:
        """Compact, reindex and clean up old versions; False if another process is doing it."""
        ...


@dataclass(frozen=True)
class UpkeepPolicy:
    """When upkeep runs and how long superseded versions are kept for readers of other processes."""

    #: How often the table is checked (and upkeep run when it needs it).
    interval_s: float = 60.0
    #: This many commits by this process since the last upkeep trigger it at once (a burst of writes).
    burst_commits: int = 50
    #: A superseded version's files stay this long, so a query that started on it in another process finishes.
    keep_versions_for: timedelta = timedelta(minutes=2)
    #: Upkeep is due past this many fragments, versions, or rows outside the indexes.
    max_fragments: int = 8
    max_versions: int = 8
    max_unindexed_rows: int = 1000


class Upkeep:
    """A daemon thread that keeps one store compacted, indexed and free of stale versions.

    It never runs in a request's path. Several processes may each run one: the store's upkeep lock lets only one
    work at a time, and the others skip their turn.
    """

    def __init__(
        self, store: Maintainable, policy: UpkeepPolicy | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self.policy = policy or UpkeepPolicy()
        self._clock = clock
        self._seen_commits = -1  # the commit count at the last tick, and since when it has not moved
        self._quiet_since = clock()
        self._settled_commits = -1  # the commit count at which superseded versions were last all removed
        self._wake = threading.Condition()
        self._stopping = False
        self._nudged = False
        self._last_commits = 0
        self._thread: threading.Thread | None = None
        self.runs = 0

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="engram-upkeep", daemon=True)
            self._thread.start()

    def notify(self) -> None:
        """Tell upkeep that writes were committed; it runs at once when they make a burst."""
        if self._store.commits - self._last_commits >= self.policy.burst_commits:
            with self._wake:
                self._nudged = True
                self._wake.notify_all()

    def stop(self) -> None:
        """Stop the thread, letting a run in progress finish."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join()

    def due(self, health: StoreHealth) -> bool:
        """Whether the table needs upkeep."""
        policy = self.policy
        return (
            health.fragments > policy.max_fragments
            or health.versions > policy.max_versions
            or health.unindexed_rows > policy.max_unindexed_rows
        )

    def run_once(self, force: bool = False) -> bool:
        """Check the table and do upkeep if it is due (or `force`); return whether upkeep ran here."""
        self._last_commits = self._store.commits
        if not force and not self.due(self._store.health()):
            return False
        ran = self._store.upkeep(self.policy.keep_versions_for)
        if ran:
            self.runs += 1
            if logger.isEnabledFor(logging.DEBUG):  # a health check reads the table's statistics: not for nothing
                logger.debug("long-term upkeep done: %s", self._store.health())
        return ran

    def tick(self) -> None:
        """A scheduled check: upkeep if due; once this process's writes have stopped for the whole version margin,
        remove every version superseded before it (each may hold a whole copy of the table)."""
        commits, now = self._store.commits, self._clock()
        if commits != self._seen_commits:
            self._seen_commits, self._quiet_since = commits, now
        quiet = now - self._quiet_since >= self.policy.keep_versions_for.total_seconds()
        if quiet and self._settled_commits != commits:
            # Twice: LanceDB lists the data files of the versions a run removes only at the next run.
            if self.run_once(force=True) and self.run_once(force=True):
                self._settled_commits = commits
            return
        self.run_once()

    def _loop(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._stopping or self._nudged, timeout=self.policy.interval_s)
                if self._stopping:
                    return
                nudged, self._nudged = self._nudged, False
            try:
                if nudged:
                    self.run_once(force=True)
                else:
                    self.tick()
            except Exception:  # upkeep is an optimisation; a failure must not stop the server
                logger.exception("long-term upkeep failed; retrying at the next interval")
