"""Host and Origin headers through the real HTTP app (in process): malformed values are refused, exact ones pass."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest

from engram.config import Settings
from engram.core.errors import InvalidInput
from engram.server.http import build_http_app

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8765"
#: The metadata path answers 404 without an identity provider (test_http_auth_clients), once past the Host check.
PATHS = ("/mcp", "/metrics", "/.well-known/oauth-protected-resource/mcp")

#: Each must get 421 on every path: near misses of the loopback names that a prefix or substring match lets through.
MALFORMED_HOSTS = [
    "localhost:8765@evil.example",
    "127.0.0.1:8765.evil.example",
    "127.0.0.1:8765evil.example",
    "localhost:8765/evil.example",
    "localhost:8765?x=evil.example",
    "localhost:8765#evil.example",
    "localhost:8765:8766",
    "localhost:",
    "localhost:evil.example",
    "localhost:99999",
    "localhost:0",
    "localhost:+8765",
    "localhost: 8765",
    "localhost:\uff18\uff17\uff16\uff15",  # full-width digits: str.isdigit() says yes
    "user@localhost:8765",
    "localhost.evil.example:8765",
    "127.0.0.1.evil.example:8765",
    "evil.example:8765",
    "[::1]:8765]",
    "[::1]evil.example",
    "[::1%25eth0]:8765",
    "[::1",
    "::1:8765",
    "[127.0.0.1]:8765",
    "localhost\t:8765",
    "",
]

#: Each must get 403 on every path (with a valid Host).
MALFORMED_ORIGINS = [
    "http://127.0.0.1:8765.evil.example",
    "http://127.0.0.1:8765@evil.example",
    "http://localhost:8765evil.example",
    "http://user@localhost:8765",
    "http://localhost:8765/",
    "http://localhost:8765/path",
    "http://localhost:8765?x",
    "http://localhost:8765#x",
    "http://localhost:",
    "http://localhost:99999",
    "http://localhost:8765:1",
    "http://localhost.evil.example",
    "http://[::1]evil.example:8765",
    "https://evil.example",
    "ftp://localhost:8765",
    "http:/localhost:8765",
    "http//localhost:8765",
    "localhost:8765",
    "null",
    " http://localhost:8765",
]

VALID_HOSTS = ["127.0.0.1:8765", "localhost", "localhost:1", "LOCALHOST:8765", "[::1]:8765", "[0:0::1]:80"]
VALID_ORIGINS = ["http://localhost:8765", "http://127.0.0.1", "http://[::1]:9", "HTTP://LocalHost:8765"]


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[httpx2.AsyncClient]:
    built = build_http_app(Settings(data_dir=tmp_path / "data", embedding_model="hash"), "streamable-http")
    async with (
        built.app.router.lifespan_context(built.app),
        httpx2.AsyncClient(transport=httpx2.ASGITransport(app=built.app), base_url=BASE) as client,
    ):
        yield client


async def _statuses(http: httpx2.AsyncClient, raw: dict[str, str]) -> dict[str, int]:
    headers = {name: value.encode() for name, value in raw.items()}  # as bytes: some are not ASCII
    statuses = {path: (await http.get(path, headers=headers)).status_code for path in PATHS}
    post = await http.post(
        "/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}},
        headers={"Accept": b"application/json, text/event-stream", **headers},
    )
    statuses["POST /mcp"] = post.status_code
    return statuses


async def test_malformed_host_values_are_refused_everywhere(http: httpx2.AsyncClient) -> None:
    passed = {}
    for host in MALFORMED_HOSTS:
        statuses = await _statuses(http, {"Host": host})
        if set(statuses.values()) != {421}:
            passed[host] = statuses
    assert passed == {}


async def test_malformed_origin_values_are_refused_everywhere(http: httpx2.AsyncClient) -> None:
    passed = {}
    for origin in MALFORMED_ORIGINS:
        statuses = await _statuses(http, {"Origin": origin})
        if set(statuses.values()) != {403}:
            passed[origin] = statuses
    assert passed == {}


async def test_exact_loopback_hosts_and_origins_still_pass(http: httpx2.AsyncClient) -> None:
    for host in VALID_HOSTS:
        statuses = await _statuses(http, {"Host": host})
        # No token: the MCP endpoint and /metrics ask for one, the metadata is public.
        assert statuses == {PATHS[0]: 401, PATHS[1]: 401, PATHS[2]: 404, "POST /mcp": 401}, host
    for origin in VALID_ORIGINS:
        statuses = await _statuses(http, {"Origin": origin})
        assert statuses == {PATHS[0]: 401, PATHS[1]: 401, PATHS[2]: 404, "POST /mcp": 401}, origin


async def test_a_repeated_host_header_is_refused(http: httpx2.AsyncClient) -> None:
    headers = [("Host", "127.0.0.1:8765"), ("Host", "evil.example")]
    assert (await http.get("/metrics", headers=headers)).status_code == 421
    origins = [("Origin", "http://127.0.0.1:8765"), ("Origin", "https://evil.example")]
    assert (await http.get("/metrics", headers=origins)).status_code == 403


def test_a_malformed_allowed_value_stops_the_start(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash", allowed_origins=["app.example"])
    with pytest.raises(InvalidInput, match=r"ENGRAM_ALLOWED_HOSTS/ENGRAM_ALLOWED_ORIGINS.*'app\.example'"):
        build_http_app(settings, "streamable-http")
