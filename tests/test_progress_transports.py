"""Progress of a long tool call is complete on every transport: the last notification arrives before the result."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
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


class _RawStdioClient:
    """A client speaking line-delimited JSON-RPC to a stdio server, so a test sees every message in order."""

    def __init__(self, process: Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self._stdin = process.stdin
        self._stdout = BufferedByteReceiveStream(process.stdout)

    async def send(self, message: dict[str, Any]) -> None:
        await self._stdin.send(json.dumps(message).encode() + b"\n")

    async def receive(self) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(await self._stdout.receive_until(b"\n", 1 << 20))
        return message


async def test_a_result_that_follows_progress_waits_until_the_client_has_answered_a_ping(tmp_path: Path) -> None:
    """The TypeScript SDK drops progress it reads together with the result; the server makes it read them apart."""
    docs = _docs(tmp_path)
    env = {key: value for key, value in os.environ.items() if not key.startswith("ENGRAM_")}
    env |= {
        "ENGRAM_DATA_DIR": str(tmp_path / "data"),
        "ENGRAM_EMBEDDING_MODEL": "hash",
        "ENGRAM_TOOLS": "all",
        "ENGRAM_KNOWLEDGE_ROOTS": json.dumps([str(docs)]),
    }
    with (tmp_path / "server.log").open("wb") as log:
        process = await anyio.open_process([sys.executable, "-m", "engram", "serve"], env=env, stderr=log)
    async with process:
        client = _RawStdioClient(process)
        hello = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}
        await client.send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello})
        assert (await client.receive())["id"] == 1
        await client.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        call = {"name": "ingest_files", "arguments": {"user_id": "alice", "paths": [str(docs)]}}
        await client.send(
            {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call | {"_meta": {"progressToken": 7}}}
        )
        seen: list[object] = []
        while True:
            message = await client.receive()
            if message.get("method") == "notifications/progress":
                seen.append(message["params"]["progress"])
            elif message.get("method") == "ping":
                seen.append("ping")
                # Before answering, ask something else: its answer comes first, as the result waits for ours.
                await client.send({"jsonrpc": "2.0", "id": 3, "method": "tools/list"})
                while (answer := await client.receive()).get("id") != 3:
                    seen.append(answer.get("id"))
                seen.append("listed")
                await client.send({"jsonrpc": "2.0", "id": message["id"], "result": {}})
            else:
                assert message.get("id") == 2, message
                assert "result" in message and not message["result"].get("isError"), message
                seen.append("result")
                break
        assert seen == [0, 1, 2, 3, "ping", "listed", "result"]
        await process.stdin.aclose()  # type: ignore[union-attr]
        assert await process.wait() == 0
