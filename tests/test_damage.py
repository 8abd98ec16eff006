"""Damaged files on disk: a cache is rebuilt, a damaged tier is reported while the others serve, `engram doctor`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from click.testing import CliRunner
from mcp import Client
from mcp.types import TextResourceContents

from engram.cli import cli
from engram.config import Settings
from engram.server.http import build_http_app
from tests.helpers import connected, text

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8765"


async def stats(client: Client) -> Any:
    contents = (await client.read_resource("engram://stats")).contents[0]
    assert isinstance(contents, TextResourceContents)
    return json.loads(contents.text)


async def fill(settings: Settings) -> None:
    """Two memories of alice and one knowledge document, all moved into their tables."""
    async with connected(settings) as client:
        for content in ("alice drinks green tea every morning", "alice keeps a sourdough starter"):
            assert not (await client.call_tool("remember", {"user_id": "alice", "content": content})).is_error
        ingested = await client.call_tool(
            "ingest_text",
            {"user_id": "alice", "source": "policy", "text": "# Refunds\n\nRefunds of tea orders take thirty days."},
        )
        assert not ingested.is_error
        listed = await client.call_tool("list_memories", {"user_id": "alice"})  # moves journalled writes in
        assert len(listed.structured_content["memories"]) == 2


def delete_knowledge_data(settings: Settings) -> list[Path]:
    doomed = sorted((settings.knowledge_dir / "knowledge.lance" / "data").glob("*.lance"))
    assert doomed
    for path in doomed:
        path.unlink()
    return doomed


def truncate_memories_fragments(settings: Settings) -> list[Path]:
    fragments = sorted((settings.long_term_dir / "memories.lance" / "data").glob("*.lance"))
    assert fragments
    for path in fragments:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    return fragments


def garble_header(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(b"this is not SQLite at all" + data[25:])


async def test_a_damaged_query_cache_left_by_an_earlier_version_is_removed_and_every_tool_works(
    settings: Settings,
) -> None:
    await fill(settings)
    # Earlier versions kept query vectors in an SQLite cache; a garbled one made every tool fail.
    settings.query_cache_dir.mkdir(parents=True)
    (settings.query_cache_dir / "cache.db").write_bytes(b"this is not SQLite at all" + bytes(4096))
    async with connected(settings) as client:
        recalled = await client.call_tool("recall", {"detail": "full", "user_id": "alice", "query": "tea"})
        assert not recalled.is_error, text(recalled)
        assert recalled.structured_content["memories"]
        assert not (await client.call_tool("remember", {"user_id": "alice", "content": "new"})).is_error
        assert (await stats(client))["status"] == "ready"
    assert not settings.query_cache_dir.exists()


async def test_deleted_knowledge_files_leave_recall_serving_long_term_memories(settings: Settings) -> None:
    await fill(settings)
    delete_knowledge_data(settings)
    async with connected(settings) as client:
        recalled = await client.call_tool("recall", {"detail": "full", "user_id": "alice", "query": "tea"})
        assert not recalled.is_error, text(recalled)
        found = recalled.structured_content
        assert "alice drinks green tea every morning" in [m["memory"]["content"] for m in found["memories"]]
        assert found["knowledge"] == []
        (note,) = found["unavailable"]
        assert "knowledge store is damaged" in note and str(settings.knowledge_dir) in note

        only_knowledge = await client.call_tool(
            "recall", {"detail": "full", "user_id": "alice", "query": "tea", "scope": "knowledge"}
        )
        assert only_knowledge.is_error
        message = text(only_knowledge)
        assert "The knowledge store is damaged" in message
        assert str(settings.knowledge_dir / "knowledge.lance" / "data") in message  # the missing file itself
        assert "engram doctor" in message and "backup" in message

        reported = await stats(client)
        assert reported["status"] == "degraded"
        assert "knowledge" in reported["damaged"]
        assert reported["knowledge"]["status"] == "damaged"
        assert reported["long_term"]["status"] == "ok" and reported["long_term"]["items"] == 2


async def test_a_truncated_memories_fragment_is_a_clear_error_naming_the_tier(settings: Settings) -> None:
    await fill(settings)
    truncate_memories_fragments(settings)
    async with connected(settings) as client:
        listed = await client.call_tool("list_memories", {"user_id": "alice"})
        assert listed.is_error
        message = text(listed)
        assert "The long-term store is damaged" in message and str(settings.long_term_dir) in message
        assert "engram doctor" in message
        # Knowledge still answers a default recall, which says what it could not search.
        recalled = await client.call_tool(
            "recall", {"detail": "full", "user_id": "alice", "query": "refunds thirty days"}
        )
        assert not recalled.is_error, text(recalled)
        assert recalled.structured_content["knowledge"]
        assert "long-term store is damaged" in recalled.structured_content["unavailable"][0]


async def test_healthz_reports_a_tier_damaged_at_start_while_the_others_serve(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash", tools="all")
    await fill(settings)
    garble_header(settings.session_cache_dir / "cache.db")  # sessions hold memories: reported, never rebuilt
    built = build_http_app(settings, "streamable-http")
    async with (
        built.app.router.lifespan_context(built.app),
        httpx2.AsyncClient(transport=httpx2.ASGITransport(app=built.app), base_url=BASE) as http,
    ):
        with anyio.fail_after(60):
            while (health := await http.get("/healthz")).json()["status"] == "loading":
                await anyio.sleep(0.05)
        assert health.status_code == 200
        body = health.json()
        assert body["status"] == "degraded"
        assert "session store is damaged" in body["damaged"]["session"]
        assert str(settings.session_cache_dir) in body["damaged"]["session"]


def doctor(settings: Settings, *args: str) -> tuple[int, str]:
    env = {"ENGRAM_DATA_DIR": str(settings.data_dir), "ENGRAM_EMBEDDING_MODEL": "hash"}
    result = CliRunner().invoke(cli, ["doctor", *args], env=env)
    return result.exit_code, result.stdout


async def test_doctor_passes_an_intact_data_dir(settings: Settings) -> None:
    await fill(settings)
    code, out = doctor(settings)
    assert code == 0, out
    assert "DAMAGED" not in out
    for component in ("long-term memory", "knowledge memory", "write journal", "sessions", "key"):
        assert component in out
    code, out = doctor(settings, "--json")
    report = json.loads(out)
    assert code == 0 and {c["status"] for c in report["components"]} <= {"ok", "warning"}
    assert report["damaged"] is False


async def test_doctor_names_each_damaged_file_and_what_to_do(settings: Settings) -> None:
    await fill(settings)
    missing = delete_knowledge_data(settings)
    truncated = truncate_memories_fragments(settings)
    code, out = doctor(settings)
    assert code == 1
    assert out.count("DAMAGED") == 2, out
    assert all(str(path) in out for path in [*missing, *truncated]), out
    code, out = doctor(settings, "--json")
    assert code == 1
    report = json.loads(out)
    damaged = {c["component"]: c for c in report["components"] if c["status"] == "damaged"}
    assert set(damaged) == {"long-term memory", "knowledge memory"}
    assert all(c["action"] for c in damaged.values())
    assert report["damaged"] is True


async def test_doctor_refuses_a_missing_key_file_when_memories_exist(settings: Settings) -> None:
    await fill(settings)
    settings.user_key_file.unlink()
    code, out = doctor(settings)
    assert code == 1
    assert "DAMAGED" in out and str(settings.user_key_file) in out and "backup" in out
