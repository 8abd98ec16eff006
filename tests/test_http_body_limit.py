"""Request size limits: an oversized body is refused (413) before it is read, and every limit message agrees with
the README."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
from mcp import Client

from engram.config import Settings
from engram.server.app import build_server
from engram.server.http import build_http_app
from tests.helpers import ok

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8765"
MIB = 1024 * 1024
README = Path(__file__).resolve().parent.parent / "README.md"


class Body:
    """A request body produced on demand in 256 KiB chunks, counting how much the server pulled."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunk = b"x" * (256 * 1024)
        while self.sent < self.total:
            self.sent += len(chunk)
            yield chunk


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[httpx2.AsyncClient]:
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash", max_request_mb=1)
    built = build_http_app(settings, "streamable-http")
    async with (
        built.app.router.lifespan_context(built.app),
        httpx2.AsyncClient(transport=httpx2.ASGITransport(app=built.app), base_url=BASE) as client,
    ):
        yield client


HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
REFUSAL = re.compile(r"^Request body is over the 1 MB limit \(ENGRAM_MAX_REQUEST_MB\)[^\n]*$")


@pytest.mark.parametrize("path", ["/mcp", "/metrics", "/messages/"])
async def test_a_declared_oversized_body_is_refused_unread(http: httpx2.AsyncClient, path: str) -> None:
    body = Body(50 * MIB)
    headers = {**HEADERS, "Content-Length": str(body.total)}
    response = await http.post(path, content=body, headers=headers)
    assert response.status_code == 413
    assert REFUSAL.match(response.text), response.text
    assert body.sent <= 256 * 1024  # at most the first chunk, which the test client pulls before asking


async def test_a_streamed_oversized_body_is_refused_once_it_passes_the_limit(http: httpx2.AsyncClient) -> None:
    body = Body(50 * MIB)  # no Content-Length: sent chunked
    response = await http.post("/mcp", content=body, headers=HEADERS)
    assert response.status_code == 413
    assert REFUSAL.match(response.text), response.text
    assert body.sent <= 1 * MIB + 256 * 1024


async def test_a_body_under_the_limit_reaches_the_endpoint(http: httpx2.AsyncClient) -> None:
    # 900 KiB is under the 1 MiB limit: it reaches authentication (401 without a token).
    body = b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "padding": "' + b"x" * (900 * 1024) + b'"}'
    assert (await http.post("/mcp", content=body, headers=HEADERS)).status_code == 401


async def test_the_limit_also_governs_the_sdk_transport(tmp_path: Path) -> None:
    """A body between the SDK's 4 MiB default and a configured 6 MB limit is accepted, not refused by the SDK."""
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash", max_request_mb=6)
    built = build_http_app(settings, "streamable-http")
    assert built.server.session_manager.max_request_body_size == 6 * MIB


def test_readme_states_the_limits_the_errors_state() -> None:
    readme = README.read_text()
    assert "`ENGRAM_MAX_REQUEST_MB` | `8` |" in readme
    assert Settings(data_dir=Path("/nonexistent")).max_request_mb == 8
    assert "Request body is over the 8 MB limit (ENGRAM_MAX_REQUEST_MB)" in readme  # the refusal, word for word
    assert "at most 20 MB (`ENGRAM_KNOWLEDGE_MAX_FILE_MB`" in readme
    assert "is over the 20 MB limit" in readme


async def test_the_file_size_refusal_names_the_configured_limit(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    big = root / "big.md"
    with big.open("wb") as handle:  # sparse: refused by its size, never read
        handle.truncate(20 * MIB + 1)
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash", knowledge_roots=[root], tools="all")
    async with Client(build_server(settings), raise_exceptions=True) as client:
        report = ok(await client.call_tool("ingest_files", {"user_id": "alice", "paths": [str(big)]}))
    [failure] = report["failed"]
    assert "over the 20 MB limit (ENGRAM_KNOWLEDGE_MAX_FILE_MB)" in failure["reason"], failure
    assert os.path.getsize(big) == 20 * MIB + 1


async def test_ingest_text_states_its_limit_in_the_schema(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash", tools="all")
    async with Client(build_server(settings), raise_exceptions=True) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert tools["ingest_text"].input_schema["properties"]["text"]["maxLength"] == 1_000_000
