"""One-line messages for refused values: the argument, what is wrong with it, and what is accepted.

Shared by the tools (pydantic refusing a call's arguments) and the service (parsing a Python caller's values).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic_core import ErrorDetails

from engram.core.errors import QUOTE_CHARS, quoted
from engram.core.limits import ID_PATTERN, ID_RULE, MEMORY_ID_PATTERN

#: What a pattern means, in words a model can follow (a bare regular expression is a poor hint).
_PATTERN_RULES = {
    ID_PATTERN: ID_RULE,
    MEMORY_ID_PATTERN: "32 lowercase hexadecimal characters, as returned by remember or recall",
}


def field_name(loc: Sequence[int | str]) -> str:
    """A validation error's location as a model writes the argument: `filters.tags[2]`."""
    name = ""
    for part in loc:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            # A map key is the caller's data and may be huge: shown cut, like any quoted value.
            shown = part if len(part) <= QUOTE_CHARS else f"{part[:QUOTE_CHARS]}…"
            name += f".{shown}" if name else shown
    return name or "arguments"


def argument_problem(error: ErrorDetails, accepted: Sequence[str]) -> str:
    """One refused argument: the field, what is wrong with its value, and what is accepted."""
    loc = error["loc"]
    kind = error["type"]
    context: dict[str, Any] = dict(error.get("ctx") or {})
    if kind == "extra_forbidden":
        where = field_name(loc[:-1])
        names = ", ".join(accepted) if len(loc) == 1 else "the properties its schema lists"
        inside = "" if len(loc) == 1 else f" in '{where}'"
        return f"unknown argument '{loc[-1]}'{inside}; accepted: {names}"
    field = field_name(loc)
    if kind == "missing":
        return f"'{field}' is required"
    value = quoted(error.get("input"))
    if kind == "string_pattern_mismatch":
        pattern = str(context.get("pattern", ""))
        return f"'{field}' {value} is not valid; expected {_PATTERN_RULES.get(pattern, f'text matching {pattern}')}"
    if kind == "string_too_long":
        size = len(error["input"]) if isinstance(error.get("input"), str) else None
        length = f" ({size:,} characters)" if size is not None else ""
        return f"'{field}' is too long{length}; at most {context.get('max_length')} characters"
    if kind == "too_long":
        return f"'{field}' has too many items; at most {context.get('max_length')}"
    message = error["msg"].rstrip(".")
    message = message[0].lower() + message[1:] if message else "is not valid"
    return f"'{field}' {value}: {message}"
