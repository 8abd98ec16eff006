"""Each loaded user's passages held in memory, answering passage searches without a LanceDB query.

A LanceDB search of the passages table cost ~120 ms of CPU per recall at ~1,000 passages per user (33 users in one
table): query planning, the user prefilter and reading every vector of the table's fragments. The index answers
for one version of the passages table: this process's own additions are applied as they commit, any other version
change (another process wrote, an erasure, a compaction) drops every user, so an erased passage is never found here.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

#: What one passage costs beyond its vector and text: the list slots, the id string, the norm.
PASSAGE_OVERHEAD = 120


@dataclass
class UserPassages:
    """One user's passages: their memories' ids, texts, vectors and the vectors' norms, in table order."""

    memory_ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    vectors: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    norms: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    nbytes: int = 0

    def add(self, memory_ids: Sequence[str], texts: Sequence[str], vectors: npt.NDArray[np.float32]) -> None:
        """Append passages (after those held, as the table appends them)."""
        if not len(memory_ids):
            return
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(memory_ids), -1)
        self.memory_ids.extend(memory_ids)
        self.texts.extend(texts)
        self.vectors = vectors if not self.vectors.size else np.concatenate([self.vectors, vectors])
        self.norms = np.concatenate([self.norms, np.linalg.norm(vectors, axis=1).astype(np.float32)])
        self.nbytes += vectors.nbytes + sum(len(t) for t in texts) + PASSAGE_OVERHEAD * len(memory_ids)

    def nearest(self, vector: npt.NDArray[np.float32], limit: int) -> list[tuple[int, float]]:
        """The `limit` passages closest to `vector` by cosine distance, as (row, distance), nearest first."""
        if not self.memory_ids or limit <= 0:
            return []
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        # Cosine distance as LanceDB computes it, in float32: 1 - a.b / (|a| |b|).
        with np.errstate(divide="ignore", invalid="ignore"):
            distances = (1.0 - (self.vectors @ query) / (self.norms * np.linalg.norm(query))).astype(np.float32)
        distances = np.where(np.isnan(distances), np.float32(np.inf), distances)
        count = min(limit, len(distances))
        part = np.argpartition(distances, count - 1)[:count] if count < len(distances) else np.arange(count)
        order = part[np.lexsort((part, distances[part]))]  # nearest first, ties in table order
        return [(int(row), float(distances[row])) for row in order if np.isfinite(distances[row])]


class PassageIndex:
    """The loaded users' passages (least recently searched first), the table version they answer for, the cap."""

    def __init__(self, cap_bytes: int) -> None:
        self.cap_bytes = cap_bytes
        self.lock = threading.RLock()
        self.version: int | None = None
        self.users: OrderedDict[str, UserPassages] = OrderedDict()
        # Whether every user's passages at `version` are held: then a user not held has none (nothing to load).
        self.complete = False

    def reset(self, version: int | None) -> None:
        """Drop every user's passages; the index now answers for `version`."""
        self.users.clear()
        self.version = version
        self.complete = False

    def get(self, user_id: str) -> UserPassages | None:
        """The user's passages if loaded, marked as the most recently used."""
        found = self.users.get(user_id)
        if found is not None:
            self.users.move_to_end(user_id)
        return found

    def put(self, user_id: str, passages: UserPassages) -> None:
        """Keep the user's passages, evicting the least recently searched users to stay within the cap."""
        self.users[user_id] = passages
        self.users.move_to_end(user_id)
        self.fit()

    def fit(self) -> None:
        """Evict least recently searched users until the held passages fit the cap."""
        total = sum(u.nbytes for u in self.users.values())
        while total > self.cap_bytes and self.users:
            _, evicted = self.users.popitem(last=False)
            total -= evicted.nbytes
            self.complete = False
