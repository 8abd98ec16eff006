"""How the session store lays out its values on disk: plain JSON text, and the zlib-compressed JSON of older Engrams."""

from __future__ import annotations

import json
import zlib
from typing import Any

import diskcache


class PlainJSONDisk(diskcache.JSONDisk):  # type: ignore[misc]
    """diskcache's JSONDisk without compressing values: a session's values are a few hundred bytes of JSON.

    Compressing and decompressing them was about half the CPU of a session append (#15). Values written by older
    Engrams (compressed JSON bytes) still read; keys keep JSONDisk's encoding, so every existing key is found.
    Values stay JSON, never pickle: nothing read back from disk can execute code.
    """

    def store(self, value: Any, read: bool, key: Any = diskcache.UNKNOWN) -> tuple[int, int, str | None, Any]:
        """Store `value` as JSON text (a file-like `value` is stored as its bytes, as diskcache does)."""
        if read:
            return diskcache.Disk.store(self, value, read, key=key)  # type: ignore[no-any-return]
        return diskcache.Disk.store(self, json.dumps(value), read, key=key)  # type: ignore[no-any-return]

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        """The stored value: JSON text as written now, or the compressed JSON bytes an older Engram wrote."""
        data = diskcache.Disk.fetch(self, mode, filename, value, read)
        if read:
            return data
        if isinstance(data, str):
            return json.loads(data)
        return json.loads(zlib.decompress(data).decode("utf-8"))
