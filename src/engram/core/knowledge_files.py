"""Finding the documents an ingest names: files, and folders searched recursively, filtered and confined."""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Sequence
from pathlib import Path

from engram.core.errors import InvalidInput, quoted
from engram.core.knowledge_models import SUFFIX_FORMATS, FileProblem

MAX_GLOBS = 32
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _matches(relative: str, name: str, globs: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(relative, g) or fnmatch.fnmatch(name, g) for g in globs)


def check_globs(field: str, globs: Sequence[str]) -> list[str]:
    """The include or exclude patterns, each 1-256 characters without control characters, at most MAX_GLOBS."""
    if len(globs) > MAX_GLOBS:
        raise InvalidInput(field, f"at most {MAX_GLOBS} patterns are accepted, got {len(globs)}.")
    for glob in globs:
        if not glob.strip() or len(glob) > 256 or _CONTROL.search(glob):
            raise InvalidInput(
                field, f"each pattern must be 1-256 characters without control characters: {quoted(glob)}."
            )
    return list(globs)


def _under(path: Path, roots: Sequence[Path]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def discover(
    paths: Sequence[str | Path], include: list[str], exclude: list[str], roots: list[Path], confined: bool
) -> tuple[list[Path], list[Path], list[FileProblem]]:
    """The supported files named or found under the named folders, the folders, and what could not be used."""
    files: dict[Path, None] = {}
    folders: list[Path] = []
    problems: list[FileProblem] = []
    accepted = ", ".join(sorted(SUFFIX_FORMATS))
    for raw in paths:
        if "\x00" in str(raw) or not str(raw).strip():
            raise InvalidInput("paths", f"{quoted(str(raw))} is not a file or folder path.")
        path = Path(raw).expanduser().absolute()
        resolved = path.resolve()
        if confined and not _under(resolved, roots):
            raise InvalidInput(
                "paths",
                f"{quoted(str(raw))} is outside the folders this server ingests from "
                f"({', '.join(str(r) for r in roots)}).",
            )
        try:
            is_folder = resolved.is_dir()
        except OSError as exc:  # a name too long for the file system, a loop of links
            raise InvalidInput("paths", f"{quoted(str(raw))} cannot be read: {exc.strerror}.") from None
        if is_folder:
            folders.append(resolved)
            for directory, subdirs, names in os.walk(resolved):
                # Hidden folders (.git, .venv) and files are never documents to cite.
                subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
                for name in sorted(names):
                    file = Path(directory) / name
                    if name.startswith(".") or file.suffix.lower() not in SUFFIX_FORMATS:
                        continue
                    relative = file.relative_to(resolved).as_posix()
                    if include and not _matches(relative, name, include):
                        continue
                    if _matches(relative, name, exclude):
                        continue
                    if confined and not _under(file.resolve(), roots):
                        problems.append(FileProblem(source=str(file), reason="links outside the allowed folders"))
                        continue
                    files[file] = None
        elif resolved.is_file() or path.is_symlink():
            if path.suffix.lower() not in SUFFIX_FORMATS:
                problems.append(FileProblem(source=str(path), reason=f"unsupported format; accepted: {accepted}"))
            else:
                files[resolved if resolved.is_file() else path] = None
        else:
            problems.append(FileProblem(source=str(path), reason="no such file or folder"))
    return list(files), folders, problems
