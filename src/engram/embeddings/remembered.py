"""An embedder that keeps every vector it computed in a file, for benchmark runs that embed the same texts again.

Evaluation only (`engram eval --embedding-cache`): a store of vectors by text digest is personal data when the texts
are, and the server never uses one. Ingesting a LongMemEval haystack is almost all embedding (about 1,100 texts of
up to 256 word pieces each); a run that ingests the same benchmark again, to compare code or settings, then stores
exactly the vectors the model gave the first time without computing them.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engram.core.ports import Embedder, Vectors

#: Digests looked up per query (SQLite caps the parameters of one statement).
_LOOKUP = 500


class RememberedEmbedder:
    """Delegates to `inner` for texts it has not seen with this model, and answers the rest from `path`."""

    def __init__(self, inner: Embedder, path: Path) -> None:
        self.inner = inner
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS vectors (digest BLOB PRIMARY KEY, vector BLOB NOT NULL)")
        self.hits = 0
        self.misses = 0

    @property
    def model_id(self) -> str:
        """The wrapped model's identity (part of every key, so another model never reads these vectors)."""
        return self.inner.model_id

    @property
    def dimensions(self) -> int:
        """The wrapped model's vector length."""
        return self.inner.dimensions

    def _digest(self, text: str) -> bytes:
        return hashlib.sha256(f"{self.inner.model_id}\0{text}".encode()).digest()

    def embed(self, texts: Sequence[str]) -> Vectors:
        """The vectors of `texts`: remembered ones read back, the others computed in one call and remembered."""
        digests = [self._digest(t) for t in texts]
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        known: dict[bytes, bytes] = {}
        with self._lock:
            for start in range(0, len(digests), _LOOKUP):
                chunk = digests[start : start + _LOOKUP]
                query = f"SELECT digest, vector FROM vectors WHERE digest IN ({','.join('?' * len(chunk))})"
                known.update(self._db.execute(query, chunk).fetchall())
        missing = [i for i, d in enumerate(digests) if d not in known]
        for i, d in enumerate(digests):
            if d in known:
                out[i] = np.frombuffer(known[d], dtype=np.float32)
        if missing:
            computed = np.asarray(self.inner.embed([texts[i] for i in missing]), dtype=np.float32)
            out[missing] = computed
            with self._lock, self._db:
                self._db.executemany(
                    "INSERT OR IGNORE INTO vectors VALUES (?, ?)",
                    [(digests[i], computed[n].tobytes()) for n, i in enumerate(missing)],
                )
        self.hits += len(texts) - len(missing)
        self.misses += len(missing)
        return out

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()
