"""Safe construction of LanceDB (DataFusion SQL) filter expressions from caller-supplied values."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from engram.core.models import RecallFilters
from engram.core.timeutil import to_utc


def quote(value: str) -> str:
    """Return `value` as a SQL string literal: single quotes doubled, NUL bytes refused."""
    if "\x00" in value:
        raise ValueError("NUL byte in a filter value")
    return "'" + value.replace("'", "''") + "'"


def quote_list(values: Sequence[str]) -> str:
    """Return `values` as a SQL array literal of quoted strings."""
    return "[" + ", ".join(quote(v) for v in values) + "]"


def ids_clause(ids: Sequence[str]) -> str:
    """`id IN (...)` over quoted ids."""
    return f"id IN ({', '.join(quote(i) for i in ids)})"


def timestamp(value: datetime) -> str:
    """Return `value` as a SQL timestamp literal in UTC (naive datetimes are taken as UTC)."""
    return "timestamp " + quote(to_utc(value).strftime("%Y-%m-%d %H:%M:%S.%f"))


def agent_clauses(filters: RecallFilters) -> list[str]:
    """Who may see what: shared memories, the asking agent's private ones, then the include/exclude lists."""
    if filters.shared_only or filters.viewer_agent is None:
        clauses = ["visibility = 'shared'"]
    else:
        clauses = [f"visibility = 'shared' OR agent_id = {quote(filters.viewer_agent)}"]
    if filters.agents:
        clauses.append(f"agent_id IN ({', '.join(quote(a) for a in filters.agents)})")
    if filters.exclude_agents:
        clauses.append(f"agent_id IS NULL OR agent_id NOT IN ({', '.join(quote(a) for a in filters.exclude_agents)})")
    return clauses


def project_clauses(filters: RecallFilters) -> list[str]:
    """Which projects a query reaches: by default the given one plus the user's global memories, never another."""
    if filters.project_scope == "any":
        return []
    if filters.project is None:
        return ["project IS NULL"]
    if filters.project_scope == "only":
        return [f"project = {quote(filters.project)}"]
    return [f"project IS NULL OR project = {quote(filters.project)}"]


def memory_filter(user_id: str, filters: RecallFilters | None = None) -> str:
    """Build the where-clause that scopes a query to one user and the given metadata conditions.

    Without `filters` every memory of the user matches (for maintenance: look-ups by id, erasure); with them,
    the agent visibility rules apply too.
    """
    clauses = [f"user_id = {quote(user_id)}"]
    if filters is None:
        return clauses[0]
    clauses.extend(agent_clauses(filters))
    clauses.extend(project_clauses(filters))
    if filters.session_id is not None:
        clauses.append(f"session_id = {quote(filters.session_id)}")
    if filters.kind is not None:
        clauses.append(f"kind = {quote(filters.kind.value)}")
    if filters.tags_any:
        clauses.append(f"array_has_any(tags, {quote_list(filters.tags_any)})")
    if filters.tags_all:
        clauses.append(f"array_has_all(tags, {quote_list(filters.tags_all)})")
    if filters.entity is not None:
        clauses.append(f"array_has(entity_keys, {quote(filters.entity.casefold())})")
    if filters.sentiment is not None:
        clauses.append(f"sentiment = {quote(filters.sentiment.value)}")
    if filters.category is not None:
        clauses.append(f"category = {quote(filters.category)}")
    if filters.resolved is not None:
        clauses.append("resolved = true" if filters.resolved else "resolved IS NULL OR resolved = false")
    if filters.min_importance is not None:
        # A float rendered by Python (checked finite by the service), never caller text.
        clauses.append(f"importance >= {float(filters.min_importance)!r}")
    if filters.since is not None:
        clauses.append(f"created_at >= {timestamp(filters.since)}")
    if filters.until is not None:
        clauses.append(f"created_at < {timestamp(filters.until)}")
    return " AND ".join(f"({c})" for c in clauses)
