"""diskcache-backed cache of query embeddings, so a repeated query skips the model."""

from __future__ import annotations

import logging
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import diskcache
import numpy as np

from engram.core.ports import Vectors

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Room for roughly 40,000 384-dimension vectors; least recently used entries go first.
_SIZE_LIMIT = 64 * 2**20


class DiskQueryCache:
    """Query vectors keyed by model and a hash of the query text (the text itself is never stored)."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        try:
            self._cache = self._open()
        except sqlite3.OperationalError:
            raise
        except sqlite3.DatabaseError as exc:  # not a database, or a malformed one
            self._cache = self._rebuilt(exc)

    def _open(self) -> diskcache.Cache:
        self._directory.mkdir(parents=True, exist_ok=True)
        return diskcache.Cache(str(self._directory), size_limit=_SIZE_LIMIT, eviction_policy="least-recently-used")

    def _rebuilt(self, exc: sqlite3.DatabaseError) -> diskcache.Cache:
        """A fresh, empty cache in place of a damaged one: it only saves embedding time, so nothing is lost."""
        # Removed rather than moved aside: a kept copy would hold users' query keys beyond erasure.
        logger.warning("the query cache in %s is damaged (%s); rebuilding it empty", self._directory, exc)
        shutil.rmtree(self._directory, ignore_errors=True)
        return self._open()

    def _using(self, action: Callable[[diskcache.Cache], T], fallback: T) -> T:
        """Run `action` on the cache; damage found meanwhile rebuilds the cache and gives `fallback`."""
        try:
            return action(self._cache)
        except sqlite3.OperationalError as exc:
            # Full, read-only or busy: a query still works without the cache, a little slower.
            logger.warning("the query cache in %s is unusable just now (%s); going on without it", self._directory, exc)
            return fallback
        except sqlite3.DatabaseError as exc:
            self._cache.close()
            self._cache = self._rebuilt(exc)
            return fallback

    def get(self, key: str) -> Vectors | None:
        """The cached vector for `key`, or None (also when the cache had to be rebuilt)."""
        raw = self._using(lambda cache: cache.get(key), None)
        return None if raw is None else np.frombuffer(raw, dtype=np.float32).copy()

    def put(self, key: str, vector: Vectors) -> None:
        """Remember `vector` for `key`."""
        data = np.asarray(vector, dtype=np.float32).tobytes()
        self._using(lambda cache: cache.set(key, data), False)

    def close(self) -> None:
        """Close the cache's SQLite connections."""
        self._cache.close()
