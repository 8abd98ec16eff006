"""MemoryPolicy: the limits and defaults the memory service enforces, built from Settings by the composition root."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from engram.core.limits import MAX_CONTENT_CHARS
from engram.core.redaction import DEFAULT_POLICY, RedactionPolicy

#: How many times forget_user erases and checks before it reports what remains.
ERASURE_PASSES = 3


@dataclass(frozen=True)
class MemoryPolicy:
    """The limits and defaults the service enforces (built from Settings by the composition root)."""

    max_content_chars: int = MAX_CONTENT_CHARS
    default_top_k: int = 5
    max_top_k: int = 50
    summary_max_chars: int = 600
    keep_recent_default: int = 6
    max_keep_recent: int = 1000
    max_batch: int = 500
    #: Long-term memories older than this are purged (None: kept until erased); per-category overrides.
    retention: timedelta | None = None
    retention_by_category: Mapping[str, timedelta] = field(default_factory=dict)
    redaction: RedactionPolicy = DEFAULT_POLICY
    #: A session idle this long has expired (the short-term TTL): a turn before it that is older was dated by its
    #: caller, so the session is history being logged, and its undated turns take its date rather than today's.
    live_session_gap: timedelta = timedelta(days=7)
