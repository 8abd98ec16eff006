"""What makes an HTTP server a replica: stateless streamable HTTP, and a /healthz that reports the shared engines."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

from engram.config import Settings
from engram.server.http import build_http_app
from tests.engines import RedisEngine, start_redis, stop_redis

pytestmark = [pytest.mark.distributed, pytest.mark.anyio]

BASE = "http://127.0.0.1:8765"
KEY = "replica-key-of-sixteen-chars"


async def test_healthz_reports_redis_and_turns_503_when_it_is_gone(tmp_path: Path) -> None:
    redis = start_redis(tmp_path / "redis")  # its own, since this test stops it
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash", sessions_url=redis.url, user_id_key=KEY)
    built = build_http_app(settings, "streamable-http")
    try:
        async with (
            built.app.router.lifespan_context(built.app),
            httpx2.AsyncClient(transport=httpx2.ASGITransport(app=built.app), base_url=BASE) as http,
        ):
            state = built.lifecycle.current()
            assert state is not None
            await state.memory.get()
            healthy = await http.get("/healthz")
            assert healthy.status_code == 200 and healthy.json()["engines"] == {"redis": "ok"}
            stop_redis(redis)
            gone = await http.get("/healthz")
            assert gone.status_code == 503 and gone.json()["engines"]["redis"].startswith("unreachable")
            assert redis.url not in gone.text
    finally:
        stop_redis(redis)


def _initialize(version: str) -> dict[str, object]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }


@pytest.mark.parametrize(("stateless", "session_expected"), [(None, False), (False, True)])
async def test_with_redis_sessions_a_legacy_client_gets_no_server_side_session(
    tmp_path: Path, redis_engine: RedisEngine, stateless: bool | None, session_expected: bool
) -> None:
    """Clients of the 2025 protocol open a session that lives in one process; replicas must not hand one out
    (the 2026 protocol is sessionless anyway). ENGRAM_HTTP_STATELESS=false brings the sessions back."""
    settings = Settings(
        data_dir=tmp_path / "data",
        embedding_model="hash",
        sessions_url=redis_engine.url,
        user_id_key=KEY,
        http_no_auth="loopback",
        default_user="ann",
        http_stateless=stateless,
    )
    built = build_http_app(settings, "streamable-http")
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    async with (
        built.app.router.lifespan_context(built.app),
        httpx2.AsyncClient(transport=httpx2.ASGITransport(app=built.app), base_url=BASE) as http,
    ):
        response = await http.post("/mcp", json=_initialize("2025-06-18"), headers=headers)
        assert response.status_code == 200, response.text
        assert (response.headers.get("mcp-session-id") is not None) is session_expected
