"""What a server loads between its start and its first answered `recall` (issue #15: start-up CPU).

Each check runs a real server in a fresh interpreter (this test process has imported everything already) through
the MCP client, answers one `recall`, closes the client (which waits for whatever the server's loader still runs),
and only then looks at `sys.modules`: a module in the list was imported on the way to the first answer.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engram.config import Settings

_FIRST_RECALL = """\
import sys
import anyio
from mcp import Client
from engram.config import Settings
from engram.server.app import build_server

async def main() -> None:
    settings = Settings(data_dir=sys.argv[1], embedding_model="hash")
    async with Client(build_server(settings), raise_exceptions=True) as client:
        result = await client.call_tool("recall", {"user_id": "ana", "query": "what does she like to eat?"})
        assert not result.is_error, result.content
        if len(sys.argv) > 2:
            await client.call_tool("remember", {"user_id": "ana", "content": sys.argv[2]})
            recalled = await client.call_tool("recall", {"user_id": "ana", "query": sys.argv[2], "detail": "full"})
            (found,) = recalled.structured_content["memories"]
            print("TAGS", ",".join(found["memory"]["tags"]))

anyio.run(main)
print("LOADED", ",".join(sorted(sys.modules)))
"""


def _loaded_after_first_recall(data_dir: Path, *then_remember: str) -> tuple[set[str], str]:
    """Modules a fresh server process held once its first recall was answered and it had closed; its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", _FIRST_RECALL, str(data_dir), *then_remember],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("LOADED ")]
    return set(line.removeprefix("LOADED ").split(",")), done.stdout


def test_the_first_recall_builds_no_metadata_extractor(tmp_path: Path) -> None:
    # Recall never extracts metadata: building the extractors (YAKE, which imports networkx) waits for a write.
    loaded, _ = _loaded_after_first_recall(tmp_path / "data")
    assert "engram.core.service" in loaded  # the memory did open: the check below is not vacuous
    assert {"yake", "networkx"} & loaded == set()


def test_the_first_write_still_gets_its_metadata(tmp_path: Path) -> None:
    # Deferred, not dropped: the first remember builds the extractors and its memory gets keyword tags.
    loaded, out = _loaded_after_first_recall(tmp_path / "data", "Ana adores Neapolitan pizza with fresh basil.")
    assert {"yake", "networkx"} <= loaded
    (tags,) = [line.removeprefix("TAGS ").split(",") for line in out.splitlines() if line.startswith("TAGS ")]
    assert "neapolitan-pizza" in tags


def test_a_server_builds_the_schemas_of_the_tools_it_lists_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A tool's argument and output models and JSON schemas cost ~20 ms of CPU each to build; the default profile
    # lists 7 of the 18 tools, and the others were built and thrown away at every start.
    import engram.tools as tools

    built: list[str] = []
    real = tools._tool

    def counted(fn: Callable[..., Any], **kwargs: Any) -> Any:
        built.append(fn.__name__)
        return real(fn, **kwargs)

    monkeypatch.setattr(tools, "_tool", counted)
    for profile in ("core", "graph", "all"):
        built.clear()
        settings = Settings(data_dir=tmp_path / "data", embedding_model="hash", tools=profile)
        listed = [tool.name for tool in tools.engram_tools(settings)]
        assert "recall" in listed and sorted(built) == sorted(listed), profile
