"""Several server processes on one data directory: no lost writes, no duplicates, no failed calls."""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path

import anyio
import lancedb
import pytest
from mcp import Client, StdioServerParameters

from tests.helpers import ok

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SERVERS = 4
CALLS = 200


def _server(data_dir: Path) -> StdioServerParameters:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    env |= {"ENGRAM_DATA_DIR": str(data_dir), "ENGRAM_EMBEDDING_MODEL": "hash", "ENGRAM_LOG_LEVEL": "WARNING"}
    return StdioServerParameters(command=sys.executable, args=["-m", "engram", "serve"], env=env)


async def test_four_servers_writing_at_once_store_every_memory_exactly_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    acknowledged: list[str] = []

    async def writer(number: int) -> None:
        async with Client(_server(data_dir)) as client:
            for i in range(CALLS):
                # Every fourth call writes content the other servers write too.
                content = f"shared fact {i % 50}" if i % 4 == 0 else f"server {number} fact {i}"
                result = ok(await client.call_tool("remember", {"user_id": "alice", "content": content}))
                acknowledged.append(result["id"])

    with anyio.fail_after(240):
        async with anyio.create_task_group() as servers:
            for number in range(SERVERS):
                servers.start_soon(writer, number)
    assert len(acknowledged) == SERVERS * CALLS  # no call failed

    # A fifth, fresh process sees every acknowledged memory, each exactly once.
    async with Client(_server(data_dir)) as client:
        hits = ok(
            await client.call_tool(
                "recall", {"detail": "full", "user_id": "alice", "query": "shared fact 8", "top_k": 50}
            )
        )
        assert "shared fact 8" in [h["memory"]["content"] for h in hits["memories"]]
    rows = lancedb.connect(str(data_dir / "lancedb")).open_table("memories").to_arrow().column("id").to_pylist()
    assert set(rows) == set(acknowledged)
    assert max(Counter(rows).values()) == 1
