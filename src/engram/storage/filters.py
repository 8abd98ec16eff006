"""LanceDB's compilation of `MemoryFilters` into DataFusion SQL: every caller value quoted, never spliced."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from engram.core.filters import Condition, MemoryFilters
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


def agent_clauses(filters: MemoryFilters) -> list[str]:
    """Who may see what: shared memories, and the asking agent's private ones unless only shared are wanted."""
    if filters.shared_only or filters.viewer_agent is None:
        return ["visibility = 'shared'"]
    return [f"visibility = 'shared' OR agent_id = {quote(filters.viewer_agent)}"]


def project_clauses(filters: MemoryFilters) -> list[str]:
    """Which projects a query reaches: by default the given one plus the user's global memories, never another."""
    if filters.projects == "any":
        return []
    if filters.project is None:
        return ["project IS NULL"]
    if filters.projects == "only":
        return [f"project = {quote(filters.project)}"]
    return [f"project IS NULL OR project = {quote(filters.project)}"]


#: Where a memory's attribute is kept, when the column is not named after it: entities are matched case-folded.
_COLUMNS = {"entities": "entity_keys"}


def _literal(value: object) -> str:
    """A filter value as a SQL literal: strings quoted, dates as timestamps, numbers rendered by Python."""
    if isinstance(value, datetime):
        return timestamp(value)
    if isinstance(value, str):  # enums are str too
        return quote(str(value))
    # A float or int checked by the filters' type, rendered by Python: never caller text.
    return repr(float(value))  # type: ignore[arg-type]


def condition_clause(condition: Condition, value: Any) -> str:
    """The SQL of one condition of a kind `MemoryFilters` declares."""
    column = _COLUMNS.get(condition.attribute, condition.attribute)
    match condition.kind:
        case "equals":
            return f"{column} = {_literal(value)}"
        case "in":
            return f"{column} IN ({', '.join(_literal(v) for v in value)})"
        case "not_in":
            return f"{column} IS NULL OR {column} NOT IN ({', '.join(_literal(v) for v in value)})"
        case "has_any":
            return f"array_has_any({column}, {quote_list(value)})"
        case "has_all":
            return f"array_has_all({column}, {quote_list(value)})"
        case "has_folded":
            return f"array_has({column}, {quote(value.casefold())})"
        case "is_true":
            return f"{column} = true" if value else f"{column} IS NULL OR {column} = false"
        case "at_least":
            return f"{column} >= {_literal(value)}"
        case "before":
            return f"{column} < {_literal(value)}"
        case "valid_at":
            # A row written before validity existed holds from its created_at and was never closed.
            at = _literal(value)
            return f"COALESCE(valid_from, created_at) <= {at} AND (valid_until IS NULL OR valid_until > {at})"
        case "open_at":
            return f"valid_until IS NULL OR valid_until > {_literal(value)}"
    raise ValueError(f"no LanceDB rule for filter condition {condition.kind!r}")


def memory_filter(user_id: str, filters: MemoryFilters | None = None) -> str:
    """Build the where-clause that scopes a query to one user and the given metadata conditions.

    Without `filters` every memory of the user matches (for maintenance: look-ups by id, erasure); with them,
    the agent visibility rules apply too.
    """
    clauses = [f"user_id = {quote(user_id)}"]
    if filters is None:
        return clauses[0]
    clauses.extend(agent_clauses(filters))
    clauses.extend(project_clauses(filters))
    clauses.extend(condition_clause(condition, value) for condition, value in filters.conditions())
    return " AND ".join(f"({c})" for c in clauses)
