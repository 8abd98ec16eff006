"""The `filters` argument `recall` and `list_memories` share: the core's `MemoryFilters`, optional."""

from __future__ import annotations

from engram.core.filters import MemoryFilters

FiltersArg = MemoryFilters | None
