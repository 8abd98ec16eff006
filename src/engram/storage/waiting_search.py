"""Merging a vector search over the journal's waiting writes with the table's answer.

A fact's `remember` searches for the memories it may supersede. Moving the journal into the table before that
search made every single write its own LanceDB commit (a table version and data files each). The waiting writes
carry their vectors, so they are scored in memory by the same rules as the stored rows (`waiting_index.py`) and
merged here with the table's answer.
"""

from __future__ import annotations

from collections.abc import Sequence

from engram.core.ports import Candidate


def merged(stored: Sequence[Candidate], waiting: Sequence[Candidate], limit: int) -> list[Candidate]:
    """The best `limit` of both answers, each memory once (a row both stored and waiting is being moved)."""
    held = {c.memory.id for c in stored}
    both = [*stored, *(c for c in waiting if c.memory.id not in held)]
    return sorted(both, key=lambda c: -c.score)[:limit]
