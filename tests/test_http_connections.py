"""A real `engram serve` (subprocess): slow headers are cut off, oversized bodies refused unread, sessions capped.

Nothing here measures time: each test waits for an event (the server closing the socket, or answering).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.http_server import RunningServer, issue_token, spawn

pytestmark = pytest.mark.slow

#: How long a test waits for the server's answer before calling it a failure (never reached when it works).
PATIENCE_S = 60.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("connections")
    running = spawn(
        root / "data",
        "streamable-http",
        env={
            "ENGRAM_HTTP_HEADER_TIMEOUT_SECONDS": "1",
            "ENGRAM_MAX_SESSIONS_PER_TOKEN": "2",
            "ENGRAM_MAX_REQUEST_MB": "1",
        },
    )
    yield running
    assert running.stop() == 0, running.log()


def _connect(server: RunningServer) -> socket.socket:
    host, port = server.base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=PATIENCE_S)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def _read_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length (status line, headers and body)."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(65536)
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


@pytest.mark.parametrize(
    "sent",
    [
        b"",  # connected, said nothing
        b"GET /healthz HTTP/1.1\r\n",  # the request line only
        b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl",  # a header cut short
    ],
)
def test_a_connection_without_complete_headers_is_closed(server: RunningServer, sent: bytes) -> None:
    with _connect(server) as sock:
        sock.sendall(sent)
        assert _read_all(sock) == b""  # closed by the server, nothing answered


def test_a_slow_second_request_on_a_kept_alive_connection_is_closed(server: RunningServer) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = _read_response(sock)
        assert first.startswith(b"HTTP/1.1 200"), first
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # and never the rest
        assert _read_all(sock) == b""


def test_an_announced_oversized_body_is_refused_without_waiting_for_it(server: RunningServer) -> None:
    with _connect(server) as sock:
        sock.sendall(
            b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 52428800\r\n\r\n"
        )  # 50 MB announced, none sent
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"Request body is over the 1 MB limit (ENGRAM_MAX_REQUEST_MB)" in answer


def test_sessions_per_token_are_capped_over_real_http(server: RunningServer) -> None:
    secret = issue_token(Path(server.data_dir), ["pia"], ["read", "write"])
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    headers = {"Authorization": f"Bearer {secret}", "Accept": "application/json, text/event-stream"}
    statuses = [httpx2.post(server.endpoint, json=body, headers=headers).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
