"""Recall's one `as_of`, parsed once: the moment a question is asked, and the two things it decides.

It chooses which long-term memories count (those valid at that moment; by default those not superseded now) and
it is the reference for the dates the question names ("last Saturday", "two weeks ago": core/temporal.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from engram.core.filters import MemoryFilters
from engram.core.ports import Candidate
from engram.core.temporal import TimeReference, resolve
from engram.core.validation import as_utc


@dataclass(frozen=True)
class AskedAt:
    """A question placed in time: the filters valid then, and what the question says about time."""

    filters: MemoryFilters
    when: TimeReference


def asked_at(query: str, filters: MemoryFilters, as_of: datetime | None, now: datetime) -> AskedAt:
    """`filters` narrowed to the memories valid `as_of` (default: not superseded by `now`), and `query`'s dates.

    `as_of` keeps its own zone for the dates ("yesterday" starts at its midnight; naive means UTC).
    """
    if as_of is None:
        return AskedAt(filters.model_copy(update={"open_at": now}), resolve(query, now))
    moment = as_of if as_of.tzinfo is not None else as_of.replace(tzinfo=UTC)
    valid_then = as_utc("as_of", moment)  # the one check: refuses dates storage cannot hold
    return AskedAt(filters.model_copy(update={"as_of": valid_then}), resolve(query, moment))


def within(filters: MemoryFilters, when: TimeReference) -> MemoryFilters | None:
    """`filters` narrowed to the period the question names, or None if it names none (or none is left)."""
    if when.period is None:
        return None
    start, end = (as_utc("as_of", moment) for moment in when.period)
    assert start is not None and end is not None
    since = start if filters.since is None else max(start, filters.since)
    until = end if filters.until is None else min(end, filters.until)
    return filters.model_copy(update={"since": since, "until": until}) if since < until else None


def merged(found: list[Candidate], more: list[Candidate]) -> list[Candidate]:
    """Two result lists of one search method as one, best first, each memory once."""
    by_id = {c.memory.id: c for c in more}
    by_id.update({c.memory.id: c for c in found})
    return sorted(by_id.values(), key=lambda c: -c.score)
