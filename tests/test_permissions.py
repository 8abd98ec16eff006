"""Owner-only data: whatever the mode of the data directory, nothing Engram writes is readable by other users."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
from mcp import Client

from engram.config import Settings
from engram.embeddings.hashing import HashEmbedder
from engram.server.app import build_server
from tests.helpers import ok

pytestmark = pytest.mark.anyio


def _open_to_others(root: Path) -> list[str]:
    """Every file and folder under `root` that its group or other users may read, write or enter."""
    return sorted(
        f"{path.relative_to(root)} {stat.S_IMODE(path.lstat().st_mode):o}"
        for path in root.rglob("*")
        if stat.S_IMODE(path.lstat().st_mode) & 0o077
    )


async def test_a_world_readable_data_dir_gets_owner_only_files_and_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)  # made by the operator, e.g. with a plain mkdir
    caplog.set_level(logging.WARNING)
    # The usual umask of a login shell: without Engram's own, every store would create 644 files and 755 folders.
    previous = os.umask(0o022)
    try:
        settings = Settings(data_dir=data, embedding_model="hash", tools="all")
        async with Client(build_server(settings, embedder=HashEmbedder()), raise_exceptions=True) as client:
            for i in range(3):
                turn = {"user_id": "alice", "content": f"note {i} about the garden", "session_id": "s1"}
                ok(await client.call_tool("remember", turn))
            ok(await client.call_tool("summarize_session", {"user_id": "alice", "session_id": "s1", "keep_recent": 1}))
            ok(
                await client.call_tool(
                    "recall", {"detail": "full", "user_id": "alice", "query": "garden", "session_id": "s1"}
                )
            )
            document = {"user_id": "alice", "source": "notes/garden.md", "text": "# Garden\n\nWater the basil."}
            ok(await client.call_tool("ingest_text", document))
            ok(await client.call_tool("forget_user", {"user_id": "bob", "confirm": True}))
        assert _open_to_others(data) == []
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(str(data) in message and "755" in message for message in warnings), warnings

        # A data directory written by an earlier version, without the umask: it is closed at the next start.
        for path in data.rglob("*"):
            path.chmod(stat.S_IMODE(path.stat().st_mode) | (0o755 if path.is_dir() else 0o644))
        async with Client(build_server(settings, embedder=HashEmbedder()), raise_exceptions=True) as client:
            ok(await client.call_tool("recall", {"detail": "full", "user_id": "alice", "query": "garden"}))
        assert _open_to_others(data) == []
    finally:
        os.umask(previous)
