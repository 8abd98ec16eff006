"""Vector search over a user's journalled writes in memory, so a read can see them without moving them first.

A fact's `remember` searches for the memories it may supersede. Moving the journal into the table before that
search made every single write its own LanceDB commit (a table version and data files each). The waiting writes
carry their vectors, so they are scored here by the same rules as the stored rows (`recall_index.UserIndex`:
every filter as LanceDB applies it, cosine as the score) and merged with the table's answer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engram.core.filters import MemoryFilters
from engram.core.passages import passages
from engram.core.ports import Candidate, Vectors
from engram.storage.journal import JournalEntry
from engram.storage.memory_rows import _to_row
from engram.storage.recall_index import UserIndex


def search_waiting(
    entries: Sequence[JournalEntry], vector: Vectors, filters: MemoryFilters, limit: int, *, passages_too: bool
) -> list[Candidate] | None:
    """Up to `limit` of these waiting memories matching `filters`, by cosine similarity, best first.

    None when the answer would differ from the table's once they are moved: a filter the in-memory index does not
    evaluate, or (with `passages_too`) a long memory, whose passages score in the table but not here.
    """
    if passages_too and any(passages(e.memory.content) for e in entries):
        return None
    vectors = np.stack([np.asarray(e.vector, dtype=np.float32).reshape(-1) for e in entries])
    rows = [_to_row(e.memory, e.index_text, e.vector) for e in entries]
    columns = {name: [row.get(name) for row in rows] for name in rows[0] if name != "vector"}
    index = UserIndex(vectors.shape[1])
    index.add(columns, vectors)
    admitted = index.mask(filters)
    return None if admitted is None else index.vector_search(vector, admitted, limit)


def merged(stored: Sequence[Candidate], waiting: Sequence[Candidate], limit: int) -> list[Candidate]:
    """The best `limit` of both answers, each memory once (a row both stored and waiting is being moved)."""
    held = {c.memory.id for c in stored}
    both = [*stored, *(c for c in waiting if c.memory.id not in held)]
    return sorted(both, key=lambda c: -c.score)[:limit]
