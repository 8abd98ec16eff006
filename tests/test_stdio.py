"""End to end over stdio: the exact command from mcp.json, run as a real subprocess.

The file spawns three servers: two with the real model on the default backend (write, then read back
in a fresh process) and one with the fast `hash` embedder for the bad-input checks, which exercise
validation rather than semantics. The real-model servers share the test session's ONNX export
(ENGRAM_MODELS_DIR) instead of exporting the model again into their fresh data directory.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from tests.helpers import error, ok

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parent.parent
MCP_JSON = REPO_ROOT / "mcp.json"
PLACEHOLDER = "/path/to/engram"

#: Generous per-process budget: start, model load, a few calls, and shutdown.
PROCESS_TIMEOUT_S = 90

FACTS = [
    "Alice is severely allergic to peanuts and carries an EpiPen everywhere.",
    "Alice's daughter is called Maya; she is nine and plays the violin in the school orchestra.",
    "Alice works as a nurse in the intensive care unit, mostly on night shifts.",
]


def mcp_json_launch(data_dir: Path, **extra_env: str) -> StdioServerParameters:
    """The launch spec of `mcpServers.engram` in mcp.json, pointed at this checkout and at `data_dir`.

    The environment is ours with mcp.json's `env` merged over it; ENGRAM_* variables of the outer
    environment are dropped so that a developer's settings cannot change what is being tested.
    """
    spec = json.loads(MCP_JSON.read_text())["mcpServers"]["engram"]
    command = spec["command"].replace(PLACEHOLDER, str(REPO_ROOT))
    args = [arg.replace(PLACEHOLDER, str(REPO_ROOT)) for arg in spec.get("args", [])]
    if not Path(command).exists():
        # In CI `make test` has just created .venv, so a missing command is a real failure there. Elsewhere (a
        # virtualenv outside .venv) the same entry point is run by this interpreter: never a silent skip.
        if os.environ.get("CI"):
            pytest.fail(f"mcp.json's command resolves to {command}, which does not exist in this checkout")
        command, args = sys.executable, ["-m", "engram", *args]
    env = {key: value for key, value in os.environ.items() if not key.startswith("ENGRAM_")}
    env |= spec.get("env", {})
    env |= {"ENGRAM_DATA_DIR": str(data_dir), **extra_env}
    return StdioServerParameters(command=command, args=args, env=env)


@asynccontextmanager
async def serve(params: StdioServerParameters) -> AsyncIterator[Client]:
    """A client connected to a freshly spawned server; the whole session must finish in time."""
    with anyio.fail_after(PROCESS_TIMEOUT_S):
        async with Client(params) as client:
            yield client


def spawned_servers() -> list[int]:
    """Pids of the `engram serve` processes this test process has spawned and that are still running (Linux)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we looked
        if parent == os.getpid() and b"serve" in command:
            pids.append(int(stat.parent.name))
    return pids


def top_content(recalled: dict[str, Any]) -> str:
    memories = recalled["memories"]
    assert memories, f"recall returned no memories: {recalled}"
    return memories[0]["memory"]["content"]


async def test_mcp_json_command_remembers_across_processes(tmp_path: Path, onnx_models_dir: Path) -> None:
    data_dir = tmp_path / "data"
    params = mcp_json_launch(data_dir, ENGRAM_MODELS_DIR=str(onnx_models_dir))

    async with serve(params) as client:
        tools = await client.list_tools()
        # The exact tool list is checked in-process (test_tools); here: the core tools reach a real client.
        assert {"remember", "recall", "summarize_session", "forget_user"} <= {tool.name for tool in tools.tools}
        resources = await client.list_resources()
        assert [str(resource.uri) for resource in resources.resources] == ["engram://stats"]
        templates = await client.list_resource_templates()
        assert {"engram://users/{user_id}/memories", "engram://users/{user_id}/sessions"} <= {
            t.uri_template for t in templates.resource_templates
        }

        ids = set()
        for turn, fact in enumerate(FACTS, 1):
            stored = ok(await client.call_tool("remember", {"user_id": "alice", "session_id": "s1", "content": fact}))
            assert stored["created"] is True
            assert stored["session_turns"] == turn
            ids.add(stored["id"])
        assert len(ids) == len(FACTS)

    assert (data_dir / "lancedb").is_dir(), "the first process left no long-term store behind"

    # A new process on the same data dir: nothing is shared with the first one but the disk.
    async with serve(params) as client:
        recalled = ok(
            await client.call_tool(
                "recall", {"detail": "full", "user_id": "alice", "query": "what food can't she eat?", "top_k": 3}
            )
        )
        assert top_content(recalled) == FACTS[0], json.dumps(recalled["memories"], indent=2)
        assert sorted(hit["memory"]["content"] for hit in recalled["memories"]) == sorted(FACTS)
        assert recalled["working"] == [], "no session_id was passed, so no working memory is returned"

        instrument = {"detail": "full", "user_id": "alice", "query": "Which instrument does her kid play?"}
        assert top_content(ok(await client.call_tool("recall", instrument))) == FACTS[1]

        other_user = ok(
            await client.call_tool("recall", {"detail": "full", "user_id": "bob", "query": "what food can't she eat?"})
        )
        assert other_user["memories"] == []
        assert other_user["working"] == []

        stats = json.loads((await client.read_resource("engram://stats")).contents[0].text)
        assert stats["status"] == "ready"
        assert stats["embedding_model"] == "all-MiniLM-L6-v2"
        assert stats["long_term"]["items"] == len(FACTS)

        if sys.platform == "linux":
            # The default backend serves the model without torch: no torch library is mapped in the server.
            (pid,) = spawned_servers()
            libraries = Path(f"/proc/{pid}/maps").read_text()
            assert "onnxruntime" in libraries, "this is not the process that embeds"
            assert "libtorch" not in libraries, "the server process loaded torch"
    assert not (data_dir / "models").exists(), "the model was exported again instead of using ENGRAM_MODELS_DIR"


async def test_bad_input_does_not_kill_the_server(tmp_path: Path) -> None:
    params = mcp_json_launch(tmp_path / "data", ENGRAM_EMBEDDING_MODEL="hash")

    async with serve(params) as client:
        blank = error(
            await client.call_tool("remember", {"user_id": "alice", "session_id": "s1", "content": " \t\n  "})
        )
        assert "content" in blank
        assert "whitespace" in blank

        too_many = error(
            await client.call_tool("recall", {"detail": "full", "user_id": "alice", "query": "peanuts", "top_k": 500})
        )
        assert "top_k" in too_many
        assert "50" in too_many

        stored = ok(
            await client.call_tool("remember", {"user_id": "alice", "content": "Alice is allergic to peanuts."})
        )
        assert stored["created"] is True
        recalled = ok(
            await client.call_tool("recall", {"detail": "full", "user_id": "alice", "query": "peanuts", "top_k": 1})
        )
        assert top_content(recalled) == "Alice is allergic to peanuts."
