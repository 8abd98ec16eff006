"""The pseudonym key of a data directory: made once, kept beside the data, and never silently replaced.

Every user id is stored as a keyed hash, so the memories of a data directory can only be found (and erased)
with the key they were written with. A key that is missing or different is refused while the directory holds
memories, instead of starting over with a new key that would orphan all of them without a word.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

from engram.config import Settings
from engram.core.errors import InvalidInput, UserKeyLost

#: Beside the key file: a keyed hash of a fixed text, so a later start can tell the right key from another one
#: without the key being stored a second time.
CHECK_FILE = "user-id.check"
_CHECK_TEXT = b"engram: the pseudonym key of this data directory"


def user_id_key(settings: Settings) -> bytes:
    """The pseudonym key: from ENGRAM_USER_ID_KEY, else from the key file, created owner-only on first run.

    Raises UserKeyLost when the data directory holds memories and the key is missing or is not the one they
    were written with.
    """
    if settings.user_id_key is not None:
        key = settings.user_id_key.get_secret_value().encode()
        if len(key) < 16:
            raise InvalidInput("ENGRAM_USER_ID_KEY", "must be at least 16 characters.")
    else:
        key = _key_from_file(settings)
    _check_key(settings, key)
    return key


def stores_of(settings: Settings) -> list[Path]:
    """The store folders of the data directory that exist: the ones whose memories the key unlocks."""
    return [p for p in (settings.long_term_dir, settings.session_cache_dir, settings.knowledge_dir) if p.exists()]


def _key_from_file(settings: Settings) -> bytes:
    path = settings.user_key_file
    if not path.exists() and stores_of(settings):
        raise UserKeyLost(
            f"The pseudonym key file {path} is missing, but {settings.data_dir} holds memories written with it: "
            "without that key none of them can be found or erased, so Engram does not start. Restore user-id.key "
            f"from a backup of {settings.data_dir} (or set ENGRAM_USER_ID_KEY to its contents). {_FRESH_START}"
        )
    try:
        # O_EXCL: when several servers start at once, exactly one creates the key and the others read it.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):
            key = path.read_bytes().strip()
            if key:
                return key
            time.sleep(0.02)  # another process is writing it right now
        raise InvalidInput("ENGRAM_USER_ID_KEY", f"the key file {path} is empty; restore it from a backup.") from None
    key = secrets.token_hex(32).encode()
    with os.fdopen(descriptor, "wb") as out:
        out.write(key)
        out.flush()
        os.fsync(out.fileno())
    return key


_FRESH_START = (
    "To start afresh instead, move the folders lancedb, sessions and knowledge out of the data directory: the "
    "memories in them stay unreadable without the key (delete them to erase every user's)."
)


def _check_key(settings: Settings, key: bytes) -> None:
    """Refuse a key other than the one the stored memories were written with; record it when there is none."""
    path = settings.data_dir / CHECK_FILE
    check = hmac.new(key, _CHECK_TEXT, hashlib.sha256).hexdigest()
    try:
        recorded = path.read_text().strip()
    except FileNotFoundError:
        recorded = None
    if recorded == check:
        return
    if recorded is not None and stores_of(settings):
        source = (
            "ENGRAM_USER_ID_KEY is"
            if settings.user_id_key is not None
            else f"the key in {settings.user_key_file} (user-id.key) is"
        )
        raise UserKeyLost(
            f"{source} not the key the memories in {settings.data_dir} were written with: with it none of them "
            "can be found or erased, so Engram does not start. Restore the original user-id.key from a backup "
            f"(or set ENGRAM_USER_ID_KEY to its contents). {_FRESH_START}"
        )
    # A new data directory, one written before this check existed, or one whose stores were moved away.
    temporary = path.with_name(f".{CHECK_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
        out.write(check)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
