"""Whether a local LanceDB table may be opened at its first use rather than at start, told from its files alone.

Opening the stores at start cost a server ~0.5 CPU-s before its first answer (`import lancedb` and `pyarrow`, five
table opens and their index listings), though a first recall answered from a recall snapshot reads no table at all.
A store may wait for its first use when opening it then can only confirm what its files already say: the table
exists (its latest manifest is there) and is stamped with the configured embedding model and dimensions. Anything
else (a missing table, another model, a manifest that does not read as expected, a store on object storage) opens
at start as before, so a model mismatch still stops the start and a fresh table is still created at once.

The latest version comes from the manifests' names, as Lance names them: `<version>.manifest`, or in its newer
scheme `<2**64 - 1 - version>.manifest` (zero-padded to 20 digits, so the newest sorts first).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from engram.storage.location import Location

T = TypeVar("T")

_MANIFEST = re.compile(r"^(\d{1,20})\.manifest$")
_U64_MAX = (1 << 64) - 1
#: Names above this are in the newer scheme (counting down from 2**64 - 1); no table reaches 2**63 versions.
_DESCENDING_FROM = 1 << 63
#: The schema metadata key under which Engram stamps a table's embedding model (engram.storage.lance_support).
_MODEL_KEY = b"engram.embedding_model"


def latest_manifest(table_dir: Path) -> tuple[int, Path] | None:
    """The table's latest version and its manifest file, from the names in `_versions` (None if it has none)."""
    latest: tuple[int, Path] | None = None
    try:
        entries = os.scandir(table_dir / "_versions")
    except OSError:
        return None
    with entries:
        for entry in entries:
            found = _MANIFEST.match(entry.name)
            if found is None:
                continue
            number = int(found.group(1))
            version = _U64_MAX - number if number >= _DESCENDING_FROM else number
            if latest is None or version > latest[0]:
                latest = (version, Path(entry.path))
    return latest


def latest_version(table_dir: Path) -> int | None:
    """The table's latest version, from its manifests' names (None if it has none)."""
    found = latest_manifest(table_dir)
    return None if found is None else found[0]


def manifests(table_dir: Path) -> int:
    """How many versions of the table are on disk (superseded ones included)."""
    try:
        with os.scandir(table_dir / "_versions") as entries:
            return sum(1 for entry in entries if _MANIFEST.match(entry.name))
    except OSError:
        return 0


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field, as a manifest encodes strings and map entries."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def stamped_with(manifest: Path, model_id: str, dimensions: int) -> bool:
    """Whether the manifest's schema carries exactly this model stamp and a vector of exactly these dimensions.

    Only a match counts: a manifest that reads otherwise (another model, another Lance format) sends the table to
    LanceDB at start, whose own check then decides.
    """
    try:
        data = manifest.read_bytes()
    except OSError:
        return False
    # A metadata map entry: key (field 1) then value (field 2); a field's logical type as its string.
    stamp = _field(1, _MODEL_KEY) + _field(2, model_id.encode())
    vector = _field(5, f"fixed_size_list:float:{dimensions}".encode())
    return data.count(stamp) == 1 and data.count(vector) == 1


def can_wait(directory: Location, tables: dict[str, tuple[str, int] | None]) -> bool:
    """Whether every one of these tables under `directory` may be opened at first use: local, present, and (for a
    table named with a (model id, dimensions) pair) stamped with that model."""
    if not isinstance(directory, Path):
        return False
    for name, model in tables.items():
        found = latest_manifest(directory / f"{name}.lance")
        if found is None:
            return False
        if model is not None and not stamped_with(found[1], *model):
            return False
    return True


class Deferred(Generic[T]):
    """A value made by `opener` at its first use, once, whichever thread asks first."""

    def __init__(self, opener: Callable[[], T]) -> None:
        self._opener = opener
        self._value: T | None = None
        self._lock = threading.Lock()

    @property
    def opened(self) -> bool:
        """Whether the value has been made."""
        return self._value is not None

    def get(self) -> T:
        """The value, made now if it has not been yet."""
        value = self._value
        if value is not None:
            return value
        with self._lock:
            if self._value is None:
                self._value = self._opener()
            return self._value
