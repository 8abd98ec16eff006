"""Streamable-HTTP sessions through the real app (in process): capped per token and in all, idle ones expire.

Sessions exist on the handshake (2025-era) leg only; the 2026 leg is sessionless. The idle clock is injected.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2
import pytest

from engram.auth.tokens import TokenFile
from engram.config import Settings
from engram.server.http import HttpServer, build_http_app

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8765"
SESSION_HEADER = "mcp-session-id"


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def serving(settings: Settings, clock: Clock | None = None) -> AsyncIterator[tuple[HttpServer, dict[str, str]]]:
    tokens = TokenFile(settings.token_file)
    secrets = {user: tokens.create(users=[user], scopes=["read", "write"])[1] for user in ("ann", "bob")}
    built = build_http_app(settings, "streamable-http", clock=clock)
    async with built.app.router.lifespan_context(built.app):
        yield built, secrets


def _client(built: HttpServer, secret: str) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=built.app),
        base_url=BASE,
        headers={"Authorization": f"Bearer {secret}", "Accept": "application/json, text/event-stream"},
    )


async def _open(built: HttpServer, secret: str) -> httpx2.Response:
    """Send a 2025-era `initialize`, which opens a session when admitted."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    async with _client(built, secret) as http:
        return await http.post("/mcp", json=body)


async def _session(built: HttpServer, secret: str) -> str:
    response = await _open(built, secret)
    assert response.status_code == 200, response.text
    return response.headers[SESSION_HEADER]


async def _ping(built: HttpServer, secret: str, session: str) -> int:
    body = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    headers = {SESSION_HEADER: session, "MCP-Protocol-Version": "2025-11-25"}
    async with _client(built, secret) as http:
        return (await http.post("/mcp", json=body, headers=headers)).status_code


async def _close(built: HttpServer, secret: str, session: str) -> int:
    headers = {SESSION_HEADER: session, "MCP-Protocol-Version": "2025-11-25"}
    async with _client(built, secret) as http:
        return (await http.delete("/mcp", headers=headers)).status_code


def _refusal(response: httpx2.Response) -> str:
    message: str = json.loads(response.text)["error"]["message"]
    assert "\n" not in message
    return message


async def test_sessions_per_token_are_capped(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash", max_sessions_per_token=2)
    async with serving(settings) as (built, secrets):
        first = await _session(built, secrets["ann"])
        await _session(built, secrets["ann"])
        refused = await _open(built, secrets["ann"])
        assert refused.status_code == 429
        assert "ENGRAM_MAX_SESSIONS_PER_TOKEN" in _refusal(refused) and "2 open" in _refusal(refused)
        assert SESSION_HEADER not in refused.headers
        await _session(built, secrets["bob"])  # another token has its own allowance
        assert await _close(built, secrets["ann"], first) == 200
        await _session(built, secrets["ann"])  # a closed session frees its place


async def test_sessions_in_all_are_capped(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash", max_sessions=3, max_sessions_per_token=10)
    async with serving(settings) as (built, secrets):
        for _ in range(2):
            await _session(built, secrets["ann"])
        await _session(built, secrets["bob"])
        refused = await _open(built, secrets["bob"])
        assert refused.status_code == 503
        assert "ENGRAM_MAX_SESSIONS" in _refusal(refused) and "3 open" in _refusal(refused)


async def test_idle_sessions_expire_and_busy_ones_stay(tmp_path: Path) -> None:
    clock = Clock()
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash", session_idle_seconds=60)
    async with serving(settings, clock) as (built, secrets):
        assert built.sessions is not None
        idle = await _session(built, secrets["ann"])
        busy = await _session(built, secrets["ann"])
        clock.now += 30
        assert await _ping(built, secrets["ann"], busy) == 200
        clock.now += 40  # idle: 70 s without a request; busy: 40 s
        assert await built.sessions.expire_idle() == 1
        assert await _ping(built, secrets["ann"], idle) == 404
        assert await _ping(built, secrets["ann"], busy) == 200
        clock.now += 61
        assert await built.sessions.expire_idle() == 1
        assert await _ping(built, secrets["ann"], busy) == 404
        # Expired sessions no longer count against the token.
        assert built.sessions.open_sessions() == 0


async def test_a_session_with_a_request_in_flight_does_not_expire(tmp_path: Path) -> None:
    clock = Clock()
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash", session_idle_seconds=60)
    async with serving(settings, clock) as (built, secrets):
        assert built.sessions is not None
        session = await _session(built, secrets["ann"])
        with built.sessions.in_flight(session):
            clock.now += 600
            assert await built.sessions.expire_idle() == 0
        clock.now += 59  # idle since the request ended, not since it began
        assert await built.sessions.expire_idle() == 0
        clock.now += 1
        assert await built.sessions.expire_idle() == 1
