"""diskcache-backed cache of query embeddings, so a repeated query skips the model."""

from __future__ import annotations

from pathlib import Path

import diskcache
import numpy as np

from engram.core.ports import Vectors

#: Room for roughly 40,000 384-dimension vectors; least recently used entries go first.
_SIZE_LIMIT = 64 * 2**20


class DiskQueryCache:
    """Query vectors keyed by model and a hash of the query text (the text itself is never stored)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._cache = diskcache.Cache(str(directory), size_limit=_SIZE_LIMIT, eviction_policy="least-recently-used")

    def get(self, key: str) -> Vectors | None:
        """The cached vector for `key`, or None."""
        raw = self._cache.get(key)
        return None if raw is None else np.frombuffer(raw, dtype=np.float32).copy()

    def put(self, key: str, vector: Vectors) -> None:
        """Remember `vector` for `key`."""
        self._cache.set(key, np.asarray(vector, dtype=np.float32).tobytes())

    def close(self) -> None:
        """Close the cache's SQLite connections."""
        self._cache.close()
