"""Caller-given value types parsed once at the boundary: each carries its limit and yields the form stores keep."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from engram.core.limits import (
    FIRST_YEAR,
    ID_PATTERN,
    LAST_YEAR,
    MAX_CONTENT_CHARS,
    MAX_LABEL_CHARS,
    MAX_METADATA_KEYS,
    MAX_METADATA_VALUE_CHARS,
    MAX_SUPERSEDES,
    MAX_TAG_CHARS,
    MAX_TAGS,
    MEMORY_ID_PATTERN,
)
from engram.core.timeutil import to_utc

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def label(value: str) -> str:
    """A short label (category, entity): trimmed, 1-64 characters, no control characters."""
    value = value.strip()
    if not value or len(value) > MAX_LABEL_CHARS or _CONTROL.search(value):
        raise PydanticCustomError(
            "label", f"must be 1-{MAX_LABEL_CHARS} non-blank characters without control characters"
        )
    return value


def tag(value: str) -> str:
    """A tag as stored: lower case and trimmed ("Billing" and "billing" are one tag)."""
    value = value.strip().lower()
    if not value or len(value) > MAX_TAG_CHARS or _CONTROL.search(value):
        raise PydanticCustomError(
            "tag", f"each tag must be 1-{MAX_TAG_CHARS} non-blank characters without control characters"
        )
    return value


def unique(values: list[str] | None) -> list[str]:
    """The values in order, each once (none given: an empty list)."""
    return list(dict.fromkeys(values or []))


def unique_names(values: list[str] | None) -> list[str]:
    """Names (entities) in order, without repeats that differ only in case."""
    kept: dict[str, str] = {}
    for value in values or []:
        kept.setdefault(value.casefold(), value)
    return list(kept.values())


def metadata_key(value: str) -> str:
    """A metadata key: 1-64 characters."""
    if not value:
        raise PydanticCustomError("metadata_key", f"keys must be 1-{MAX_LABEL_CHARS} characters")
    return value


def utc_date(value: datetime) -> datetime:
    """`value` in UTC (naive means UTC), within the years storage can hold."""
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise PydanticCustomError(
            "date_range", f"must be a date between the years {FIRST_YEAR} and {LAST_YEAR}, got {value.isoformat()}"
        )
    return to_utc(value)


Id = Annotated[str, Field(pattern=ID_PATTERN)]  # the pattern bounds the length too
Label = Annotated[str, Field(max_length=MAX_LABEL_CHARS), AfterValidator(label)]
Tag = Annotated[str, Field(max_length=MAX_TAG_CHARS), AfterValidator(tag)]
Tags = Annotated[list[Tag] | None, Field(max_length=MAX_TAGS), AfterValidator(unique)]
UtcDate = Annotated[datetime, AfterValidator(utc_date)]
Entities = Annotated[list[Label] | None, Field(max_length=MAX_TAGS), AfterValidator(unique_names)]
#: Text as a caller sends it; the server's own limit (a setting) and redaction are applied by the service.
Content = Annotated[str, Field(max_length=MAX_CONTENT_CHARS)]
MetadataKey = Annotated[str, Field(max_length=MAX_LABEL_CHARS), AfterValidator(metadata_key)]
MetadataText = Annotated[str, Field(max_length=MAX_METADATA_VALUE_CHARS)]
FiniteNumber = Annotated[float, Field(allow_inf_nan=False)]
Metadata = Annotated[
    dict[MetadataKey, MetadataText | int | FiniteNumber | bool | None] | None, Field(max_length=MAX_METADATA_KEYS)
]
Unit = Annotated[float | None, Field(ge=0.0, le=1.0)]
#: Ids of older memories a memory replaces (supersedes).
MemoryIds = Annotated[
    list[Annotated[str, Field(pattern=MEMORY_ID_PATTERN)]] | None,
    Field(max_length=MAX_SUPERSEDES),
    AfterValidator(unique),
]
