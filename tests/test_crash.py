"""Crash safety: a server SIGKILLed in the middle of a stream of writes loses no acknowledged write and stores a
retried write once."""

from __future__ import annotations

import os
import random
import signal
import sys
from collections import Counter
from pathlib import Path

import anyio
import lancedb
import pytest
from mcp import Client, MCPError, StdioServerParameters

from tests.helpers import ok

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

KILLS = 10


def _server(data_dir: Path) -> StdioServerParameters:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    env |= {"ENGRAM_DATA_DIR": str(data_dir), "ENGRAM_EMBEDDING_MODEL": "hash", "ENGRAM_LOG_LEVEL": "WARNING"}
    return StdioServerParameters(command=sys.executable, args=["-m", "engram", "serve"], env=env)


def _server_pid(data_dir: Path) -> int:
    """The pid of the `engram serve` child this test spawned on `data_dir` (the stdio client hides it)."""
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"ENGRAM_DATA_DIR={data_dir}\0".encode() in environ.read_bytes():
                cmdline = (environ.parent / "cmdline").read_bytes()
                if b"serve" in cmdline:
                    return int(environ.parent.name)
        except OSError:
            continue
    raise AssertionError("the server process was not found")


def _stored_ids(data_dir: Path) -> list[str]:
    table = lancedb.connect(str(data_dir / "lancedb")).open_table("memories")
    return [str(i) for i in table.to_arrow().column("id").to_pylist()]


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the server's pid through /proc")
async def test_sigkill_during_writes_loses_no_acknowledged_write_and_retries_store_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    acknowledged: dict[str, str] = {}  # id -> content
    in_flight: list[str] = []  # content sent when the server died, never acknowledged
    rng = random.Random(6)
    counter = 0

    for kill in range(KILLS + 1):
        async with Client(_server(data_dir)) as client:
            # The store opens (replaying whatever the killed server had journalled) and answers.
            ok(await client.call_tool("recall", {"detail": "full", "user_id": "alice", "query": "anything"}))
            stored = Counter(_stored_ids(data_dir))
            missing = set(acknowledged) - set(stored)
            assert not missing, f"after kill {kill}: {len(missing)} acknowledged writes lost"
            assert max(stored.values(), default=1) == 1, f"after kill {kill}: a memory is stored twice"

            # Writes the client never saw acknowledged are retried, and each must be stored once.
            for content in in_flight:
                result = ok(await client.call_tool("remember", {"user_id": "alice", "content": content}))
                acknowledged[result["id"]] = content
            in_flight.clear()
            if kill == KILLS:
                break

            pid = _server_pid(data_dir)

            async def kill_soon(pid: int = pid) -> None:
                # At a random moment: inside a call, between calls, or while the journal is being flushed.
                await anyio.sleep(rng.uniform(0.3, 1.2))
                os.kill(pid, signal.SIGKILL)

            async def write_until_killed(kill: int = kill) -> None:
                nonlocal counter
                while True:
                    counter += 1
                    content = f"crash-safe note {counter}: {rng.random()}"
                    in_flight.append(content)
                    arguments = {"user_id": "alice", "content": content}
                    if counter % 3 == 0:
                        arguments["session_id"] = f"s{kill}"
                    result = ok(await client.call_tool("remember", arguments))
                    in_flight.remove(content)
                    acknowledged[result["id"]] = content

            # The writer's call fails because its server died: the session reports the closed connection.
            died = pytest.RaisesGroup(pytest.RaisesExc(MCPError, match="Connection closed"), flatten_subgroups=True)
            with anyio.fail_after(30), died:
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(kill_soon)
                    tasks.start_soon(write_until_killed)

    stored = Counter(_stored_ids(data_dir))
    assert set(acknowledged) <= set(stored)
    assert max(stored.values()) == 1
    assert len(acknowledged) > KILLS * 10  # the stream really was writing when the kills hit
