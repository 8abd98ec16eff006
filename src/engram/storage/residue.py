"""Looking for what erasure left behind: which files of a store still hold a user's key."""

from __future__ import annotations

import os
from pathlib import Path


def files_containing(directory: Path, key: str) -> list[str]:
    """The files under `directory` (named relative to its parent) whose bytes contain `key`."""
    needle = key.encode()
    named: list[str] = []
    # os.walk skips a folder that vanishes meanwhile (another server's clean-up), where Path.rglob may raise.
    for folder, _, files in os.walk(directory):
        for name in files:
            path = Path(folder, name)
            try:
                if needle in path.read_bytes():
                    named.append(str(path.relative_to(directory.parent)))
            except FileNotFoundError:
                continue
    return sorted(named)
