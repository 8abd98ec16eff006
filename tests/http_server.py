"""Real `engram serve --transport streamable-http|sse` subprocesses on a free port, and clients that reach them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from engram.auth.tokens import TokenFile

#: A cold start imports the SDK, uvicorn and LanceDB; on a loaded 2-core machine that can take a while.
START_TIMEOUT_S = 90.0


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def engram_command() -> list[str]:
    """`<venv>/bin/engram` next to this interpreter (the installed console script), else `python -m engram`."""
    script = Path(sys.executable).parent / "engram"
    return [str(script)] if script.exists() else [sys.executable, "-m", "engram"]


def issue_token(data_dir: Path, users: Sequence[str], scopes: Sequence[str], agent: str | None = None) -> str:
    """Store a token for the server on `data_dir` (as `engram token create` does) and return its secret."""
    _, secret = TokenFile(data_dir / "tokens.json").create(users=users, scopes=scopes, agent=agent)
    return secret


@dataclass
class RunningServer:
    """One spawned server: its process, where it listens, and its log."""

    process: subprocess.Popen[bytes]
    transport: str
    base: str
    log_path: Path
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        """The MCP endpoint URL of the transport."""
        return self.base + ("/mcp" if self.transport == "streamable-http" else "/sse")

    def log(self) -> str:
        """Everything the server wrote to stderr so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Send `sig` and wait for the process to exit; return its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the server did not stop within {timeout} s; log:\n{self.log()}") from None


def spawn(
    data_dir: Path,
    transport: str,
    *,
    host: str = "127.0.0.1",
    env: dict[str, str] | None = None,
    wait_ready: bool = True,
    model: str = "hash",
    port: int | None = None,
) -> RunningServer:
    """Start `engram serve` on a free port and wait until /healthz answers (200 with `wait_ready`, else any)."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / f"server-{transport}-{port}.log"
    full_env = {key: value for key, value in os.environ.items() if not key.startswith("ENGRAM_")}
    full_env |= {
        "ENGRAM_DATA_DIR": str(data_dir),
        "ENGRAM_EMBEDDING_MODEL": model,
        "ENGRAM_TOOLS": "all",
        "HF_HUB_OFFLINE": "1",
        **(env or {}),
    }
    command = [*engram_command(), "serve", "--transport", transport, "--host", host, "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    server = RunningServer(process, transport, f"http://127.0.0.1:{port}", log_path, data_dir, full_env)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}; log:\n{server.log()}")
        try:
            status = httpx2.get(server.base + "/healthz", timeout=2.0).status_code
            if status == 200 or not wait_ready:
                return server
        except httpx2.TransportError:
            pass
        if time.monotonic() > deadline:
            server.stop(signal.SIGKILL)
            raise AssertionError(f"the server was not ready within {START_TIMEOUT_S} s; log:\n{server.log()}")
        time.sleep(0.2)


@asynccontextmanager
async def connect(server: RunningServer, token: str) -> AsyncIterator[Client]:
    """A real MCP client of `server`'s transport, sending `token` as its bearer token."""
    headers = {"Authorization": f"Bearer {token}"}
    if server.transport == "sse":
        async with Client(sse_client(server.endpoint, headers=headers, timeout=30.0)) as client:
            yield client
        return
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(60.0)) as http,
        Client(streamable_http_client(server.endpoint, http_client=http)) as client,
    ):
        yield client
