"""The TypeScript SDK client gets every progress notification before the result, even when it reads them together.

A busy client reads the last progress notification and the result in one go; the relays of `tests.coalescing`
make that happen on every run. The TypeScript SDK 1.x drops a notification read together with its request's
response ("unknown token"), so these fail unless the server holds the result until the client has taken the
progress (see `engram.tools.progress`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.coalescing import TcpCoalescer
from tests.http_server import issue_token, spawn
from tests.test_real_clients import CLIENT_TIMEOUT_S
from tests.test_real_clients import npm_bin as npm_bin  # the installed Node clients (a fixture)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
#: Progress of ingesting two files: the start, one step per file, and the end.
ALL_PROGRESS = [[0, 3], [1, 3], [2, 3], [3, 3]]

#: A TypeScript SDK client calling ingest_files with a progress handler, over the transport `target` names.
_SCRIPT = """
import {{ Client }} from "{sdk}/client/index.js";
import {{ StdioClientTransport }} from "{sdk}/client/stdio.js";
import {{ SSEClientTransport }} from "{sdk}/client/sse.js";
import {{ StreamableHTTPClientTransport }} from "{sdk}/client/streamableHttp.js";
const target = {target};
const requestInit = {{ headers: {{ Authorization: `Bearer ${{target.token}}` }} }};
const transport =
  target.kind === "stdio" ? new StdioClientTransport({{ ...target.process, stderr: "ignore" }})
  : target.kind === "sse" ? new SSEClientTransport(new URL(target.url), {{ requestInit }})
  : new StreamableHTTPClientTransport(new URL(target.url), {{ requestInit }});
const client = new Client({{ name: "progress-check", version: "1" }});
const errors = [];
client.onerror = (error) => errors.push(String(error));
await client.connect(transport);
const seen = [];
const result = await client.callTool({{ name: "ingest_files", arguments: {{ paths: [{docs}], user_id: "alice" }} }},
  undefined, {{ onprogress: (p) => seen.push([p.progress, p.total]) }});
console.log(JSON.stringify({{ seen, isError: result.isError ?? false, errors }}));
await client.close();
"""


def _docs(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    for n in (1, 2):
        (docs / f"note{n}.md").write_text(f"# Note {n}\n\nSomething worth knowing, number {n}.\n")
    return docs


def _call_with_progress(npm_bin: Path, tmp_path: Path, docs: Path, target: dict[str, Any]) -> dict[str, Any]:
    """Run the TypeScript client against `target` and return what it saw: progress, isError and protocol errors."""
    sdk = npm_bin.parent / "@modelcontextprotocol" / "sdk" / "dist" / "esm"
    script = tmp_path / "progress.mjs"
    script.write_text(_SCRIPT.format(sdk=sdk.as_posix(), target=json.dumps(target), docs=json.dumps(str(docs))))
    node = shutil.which("node")
    assert node is not None  # npm is installed, so node is too
    run = subprocess.run([node, str(script)], capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    outcome: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return outcome


def test_over_stdio_the_last_progress_arrives_although_the_client_reads_it_with_the_result(
    npm_bin: Path, tmp_path: Path
) -> None:
    docs = _docs(tmp_path)
    env = {key: value for key, value in os.environ.items() if not key.startswith("ENGRAM_")}
    env |= {
        "ENGRAM_DATA_DIR": str(tmp_path / "data"),
        "ENGRAM_EMBEDDING_MODEL": "hash",
        "ENGRAM_TOOLS": "all",
        "ENGRAM_KNOWLEDGE_ROOTS": json.dumps([str(docs)]),
        "ENGRAM_DEFAULT_USER": "alice",
        "PYTHONPATH": str(REPO),
    }
    relayed = [sys.executable, "-m", "tests.coalescing", "--", sys.executable, "-m", "engram", "serve"]
    target = {"kind": "stdio", "process": {"command": relayed[0], "args": relayed[1:], "env": env, "cwd": str(REPO)}}
    outcome = _call_with_progress(npm_bin, tmp_path, docs, target)
    assert outcome == {"seen": ALL_PROGRESS, "isError": False, "errors": []}


@pytest.mark.parametrize("transport", ["sse", "streamable-http"])
def test_over_http_the_last_progress_arrives_although_the_client_reads_it_with_the_result(
    npm_bin: Path, tmp_path: Path, transport: str
) -> None:
    docs = _docs(tmp_path)
    server = spawn(tmp_path / "data", transport, env={"ENGRAM_KNOWLEDGE_ROOTS": json.dumps([str(docs)])})
    try:
        token = issue_token(server.data_dir, ["alice"], ["read", "write"])
        with TcpCoalescer(int(server.base.rsplit(":", 1)[1])) as relay:
            url = server.endpoint.replace(server.base, f"http://127.0.0.1:{relay.port}")
            outcome = _call_with_progress(npm_bin, tmp_path, docs, {"kind": transport, "url": url, "token": token})
        assert outcome == {"seen": ALL_PROGRESS, "isError": False, "errors": []}
    finally:
        assert server.stop() == 0, server.log()
