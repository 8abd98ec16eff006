"""A single local user needs no user_id: on stdio an omitted user_id is the server's default user."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from engram.config import Settings, default_user_id
from engram.embeddings.hashing import HashEmbedder
from engram.server.app import build_server
from tests.helpers import error, ok

pytestmark = pytest.mark.anyio


def _settings(data_dir: Path, default_user: str) -> Settings:
    return Settings(data_dir=data_dir, embedding_model="hash", default_user=default_user)


def _contents(recalled: dict[str, object]) -> list[str]:
    memories = recalled["memories"]
    assert isinstance(memories, list)
    return [hit["memory"]["content"] for hit in memories]


def test_the_default_user_is_the_login_name_made_a_valid_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "Jean Dupont (admin)")
    assert default_user_id() == "Jean_Dupont__admin_"
    monkeypatch.setattr("getpass.getuser", lambda: "__")
    assert default_user_id() == "local-user"
    monkeypatch.setattr("getpass.getuser", lambda: "é" * 300)
    assert default_user_id() == "local-user"
    monkeypatch.setattr("getpass.getuser", lambda: "a" * 300)
    assert default_user_id() == "a" * 128
    monkeypatch.delenv("ENGRAM_DEFAULT_USER", raising=False)
    monkeypatch.setattr("getpass.getuser", lambda: "ana")
    assert Settings().default_user == "ana"
    monkeypatch.setenv("ENGRAM_DEFAULT_USER", "")
    assert Settings().default_user is None  # empty: every call must name its user


async def test_an_omitted_user_id_is_the_default_user(tmp_path: Path) -> None:
    server = build_server(_settings(tmp_path / "data", "ana"), embedder=HashEmbedder())
    async with Client(server, raise_exceptions=True) as client:
        ok(await client.call_tool("remember", {"content": "Ana grows tomatoes on her balcony."}))
        mine = ok(await client.call_tool("recall", {"detail": "full", "query": "tomatoes balcony"}))
        assert _contents(mine) == ["Ana grows tomatoes on her balcony."]
        # The default user is an ordinary user id: naming it explicitly reaches the same memories.
        assert _contents(
            ok(await client.call_tool("recall", {"detail": "full", "user_id": "ana", "query": "tomatoes"}))
        ) == _contents(mine)
        assert (
            _contents(ok(await client.call_tool("recall", {"detail": "full", "user_id": "bo", "query": "tomatoes"})))
            == []
        )
        # The tool descriptions tell the model it may leave user_id out.
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        described = tools["recall"].input_schema["properties"]["user_id"]["description"]
        assert "ENGRAM_DEFAULT_USER" in described and "Omit it" in described


async def test_two_servers_with_different_default_users_never_share(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    for user, fact in (("ana", "Ana's PIN hint is her cat's name."), ("bo", "Bo's locker code is 4412.")):
        server = build_server(_settings(data_dir, user), embedder=HashEmbedder())
        async with Client(server, raise_exceptions=True) as client:
            ok(await client.call_tool("remember", {"content": fact}))
    for user, own in (("ana", "Ana's PIN hint is her cat's name."), ("bo", "Bo's locker code is 4412.")):
        server = build_server(_settings(data_dir, user), embedder=HashEmbedder())
        async with Client(server, raise_exceptions=True) as client:
            listed = ok(await client.call_tool("list_memories", {}))
            assert [m["content"] for m in listed["memories"]] == [own]
            assert _contents(
                ok(await client.call_tool("recall", {"detail": "full", "query": "PIN hint locker code"}))
            ) == [own]


async def test_without_a_default_user_user_id_is_required(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash", default_user="")
    async with Client(build_server(settings, embedder=HashEmbedder()), raise_exceptions=True) as client:
        for tool, arguments in (("recall", {"query": "tea"}), ("forget_user", {"confirm": True})):
            message = error(await client.call_tool(tool, arguments))
            assert "'user_id' is required" in message and "ENGRAM_DEFAULT_USER" in message


def _stdio(data_dir: Path, user: str) -> StdioServerParameters:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ENGRAM_")}
    env |= {"ENGRAM_DATA_DIR": str(data_dir), "ENGRAM_EMBEDDING_MODEL": "hash", "ENGRAM_DEFAULT_USER": user}
    return StdioServerParameters(command=sys.executable, args=["-m", "engram", "serve"], env=env)


@pytest.mark.slow
async def test_stdio_servers_remember_and_recall_for_their_default_user(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with anyio.fail_after(120):
        async with Client(_stdio(data_dir, "ana")) as ana:
            ok(await ana.call_tool("remember", {"content": "Ana's dentist appointment is on Friday."}))
            assert _contents(ok(await ana.call_tool("recall", {"detail": "full", "query": "dentist appointment"}))) == [
                "Ana's dentist appointment is on Friday."
            ]
        async with Client(_stdio(data_dir, "bo")) as bo:
            assert _contents(ok(await bo.call_tool("recall", {"detail": "full", "query": "dentist appointment"}))) == []
            ok(await bo.call_tool("remember", {"content": "Bo's dentist is Dr Lee."}))
            assert _contents(ok(await bo.call_tool("recall", {"detail": "full", "query": "dentist"}))) == [
                "Bo's dentist is Dr Lee."
            ]
