"""How the session store lays out its values on disk: plain JSON text, and the zlib-compressed JSON of older Engrams."""

from __future__ import annotations

import json
import zlib
from functools import lru_cache
from typing import Any

import diskcache

#: Keys remembered in their stored form: a busy session's headers, its recent turns and the turn each append pushes
#: out of the window (at most the kept turns back), for a few sessions at once.
ENCODED_KEYS = 4096


@lru_cache(maxsize=ENCODED_KEYS)
def _encoded_key(key: str, level: int) -> bytes:
    """A string key as JSONDisk stores it (zlib-compressed JSON): deterministic, so it is computed once per key."""
    return zlib.compress(json.dumps(key).encode("utf-8"), level)


def forget_encoded_keys() -> None:
    """Drop every remembered key form (keys name users and sessions: erasure leaves none in the process)."""
    _encoded_key.cache_clear()


class PlainJSONDisk(diskcache.JSONDisk):  # type: ignore[misc]
    """diskcache's JSONDisk without compressing values: a session's values are a few hundred bytes of JSON.

    Compressing and decompressing them was about half the CPU of a session append (#15). Values written by older
    Engrams (compressed JSON bytes) still read; keys keep JSONDisk's encoding, so every existing key is found.
    Values stay JSON, never pickle: nothing read back from disk can execute code.
    """

    def put(self, key: Any) -> tuple[Any, bool]:
        """The database form of `key`, as JSONDisk writes it, from a cache for string keys.

        An append reads and writes ~9 keys, and each compression sets up a fresh deflate state (~256 KB); in the
        server's worker threads that was 0.6-0.8 ms of a turn's CPU (#15). The bytes are the same either way.
        """
        if type(key) is not str:
            return super().put(key)  # type: ignore[no-any-return]
        return diskcache.Disk.put(self, _encoded_key(key, self.compress_level))  # type: ignore[no-any-return]

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
