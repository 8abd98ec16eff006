"""What a bearer token allows, checked in process over the real HTTP app (no port): fast enough for every run."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.types import TextResourceContents
from starlette.applications import Starlette

from engram.auth.tokens import TokenFile
from engram.config import Settings
from engram.server.http import build_http_app
from tests.helpers import error, ok

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8765"


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[Starlette]:
    """The HTTP app with its lifespan entered and its memory open."""
    built = build_http_app(settings, "streamable-http")
    async with built.app.router.lifespan_context(built.app):
        state = built.lifecycle.current()
        assert state is not None
        await state.memory.get()
        yield built.app


@asynccontextmanager
async def connected(app: Starlette, secret: str) -> AsyncIterator[Client]:
    """An MCP client of `app` that sends `secret` as its bearer token."""
    headers = {"Authorization": f"Bearer {secret}"}
    transport = httpx2.ASGITransport(app=app)
    async with (
        httpx2.AsyncClient(transport=transport, base_url=BASE, headers=headers) as http,
        Client(streamable_http_client(f"{BASE}/mcp", http_client=http)) as client,
    ):
        yield client


WRITES: list[tuple[str, dict[str, Any]]] = [
    ("remember", {"content": "Erin likes tea."}),
    ("remember_many", {"items": [{"content": "Erin likes tea."}]}),
    ("update_memory", {"memory_id": "0" * 32, "resolved": True}),
    ("forget_memory", {"memory_id": "0" * 32}),
    ("summarize_session", {"session_id": "s1"}),
    ("ingest_text", {"source": "note.md", "text": "Erin's note."}),
    ("forget_source", {"source": "note.md"}),
]


async def test_a_read_only_token_can_write_nothing(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash", tools="all")
    _, secret = TokenFile(settings.token_file).create(users=["erin"], scopes=["read"])
    async with serving(settings) as app, connected(app, secret) as client:
        for tool, arguments in WRITES:
            refused = error(await client.call_tool(tool, arguments))
            assert "'write' scope" in refused, tool
        found = ok(await client.call_tool("recall", {"detail": "full", "query": "tea"}))  # reading is allowed
        assert found["memories"] == []


async def _transcript(client: Client) -> list[str]:
    contents = (await client.read_resource("engram://users/alice/sessions/s1")).contents[0]
    assert isinstance(contents, TextResourceContents)
    return [turn["content"] for turn in json.loads(contents.text)["turns"]]


async def test_an_agent_token_reads_a_transcript_without_other_agents_private_turns(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash", tools="all")
    tokens = TokenFile(settings.token_file)
    ide = tokens.create(users=["alice"], scopes=["read", "write"], agent="ide")[1]
    desk = tokens.create(users=["alice"], scopes=["read", "write"], agent="desk")[1]
    async with serving(settings) as app:
        async with connected(app, ide) as client:
            ok(await client.call_tool("remember", {"content": "ide says hello", "session_id": "s1"}))
            private = {"content": "ide thinks privately", "session_id": "s1", "visibility": "private"}
            ok(await client.call_tool("remember", private))
        async with connected(app, desk) as client:
            ok(await client.call_tool("remember", {"content": "desk answers", "session_id": "s1"}))
            assert await _transcript(client) == ["ide says hello", "desk answers"]
        async with connected(app, ide) as client:
            assert await _transcript(client) == ["ide says hello", "ide thinks privately", "desk answers"]


async def test_a_token_for_one_user_cannot_read_anothers_transcript(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash", tools="all")
    tokens = TokenFile(settings.token_file)
    alice = tokens.create(users=["alice"], scopes=["read", "write"])[1]
    bob = tokens.create(users=["bob"], scopes=["read", "write"])[1]
    async with serving(settings) as app:
        async with connected(app, alice) as client:
            ok(await client.call_tool("remember", {"content": "alice's turn", "session_id": "s1"}))
        async with connected(app, bob) as client:
            with pytest.raises(MCPError, match="may not act for the user_id given"):
                await _transcript(client)


async def test_a_wrong_token_cannot_open_a_session(tmp_path: Path) -> None:
    async with serving(Settings(data_dir=tmp_path / "data", embedding_model="hash", tools="all")) as app:
        refused = pytest.RaisesGroup(
            pytest.RaisesExc(MCPError, match="Server returned an error response"), flatten_subgroups=True
        )
        with refused:
            async with connected(app, "egm_wrong"):
                pass
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=BASE) as http:
            response = await http.post("/mcp", headers={"Authorization": "Bearer egm_wrong"}, json={})
        assert response.status_code == 401
