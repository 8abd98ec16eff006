"""MemoryPolicy: the limits and defaults the memory service enforces, built from Settings by the composition root."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from engram.core.redaction import DEFAULT_POLICY, RedactionPolicy

#: How many times forget_user erases and checks before it reports what remains.
ERASURE_PASSES = 3


@dataclass(frozen=True)
class MemoryPolicy:
    """The limits and defaults the service enforces (built from Settings by the composition root)."""

    max_content_chars: int = 8000
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
