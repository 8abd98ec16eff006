"""The stdio transport, over a real subprocess: the wire stays whole and no worker thread carries a line.

The server is `tests.stdio_probe`: Engram's server class (so the path `engram serve` takes) with probe tools
instead of memory, which keeps these checks about the transport and fast.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import termios
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from engram.server.stdio import pipes_usable
from tests.helpers import ok

pytestmark = pytest.mark.anyio

REPO_ROOT = Path(__file__).resolve().parent.parent
PROBE = [sys.executable, "-m", "tests.stdio_probe"]
#: The probe run by hand: after serving it writes `served` to fd 1.
SAYS_SERVED = [*PROBE, "--say-served"]
#: A hang guard only: a healthy run takes a second or two.
BUDGET_S = 120
#: Over a megabyte, with multi-byte characters that a 64 KiB read splits somewhere inside.
LARGE = "naïve café ☕ " * 90_000
HELLO = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}


def _params() -> StdioServerParameters:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ENGRAM_")}
    return StdioServerParameters(command=PROBE[0], args=PROBE[1:], env=env, cwd=str(REPO_ROOT))


@asynccontextmanager
async def _client(errlog: Any = sys.stderr) -> AsyncIterator[Client]:
    with anyio.fail_after(BUDGET_S):
        async with Client(stdio_client(_params(), errlog=errlog)) as client:
            yield client


class _Raw:
    """Line-delimited JSON-RPC written and read by hand, so a test controls every byte and the pace."""

    def __init__(self, process: Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self.stdin = process.stdin
        self.stdout = BufferedByteReceiveStream(process.stdout)

    async def send(self, message: dict[str, Any] | bytes) -> None:
        data = message if isinstance(message, bytes) else json.dumps(message).encode() + b"\n"
        await self.stdin.send(data)

    async def receive(self) -> dict[str, Any]:
        line = await self.stdout.receive_until(b"\n", 1 << 24)
        message: dict[str, Any] = json.loads(line)
        return message

    async def initialize(self) -> None:
        await self.send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": HELLO})
        assert (await self.receive())["id"] == 0
        await self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})


@asynccontextmanager
async def _raw(tmp_path: Path) -> AsyncIterator[_Raw]:
    with anyio.fail_after(BUDGET_S), (tmp_path / "server.log").open("wb") as log:
        process = await anyio.open_process(SAYS_SERVED, cwd=REPO_ROOT, stderr=log)
        async with process:
            yield _Raw(process)


def _call(request_id: int, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }


def _text(reply: dict[str, Any]) -> Any:
    result = reply["result"]
    assert not result.get("isError"), reply
    return result["structuredContent"]["result"]


async def test_a_call_over_stdio_hops_to_no_worker_thread() -> None:
    async with _client() as client:
        for _ in range(3):
            ok(await client.call_tool("echo", {"text": "ping"}))
        assert ok(await client.call_tool("worker_threads", {}))["result"] == 0


async def test_messages_over_a_megabyte_cross_both_ways() -> None:
    assert len(LARGE.encode()) > 1_000_000
    async with _client() as client:
        assert ok(await client.call_tool("echo", {"text": LARGE}))["result"] == LARGE
        assert ok(await client.call_tool("echo", {"text": "small after large"}))["result"] == "small after large"


async def test_stray_output_during_a_call_stays_off_the_wire(tmp_path: Path) -> None:
    with (tmp_path / "stderr.log").open("w") as errlog:
        async with _client(errlog) as client:
            assert ok(await client.call_tool("noisy", {"text": "clean"}))["result"] == "clean"
            assert ok(await client.call_tool("echo", {"text": "still clean"}))["result"] == "still clean"
    stray = (tmp_path / "stderr.log").read_text()
    for line in ("stray print from a handler", "stray write to fd 1", "stray output of a child"):
        assert line in stray, stray


async def test_eof_on_stdin_ends_the_server_and_gives_stdout_back(tmp_path: Path) -> None:
    async with _raw(tmp_path) as raw:
        await raw.initialize()
        await raw.send(_call(1, "echo", {"text": "before EOF"}))
        assert _text(await raw.receive()) == "before EOF"
        await raw.stdin.aclose()
        assert await raw.process.wait() == 0, (tmp_path / "server.log").read_text()
        # Written to fd 1 after serving: it reaches the pipe, so the descriptor was restored.
        assert await raw.stdout.receive_until(b"\n", 100) == b"served"


async def test_lines_that_are_not_json_rpc_are_skipped_and_invalid_utf8_is_replaced(tmp_path: Path) -> None:
    async with _raw(tmp_path) as raw:
        await raw.initialize()
        for junk in (b"\xff\xfe\xfd\n", b"{not json\n", b"\n", b'{"jsonrpc": "2.0"}\n', b"[1, 2\r\n"):
            await raw.send(junk)
        # Invalid bytes inside a string are replaced, as the SDK's reader does, not a reason to drop the request.
        call = json.dumps(_call(1, "echo", {"text": "caf-"})).encode().replace(b"caf-", b"caf\xc3")
        await raw.send(call + b"\n")
        assert _text(await raw.receive()) == "caf\ufffd"
        await raw.send(_call(2, "echo", {"text": "alive"}))
        assert _text(await raw.receive()) == "alive"


async def test_a_slow_reader_gets_every_reply_whole(tmp_path: Path) -> None:
    """Replies far larger than the pipe wait for the reader (partial writes, EAGAIN) and arrive untorn, in order."""
    texts = [f"{n}:" + LARGE for n in range(3)]
    async with _raw(tmp_path) as raw:
        await raw.initialize()
        sent = anyio.Event()

        async def send_all() -> None:
            for n, text in enumerate(texts, 1):
                await raw.send(_call(n, "echo", {"text": text}))
            sent.set()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(send_all)
            await sent.wait()  # nothing was read while the server produced three megabyte replies
        replies = {reply["id"]: _text(reply) for reply in [await raw.receive() for _ in texts]}
        assert replies == dict(enumerate(texts, 1))


def test_stdin_from_a_terminal_is_served_by_the_sdks_transport() -> None:
    # A terminal rather than a file: a file's end comes at once, and the SDK's transport may then stop before it
    # answers the call (seen once in CI); here the end of input is typed only after the reply has arrived.
    controller, terminal = os.openpty()
    attributes = termios.tcgetattr(terminal)
    attributes[3] &= ~termios.ECHO  # lflags: the requests must not come back as input's echo
    termios.tcsetattr(terminal, termios.TCSANOW, attributes)
    lines = [
        {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": HELLO},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        _call(1, "worker_threads", {}),
    ]
    server = subprocess.Popen(
        SAYS_SERVED, cwd=REPO_ROOT, stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    os.close(terminal)
    watchdog = threading.Timer(BUDGET_S, server.kill)  # a hang guard: a killed server ends its stdout
    watchdog.start()
    try:
        assert server.stdout is not None
        os.write(controller, "".join(json.dumps(line) + "\n" for line in lines).encode())
        by_id: dict[Any, Any] = {}
        while 1 not in by_id:
            line = server.stdout.readline()
            assert line, "the server closed stdout before answering the call"
            reply = json.loads(line)
            by_id[reply.get("id")] = reply
        os.write(controller, b"\x04")  # the terminal's end of input, at the start of a line
        rest, errors = server.communicate(timeout=BUDGET_S)
    finally:
        watchdog.cancel()
        if server.poll() is None:
            server.kill()
            server.wait()
        os.close(controller)
    assert server.returncode == 0, errors.decode()
    assert rest.decode().splitlines()[-1] == "served"
    # The SDK's transport reads stdin on a worker thread: this is the fallback, and it answered.
    assert _text(by_id[1]) >= 1


def test_only_pipes_and_sockets_are_served_natively(tmp_path: Path) -> None:
    """A regular file, the null device and a terminal go to the SDK's threaded transport."""
    read_end, write_end = os.pipe()
    left, right = socket.socketpair()
    regular = os.open(tmp_path / "file", os.O_RDWR | os.O_CREAT)
    null = os.open(os.devnull, os.O_RDWR)
    terminal, terminal_side = os.openpty()
    try:
        assert pipes_usable(read_end, write_end)
        assert pipes_usable(left.fileno(), right.fileno())
        assert not pipes_usable(regular, write_end)
        assert not pipes_usable(read_end, regular)
        assert not pipes_usable(null, write_end)
        assert not pipes_usable(terminal, write_end)
        assert not pipes_usable(read_end, terminal_side)
    finally:
        for fd in (read_end, write_end, regular, null, terminal, terminal_side):
            os.close(fd)
        left.close()
        right.close()


def test_a_socket_as_stdin_and_stdout_is_served_natively(tmp_path: Path) -> None:
    """Some hosts hand a server one end of a socket pair instead of two pipes."""
    ours, theirs = socket.socketpair()
    with ours, (tmp_path / "server.log").open("wb") as log:
        with theirs:
            server = subprocess.Popen(SAYS_SERVED, cwd=REPO_ROOT, stdin=theirs, stdout=theirs, stderr=log)
        try:
            reader = ours.makefile("rb")
            for message in (
                {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": HELLO},
                {"jsonrpc": "2.0", "method": "notifications/initialized"},
                _call(1, "worker_threads", {}),
            ):
                ours.sendall(json.dumps(message).encode() + b"\n")
            replies = {reply["id"]: reply for reply in (json.loads(reader.readline()) for _ in range(2))}
            assert _text(replies[1]) == 0
            ours.shutdown(socket.SHUT_WR)  # EOF on the server's stdin
            assert server.wait(timeout=BUDGET_S) == 0, (tmp_path / "server.log").read_text()
            assert reader.readline() == b"served\n"
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
