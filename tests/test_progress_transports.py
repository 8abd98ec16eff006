"""Progress of a long tool call is complete on every transport: the last notification arrives before the result."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from tests.helpers import ok
from tests.http_server import spawn

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def _docs(root: Path) -> Path:
    docs = root / "docs"
    docs.mkdir(parents=True)
    for n in (1, 2):
        (docs / f"note{n}.md").write_text(f"# Note {n}\n\nSomething worth knowing, number {n}.\n")
    return docs


async def _ingest_with_progress(client: Client, docs: Path) -> list[tuple[float, float | None]]:
    seen: list[tuple[float, float | None]] = []

    async def on_progress(done: float, total: float | None, _message: str | None) -> None:
        seen.append((done, total))

    ok(
        await client.call_tool(
            "ingest_files", {"user_id": "alice", "paths": [str(docs)]}, progress_callback=on_progress
        )
    )
    return seen  # read at the moment the result arrived


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_stdio_delivers_the_last_progress_before_the_result(tmp_path: Path, mode: str) -> None:
    docs = _docs(tmp_path)
    env = {key: value for key, value in os.environ.items() if not key.startswith("ENGRAM_")}
    env |= {
        "ENGRAM_DATA_DIR": str(tmp_path / "data"),
        "ENGRAM_EMBEDDING_MODEL": "hash",
        "ENGRAM_TOOLS": "all",
        "ENGRAM_KNOWLEDGE_ROOTS": json.dumps([str(docs)]),
    }
    server = StdioServerParameters(command=sys.executable, args=["-m", "engram", "serve"], env=env)
    async with Client(server, mode=mode) as client:  # type: ignore[arg-type]
        assert await _ingest_with_progress(client, docs) == [(0, 3), (1, 3), (2, 3), (3, 3)]


async def test_sse_delivers_the_last_progress_before_the_result(tmp_path: Path) -> None:
    from tests.http_server import connect, issue_token

    docs = _docs(tmp_path)
    server = spawn(tmp_path / "data", "sse", env={"ENGRAM_KNOWLEDGE_ROOTS": json.dumps([str(docs)])})
    try:
        async with connect(server, issue_token(server.data_dir, ["alice"], ["read", "write"])) as client:
            assert await _ingest_with_progress(client, docs) == [(0, 3), (1, 3), (2, 3), (3, 3)]
    finally:
        assert server.stop() == 0, server.log()
