"""A deterministic bag-of-words embedder: fast, reproducible, and without semantic understanding."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from engram.core.ports import Vectors

_TOKEN = re.compile(r"\w+", re.UNICODE)


class HashEmbedder:
    """Hashes each lower-cased word into one of `dimensions` buckets; texts sharing words come out close."""

    def __init__(self, dimensions: int = 256) -> None:
        self._dimensions = dimensions
        self.calls = 0

    @property
    def model_id(self) -> str:
        """Identity recorded with stored vectors."""
        return f"hash-{self._dimensions}"

    @property
    def dimensions(self) -> int:
        """Length of every vector."""
        return self._dimensions

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Return one L2-normalised row per text (a zero text gets a fixed unit vector)."""
        self.calls += 1
        out = np.zeros((len(texts), self._dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in _TOKEN.findall(text.lower()):
                digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
                bucket = int.from_bytes(digest[:4], "little") % self._dimensions
                out[row, bucket] += 1.0 if digest[4] & 1 else -1.0
            norm = float(np.linalg.norm(out[row]))
            if norm == 0.0:
                out[row, 0] = 1.0
            else:
                out[row] /= norm
        return out
