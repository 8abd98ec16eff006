"""`engram doctor`: read every file of every store in a data directory and say which are damaged and what to do.

Nothing is written or repaired: the stores are opened for reading only (SQLite files as read-only URIs, LanceDB
tables through pylance), every fragment of each table is read whole, and each SQLite file gets SQLite's own check.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

Status = Literal["ok", "warning", "damaged"]

_RESTORE = "Stop Engram; restore {what} from a backup (or move it aside to start empty), then run doctor again."


@dataclass(frozen=True)
class Finding:
    """The state of one component of a data directory."""

    component: str
    status: Status
    path: str
    detail: str
    action: str = ""
    #: Rows or entries found (0 when none, unknown or damaged).
    items: int = 0

    def as_dict(self) -> dict[str, object]:
        """The finding as JSON-ready fields."""
        return asdict(self)


@dataclass(frozen=True)
class Layout:
    """Where each store of a data directory lives (from Settings, so the doctor checks what the server opens)."""

    data_dir: Path
    long_term_dir: Path
    knowledge_dir: Path
    session_cache_dir: Path
    key_file: Path
    key_from_environment: bool
    graph_dir: Path | None = None


def examine(layout: Layout) -> list[Finding]:
    """Check every component of the data directory; one finding per component, in a fixed order."""
    if not layout.data_dir.is_dir():
        return [Finding("data directory", "warning", str(layout.data_dir), "does not exist yet (nothing stored)")]
    findings = [_data_dir(layout.data_dir)]
    long_term = _lance_table("long-term memory", layout.long_term_dir / "memories.lance")
    knowledge = _lance_table("knowledge memory", layout.knowledge_dir / "knowledge.lance")
    journal = _sqlite(
        "write journal",
        layout.long_term_dir / "journal.sqlite",
        _RESTORE.format(what="the lancedb folder (table and journal together)"),
        "SELECT count(*) FROM pending",
        "{} acknowledged writes waiting to move into the table",
    )
    sessions = _sqlite(
        "sessions",
        layout.session_cache_dir / "cache.db",
        _RESTORE.format(what="the sessions folder"),
        "SELECT count(*) FROM Cache",
        "{} entries (working and short-term memory)",
    )
    graph = []
    if layout.graph_dir is not None:
        graph = [
            _lance_table("graph entities", layout.graph_dir / "entities.lance"),
            _lance_table("graph relations", layout.graph_dir / "relations.lance"),
        ]
    stores = (long_term, knowledge, journal, sessions, *graph)
    holds_memories = any(f.items or f.status == "damaged" for f in stores)
    findings += [_key(layout, holds_memories), long_term, journal, knowledge, sessions, *graph]
    return findings


def _permissions(path: Path, what: str) -> Finding | None:
    """A finding if the server could not read and write `path`, else None."""
    if not os.access(path, os.R_OK | os.W_OK | (os.X_OK if path.is_dir() else 0)):
        return Finding(
            what,
            "damaged",
            str(path),
            "Engram cannot read and write it (permission denied)",
            f"Give the user running Engram read and write access: chown -R <user> {path}; chmod -R u+rwX {path}",
        )
    return None


def _data_dir(path: Path) -> Finding:
    refused = _permissions(path, "data directory")
    if refused is not None:
        return refused
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        return Finding(
            "data directory",
            "warning",
            str(path),
            "other users of this machine may read it",
            f"chmod 700 {path}",
        )
    return Finding("data directory", "ok", str(path), "owner-only")


def _key(layout: Layout, holds_memories: bool) -> Finding:
    path = layout.key_file
    if layout.key_from_environment:
        return Finding("pseudonym key", "ok", "ENGRAM_USER_ID_KEY", "given in the environment")
    if not path.exists():
        if holds_memories:
            return Finding(
                "pseudonym key",
                "damaged",
                str(path),
                "missing while memories are stored: without it no stored memory can be found or erased",
                f"Stop Engram and restore {path} from a backup (or set ENGRAM_USER_ID_KEY to the key it held).",
            )
        return Finding("pseudonym key", "ok", str(path), "not created yet (made at the first start)")
    refused = _permissions(path, "pseudonym key")
    if refused is not None:
        return refused
    if len(path.read_bytes().strip()) < 16:
        return Finding(
            "pseudonym key",
            "damaged",
            str(path),
            "empty or too short",
            f"Stop Engram and restore {path} from a backup.",
        )
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        return Finding("pseudonym key", "warning", str(path), "readable by other users", f"chmod 600 {path}")
    return Finding("pseudonym key", "ok", str(path), "present, owner-only")


def _sqlite(component: str, path: Path, action: str, count_sql: str, counted: str) -> Finding:
    if not path.exists():
        return Finding(component, "ok", str(path), "not created yet")
    refused = _permissions(path, component)
    if refused is not None:
        return refused
    try:
        # Read-only: the check must never change what it inspects.
        connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        try:
            problems = [row[0] for row in connection.execute("PRAGMA integrity_check").fetchall()]
            if problems != ["ok"]:
                return Finding(component, "damaged", str(path), "; ".join(problems[:3]), action)
            count = int(connection.execute(count_sql).fetchone()[0])
        finally:
            connection.close()
    except sqlite3.Error as exc:
        return Finding(component, "damaged", str(path), str(exc), action)
    return Finding(component, "ok", str(path), counted.format(count), items=count)


def _lance_table(component: str, path: Path) -> Finding:
    import lance

    action = _RESTORE.format(what=f"the table folder {path}")
    if not path.exists():
        return Finding(component, "ok", str(path), "not created yet")
    refused = _permissions(path, component)
    if refused is not None:
        return refused
    try:
        dataset: Any = lance.dataset(str(path))
        fragments = dataset.get_fragments()
        indices = dataset.describe_indices()
    except Exception as exc:  # the manifest or version files themselves
        return Finding(component, "damaged", str(path), _first_line(exc), action)
    rows = 0
    damaged: list[tuple[Path, str]] = []
    for fragment in fragments:
        files = [path / "data" / f.path for f in fragment.data_files()]
        missing = [f for f in files if not f.exists()]
        if missing:
            damaged += [(f, "a data file the table lists is missing") for f in missing]
            continue
        read = _attempt(fragment.to_table)
        if isinstance(read, Exception):
            damaged.append((files[0], _first_line(read)))
        else:
            rows += read.num_rows  # reading a fragment applies its deletion file too
    for index in indices:
        for segment in index.segments:
            folder = path / "_indices" / str(segment.uuid)
            if not folder.is_dir():
                damaged.append((folder, f"the files of index {index.name} are missing"))
    if damaged:
        first, detail = damaged[0]
        if len(damaged) > 1:
            detail += f"; {len(damaged) - 1} more damaged: " + ", ".join(str(f) for f, _ in damaged[1:])
        return Finding(component, "damaged", str(first), detail, action)
    if not fragments:
        return Finding(component, "ok", str(path), "no rows")
    return Finding(component, "ok", str(path), f"{rows} rows in {len(fragments)} fragments, every one read", items=rows)


def _attempt(read: Callable[[], Any]) -> Any:
    """The result of `read`, or the exception it raised."""
    try:
        return read()
    except Exception as exc:
        return exc


def _first_line(exc: BaseException) -> str:
    """An engine's message up to the first Rust source location, which says nothing to an operator."""
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return message.split(", /rustc/")[0].split(", /home/")[0][:300]
