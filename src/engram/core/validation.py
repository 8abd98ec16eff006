"""Checks of caller-given values that no type can express (ids, labels, tags, metadata, dates, filters).

Each check names the argument it refuses and says what is accepted, in one line, quoting at most a short prefix of
the bad value; it returns the value in the form the stores keep (trimmed, lower-cased tags, UTC dates).
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from engram.core.errors import InvalidInput, quoted
from engram.core.limits import (
    ID_PATTERN,
    ID_RULE,
    MAX_LABEL_CHARS,
    MAX_METADATA_KEYS,
    MAX_METADATA_VALUE_CHARS,
    MAX_TAG_CHARS,
    MAX_TAGS,
    MEMORY_ID_PATTERN,
)
from engram.core.models import MetadataValue
from engram.core.problems import argument_problem
from engram.core.timeutil import to_utc

_ID = re.compile(ID_PATTERN)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def normalize_content(content: str) -> str:
    """Canonical form used for de-duplication: NFC, surrounding whitespace removed."""
    return unicodedata.normalize("NFC", content).strip()


def memory_id(user_id: str, content: str, project: str | None = None) -> str:
    """Content-addressed id: the same normalised content for the same user (and project) always has the same id."""
    # A project is part of the address, so the same words remembered in two projects are two memories; a global
    # memory keeps the id it had before projects existed.
    scope = user_id if project is None else f"{user_id}\x00{project}"
    digest = hashlib.sha256(f"{scope}\x00{normalize_content(content)}".encode())
    return digest.hexdigest()[:32]


Model = TypeVar("Model", bound=BaseModel)


def parsed(model: type[Model], values: Mapping[str, object]) -> Model:
    """`values` parsed into `model` for a caller of the service's Python API (the tools parse at their boundary);
    a refused value is an InvalidInput naming its argument."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        field = str(error["loc"][0]) if error["loc"] else "arguments"
        # The message names the exact place ('tags[2]'); the error's field is the argument ('tags').
        problem = argument_problem(error, list(model.model_fields)).removeprefix(f"'{field}' ")
        raise InvalidInput(field, problem.rstrip(".") + ".") from None


def check_id(field: str, value: str) -> str:
    """Return `value` if it is a well-formed identifier, else raise InvalidInput naming `field`."""
    if not isinstance(value, str) or not _ID.match(value):
        raise InvalidInput(field, f"{quoted(value)} is not a valid id; expected {ID_RULE}.")
    return value


def check_optional_id(field: str, value: str | None) -> str | None:
    """`check_id` for an optional argument."""
    return None if value is None else check_id(field, value)


def check_memory_id(value: str) -> str:
    """A memory id as the stores make them (32 lowercase hex digits)."""
    if not isinstance(value, str) or not re.match(MEMORY_ID_PATTERN, value):
        raise InvalidInput("memory_id", f"{quoted(value)} is not a memory id; expected 32 lowercase hex digits.")
    return value


def check_content(field: str, content: str, max_chars: int) -> str:
    """The content, normalised, if it holds text within `max_chars`."""
    normalized = normalize_content(content)
    if not normalized:
        raise InvalidInput(field, "must contain text; it is empty or only whitespace.")
    if len(normalized) > max_chars:
        raise InvalidInput(
            field,
            f"is {len(normalized)} characters; the limit is {max_chars}. "
            "Split it into several memories or summarise it first.",
        )
    return normalized


def check_label(field: str, value: str | None) -> str | None:
    """A short label (category, entity): trimmed, 1-64 characters, no control characters."""
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > MAX_LABEL_CHARS or _CONTROL.search(value):
        raise InvalidInput(field, f"must be 1-{MAX_LABEL_CHARS} non-blank characters without control characters.")
    return value


def check_tags(field: str, tags: Sequence[str] | None) -> list[str]:
    """Tags as stored: lower case, trimmed, each once, at most MAX_TAGS."""
    if not tags:
        return []
    if len(tags) > MAX_TAGS:
        raise InvalidInput(field, f"at most {MAX_TAGS} tags are accepted, got {len(tags)}.")
    cleaned: list[str] = []
    for tag in tags:
        # Tags are labels: "Billing" and "billing" are one tag, so they are stored and matched in lower case.
        tag = tag.strip().lower()
        if not tag or len(tag) > MAX_TAG_CHARS or _CONTROL.search(tag):
            raise InvalidInput(
                field,
                f"each tag must be 1-{MAX_TAG_CHARS} non-blank characters without control characters, "
                f"got {quoted(tag)}.",
            )
        if tag not in cleaned:
            cleaned.append(tag)
    return cleaned


def check_entities(field: str, entities: Sequence[str] | None) -> list[str]:
    """Entity names, each a label, without case-insensitive repeats."""
    cleaned: list[str] = []
    for entity in entities or []:
        label = check_label(field, entity)
        if label is not None and label.casefold() not in {e.casefold() for e in cleaned}:
            cleaned.append(label)
    if len(cleaned) > MAX_TAGS:
        raise InvalidInput(field, f"at most {MAX_TAGS} entities are accepted, got {len(cleaned)}.")
    return cleaned


def check_metadata(metadata: Mapping[str, MetadataValue] | None, field: str = "metadata") -> dict[str, MetadataValue]:
    """Free-form metadata within its limits: key count and length, finite numbers, bounded strings."""
    if not metadata:
        return {}
    if len(metadata) > MAX_METADATA_KEYS:
        raise InvalidInput(field, f"at most {MAX_METADATA_KEYS} keys are accepted, got {len(metadata)}.")
    for key, value in metadata.items():
        if not key or len(key) > MAX_LABEL_CHARS:
            raise InvalidInput(field, f"keys must be 1-{MAX_LABEL_CHARS} characters, got {quoted(key)}.")
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInput(field, f"value of {quoted(key)} must be a finite number.")
        if isinstance(value, str) and len(value) > MAX_METADATA_VALUE_CHARS:
            raise InvalidInput(field, f"value of {quoted(key)} is over {MAX_METADATA_VALUE_CHARS} characters.")
    return dict(metadata)


def check_unit(field: str, value: float | None) -> float | None:
    """A value between 0 and 1 (importance), or None."""
    if value is not None and not (0.0 <= value <= 1.0):
        raise InvalidInput(field, f"must be between 0 and 1, got {value}.")
    return value


def as_utc(field: str, value: datetime | None) -> datetime | None:
    """`value` in UTC (naive means UTC), refusing dates outside the years 1000-9998 that storage can hold."""
    if value is None:
        return None
    if not 1000 <= value.year <= 9998:
        raise InvalidInput(field, f"must be a date between the years 1000 and 9998, got {value.isoformat()}.")
    return to_utc(value)
