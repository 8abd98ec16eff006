"""HTTP auth as clients understand it: no fake authorization server, a 401 that says what to do, tokenless loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from engram.config import Settings
from engram.core.errors import InvalidInput
from engram.server.http import build_http_app
from tests.helpers import ok
from tests.http_server import issue_token

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8765"
METADATA = "/.well-known/oauth-protected-resource/mcp"
TOOLS_LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
HEADERS = {"Accept": "application/json, text/event-stream"}


@asynccontextmanager
async def serving(tmp_path: Path, **settings: Any) -> AsyncIterator[httpx2.AsyncClient]:
    built = build_http_app(Settings(data_dir=tmp_path / "data", embedding_model="hash", **settings), "streamable-http")
    async with (
        built.app.router.lifespan_context(built.app),
        httpx2.AsyncClient(transport=httpx2.ASGITransport(app=built.app), base_url=BASE) as http,
    ):
        yield http


async def test_without_an_identity_provider_a_401_says_how_to_get_a_token(tmp_path: Path) -> None:
    async with serving(tmp_path) as http:
        for authorization in (None, "Bearer egm_not-a-token"):
            headers = HEADERS if authorization is None else {**HEADERS, "Authorization": authorization}
            response = await http.post("/mcp", json=TOOLS_LIST, headers=headers)
            assert response.status_code == 401
            challenge = response.headers["www-authenticate"]
            assert challenge.startswith("Bearer ") and "invalid or missing bearer token" in challenge
            assert "resource_metadata" not in challenge  # no authorization server to send a client to
            description = response.json()["error_description"]
            assert "invalid or missing bearer token" in description and "engram token create" in description
        # No metadata naming an authorization server that does not exist.
        assert (await http.get(METADATA)).status_code == 404


#: Where a client of the 2025-03-26 authorization spec signs in when a server publishes no metadata.
OAUTH_FALLBACKS = (("POST", "/register"), ("GET", "/authorize"), ("POST", "/token"))


async def test_without_an_identity_provider_the_oauth_fallback_endpoints_answer_with_the_401(tmp_path: Path) -> None:
    # mcp-remote, refused at /mcp, registers at /register (sending the same header) and shows that answer as the reason.
    secret = issue_token(tmp_path / "data", ["alice"], ["read"])
    async with serving(tmp_path) as http:
        for method, path in OAUTH_FALLBACKS:
            for authorization in (None, "Bearer egm_not-a-token"):
                headers = {} if authorization is None else {"Authorization": authorization}
                response = await http.request(method, path, json={}, headers=headers)
                assert response.status_code == 401, (method, path)
                challenge = response.headers["www-authenticate"]
                assert challenge.startswith('Bearer error="invalid_token"') and "resource_metadata" not in challenge
                body = response.json()
                assert body["error"] == "invalid_token"
                assert "no OAuth authorization server" in body["error_description"]
                assert "invalid or missing bearer token" in body["error_description"]
                assert "engram token create" in body["error_description"]
            # A valid token is not refused: there is simply nothing to sign in to.
            response = await http.request(method, path, json={}, headers={"Authorization": f"Bearer {secret}"})
            assert response.status_code == 404, (method, path)


@pytest.mark.parametrize("settings", [{"authorization_server": "https://id.example.com"}, {"http_no_auth": "loopback"}])
async def test_the_oauth_fallback_endpoints_are_left_alone_with_an_identity_provider_or_without_tokens(
    tmp_path: Path, settings: dict[str, str]
) -> None:
    # With an identity provider, clients register there; in tokenless mode nothing sends them anywhere.
    async with serving(tmp_path, **settings) as http:
        for method, path in OAUTH_FALLBACKS:
            assert (await http.request(method, path, json={})).status_code == 404, (method, path)


async def test_a_configured_identity_provider_is_advertised(tmp_path: Path) -> None:
    async with serving(tmp_path, authorization_server="https://id.example.com/realms/acme") as http:
        response = await http.post("/mcp", json=TOOLS_LIST, headers=HEADERS)
        assert response.status_code == 401
        assert f'resource_metadata="{BASE}{METADATA}"' in response.headers["www-authenticate"]
        metadata = (await http.get(METADATA)).json()
        assert [url.rstrip("/") for url in metadata["authorization_servers"]] == ["https://id.example.com/realms/acme"]


async def test_tokenless_loopback_mode_serves_the_local_user(tmp_path: Path) -> None:
    async with (
        serving(tmp_path, http_no_auth="loopback", default_user="ana") as http,
        Client(streamable_http_client(f"{BASE}/mcp", http_client=http)) as client,
    ):
        ok(await client.call_tool("remember", {"content": "Ana keeps bees"}))
        hits = ok(await client.call_tool("recall", {"query": "bees"}))["hits"]
        assert [hit["content"] for hit in hits] == ["Ana keeps bees"]
        named = ok(await client.call_tool("recall", {"user_id": "ana", "query": "bees"}))["hits"]
        assert [hit["content"] for hit in named] == ["Ana keeps bees"]


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::"])
def test_tokenless_mode_is_refused_on_any_other_bind(tmp_path: Path, host: str) -> None:
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash", http_no_auth="loopback", host=host)
    with pytest.raises(InvalidInput, match="ENGRAM_HTTP_NO_AUTH"):
        build_http_app(settings, "streamable-http")
