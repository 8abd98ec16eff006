"""A user's recall index saved beside the memories table, so that a server's first recall skips reading the table.

Loading a user's 10,000 rows from LanceDB and tokenising their text cost ~0.3 CPU-s of a server's start. A
snapshot holds what the index holds (vectors, filter columns, BM25 postings, the memories' values) in one
uncompressed `.npz` file per user under `recall-snapshots/` next to the table, named by a hash of the user's
stored id, and is tagged with the table version it answers for: it is used only while that version is still the
table's latest, so a write by any process since makes it stale. The user's id is stored in it in clear, so the
erasure check that scans the store's files for the id finds a snapshot left behind. Loading needs numpy alone and
no pickle: any fault in the file means it is ignored and the rows are read from the table.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from engram.storage.recall_index import UserIndex

logger = logging.getLogger(__name__)

FOLDER = "recall-snapshots"
#: Bumped whenever what `UserIndex.state` holds changes: older snapshots are then ignored.
FORMAT = 1
_HEADER, _META = "header", "meta"


def _json_array(value: Any) -> Any:
    """A JSON value as a byte array, the form an `.npz` member without pickle can hold."""
    return np.frombuffer(json.dumps(value, separators=(",", ":")).encode(), dtype=np.uint8)


def snapshot_path(folder: Path, user_id: str) -> Path:
    """Where the user's snapshot lives in `folder` (the id hashed: file names are listed where contents are not)."""
    return folder / f"{hashlib.sha256(user_id.encode()).hexdigest()[:32]}.npz"


def data_files(table_dir: Path) -> dict[str, int]:
    """The table's data files and their sizes (a snapshot is read only while they are as they were)."""
    try:
        return {entry.name: entry.stat().st_size for entry in os.scandir(table_dir / "data")}
    except FileNotFoundError:
        return {}


def _header(user_id: str, version: int, model_id: str, table_dir: Path) -> dict[str, Any]:
    # The data files too: a damaged (truncated, removed) fragment must be found by reading the table, as without
    # a snapshot, not hidden behind an intact copy of its rows.
    files = data_files(table_dir)
    return {"format": FORMAT, "user_id": user_id, "version": version, "model_id": model_id, "data_files": files}


def save_snapshot(folder: Path, user_id: str, version: int, model_id: str, index: UserIndex, table_dir: Path) -> None:
    """Write the user's index as answering for table `version`, replacing any older snapshot at once."""
    arrays, state = index.state()
    header = _header(user_id, version, model_id, table_dir)
    folder.mkdir(mode=0o700, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=folder, prefix=".writing-", suffix=".npz")  # created owner-only
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, allow_pickle=False, **{_HEADER: _json_array(header), _META: _json_array(state)}, **arrays)
        os.replace(name, snapshot_path(folder, user_id))
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def load_snapshot(
    folder: Path, user_id: str, version: int, dimensions: int, model_id: str, table_dir: Path
) -> UserIndex | None:
    """The user's index from a snapshot answering for table `version`; None when missing, stale or unreadable."""
    path = snapshot_path(folder, user_id)
    try:
        # Opened here, not by numpy: np.load leaves its own file open when the archive is damaged.
        with path.open("rb") as file, np.load(file, allow_pickle=False) as stored:
            header = json.loads(stored[_HEADER].tobytes())
            if header != _header(user_id, version, model_id, table_dir):
                return None  # stale (the table moved on or its files changed), another format, model or user
            meta = json.loads(stored[_META].tobytes())
            arrays: dict[str, Any] = {name: stored[name] for name in stored.files if name not in (_HEADER, _META)}
        return UserIndex.restored(dimensions, arrays, meta)
    except FileNotFoundError:
        return None
    except Exception as exc:  # a damaged or foreign file: the table has the rows
        logger.warning("ignoring the recall snapshot %s (%s); reading the table instead", path.name, type(exc).__name__)
        return None


def erase_snapshots(folder: Path) -> None:
    """Remove every user's snapshot (any erasure makes them all stale, and they hold what was erased)."""
    shutil.rmtree(folder, ignore_errors=True)
