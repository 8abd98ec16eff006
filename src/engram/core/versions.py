"""Newer versions first: among the best hits, a memory that restates an older one's subject ranks above it.

Supersession needs the caller's word; until it comes, two versions of a fact ("I go to the gym twice a week",
later "now four times a week") are both current and rank by wording alone. Near the top of a recall, the newer of
two hits that say nearly the same thing is the likelier answer to a question about now, so it moves just above the
older one. Only the order inside the window changes: nothing enters or leaves it, so recall@window is unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from engram.core.models import MemoryHit
from engram.core.ports import Vectors

#: How many of the best hits are reordered, and how alike (cosine) two hits must be to count as versions.
WINDOW = 10
SAME_SUBJECT = 0.6


def newer_versions_first(
    hits: Sequence[MemoryHit], vectors: Mapping[str, Vectors], window: int = WINDOW, alike: float = SAME_SUBJECT
) -> list[MemoryHit]:
    """`hits` with each newer hit of the window moved just above the best older hit it is a version of."""
    ordered = list(hits[:window])
    for j in range(1, len(ordered)):
        newer = ordered[j]
        vector = vectors.get(newer.memory.id)
        if vector is None:
            continue
        for i in range(j):
            older = ordered[i]
            other = vectors.get(older.memory.id)
            if (
                other is not None
                and older.memory.created_at < newer.memory.created_at
                and float(np.dot(vector, other)) >= alike
            ):
                ordered.insert(i, ordered.pop(j))
                break
    return [*ordered, *hits[window:]]
