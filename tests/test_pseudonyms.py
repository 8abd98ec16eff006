"""Pseudonymous user ids: the raw id never reaches the data directory; the key is owner-only and stable."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import anyio
import lancedb
import pytest
from mcp import Client, MCPError
from pydantic import SecretStr

from engram.config import Settings
from engram.core.errors import InvalidInput, UserKeyLost
from engram.embeddings.hashing import HashEmbedder
from engram.runtime import open_memory, user_id_key
from engram.server.app import build_server
from tests.helpers import error, ok, stepping_clock

pytestmark = pytest.mark.anyio

RAW_ID = "dr.jane-voss@clinic.example"


async def test_the_raw_user_id_never_reaches_any_file(settings: Settings) -> None:
    server = build_server(settings, embedder=HashEmbedder(), clock=stepping_clock)
    async with Client(server, raise_exceptions=True) as client:
        for i in range(8):
            content = f"visit note {i}: blood pressure reading and follow-up plan"
            ok(await client.call_tool("remember", {"user_id": RAW_ID, "content": content, "session_id": "s1"}))
        ok(await client.call_tool("remember_many", {"user_id": RAW_ID, "items": [{"content": "allergic to latex"}]}))
        ok(await client.call_tool("summarize_session", {"user_id": RAW_ID, "session_id": "s1", "keep_recent": 2}))
        recalled = ok(
            await client.call_tool(
                "recall", {"detail": "full", "user_id": RAW_ID, "query": "latex", "session_id": "s1"}
            )
        )
        # Callers still see their own id.
        assert recalled["memories"][0]["memory"]["user_id"] == RAW_ID
        await client.read_resource(f"engram://users/{RAW_ID}/sessions")
        await client.read_resource(f"engram://users/{RAW_ID}/memories")

    raw = b"".join(p.read_bytes() for p in settings.data_dir.rglob("*") if p.is_file())
    assert RAW_ID.encode() not in raw and b"jane-voss" not in raw
    # Decoded, too: compression could hide a plain byte match.
    table = lancedb.connect(str(settings.long_term_dir)).open_table("memories").to_arrow()
    stored_ids = set(table.column("user_id").to_pylist())
    assert len(stored_ids) == 1 and next(iter(stored_ids)).startswith("u-") and RAW_ID not in stored_ids


def test_the_generated_key_is_owner_only_and_stable(settings: Settings) -> None:
    open_memory(settings, HashEmbedder(), clock=stepping_clock).close()
    mode = stat.S_IMODE(settings.user_key_file.stat().st_mode)
    assert mode == 0o600
    first = user_id_key(settings)
    assert user_id_key(settings) == first and len(first) >= 32


async def test_same_key_same_pseudonym_other_key_other_pseudonym(tmp_path: Path) -> None:
    def service_with(key: str, where: str):  # type: ignore[no-untyped-def]
        data = tmp_path / where
        settings = Settings(data_dir=data, embedding_model="hash", user_id_key=SecretStr(key))
        return open_memory(settings, HashEmbedder(), clock=stepping_clock)

    a, b, c = service_with("k" * 32, "a"), service_with("k" * 32, "b"), service_with("z" * 32, "c")
    try:
        assert a.user_key("alice") == b.user_key("alice") != c.user_key("alice")
        assert a.user_key("alice") != a.user_key("bob")
    finally:
        for service in (a, b, c):
            service.close()


def test_a_short_key_in_the_environment_is_refused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, embedding_model="hash", user_id_key=SecretStr("short"))
    with pytest.raises(InvalidInput, match="ENGRAM_USER_ID_KEY"):
        open_memory(settings, HashEmbedder(), clock=stepping_clock)


async def test_logs_never_carry_the_raw_user_id(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    ok(await client.call_tool("remember", {"user_id": RAW_ID, "content": "something to log about"}))
    with pytest.raises(MCPError):
        await client.read_resource(f"engram://users/{RAW_ID}/sessions/no-such-session")
    await client.call_tool("forget_user", {"user_id": RAW_ID})  # refused without confirm: an error is logged
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "no-such-session" in logged  # the failures were logged...
    assert RAW_ID not in logged  # ...without the user id


async def test_a_lost_key_file_stops_every_tool_and_says_how_to_restore_it(settings: Settings) -> None:
    async with Client(build_server(settings, embedder=HashEmbedder()), raise_exceptions=True) as client:
        ok(await client.call_tool("remember", {"user_id": RAW_ID, "content": "allergic to latex", "session_id": "s"}))
    backup = settings.user_key_file.read_bytes()
    settings.user_key_file.unlink()

    async with Client(build_server(settings, embedder=HashEmbedder()), raise_exceptions=True) as client:
        recall = error(await client.call_tool("recall", {"detail": "full", "user_id": RAW_ID, "query": "latex"}))
        erase = error(await client.call_tool("forget_user", {"user_id": RAW_ID, "confirm": True}))
    for message in (recall, erase):
        assert "user-id.key" in message and "backup" in message and str(settings.data_dir) in message
    assert not settings.user_key_file.exists()  # no new key was made: it would orphan the memories for good

    settings.user_key_file.write_bytes(backup)  # restored from the backup: everything is found again
    async with Client(build_server(settings, embedder=HashEmbedder()), raise_exceptions=True) as client:
        found = ok(await client.call_tool("recall", {"detail": "full", "user_id": RAW_ID, "query": "latex"}))
        assert found["memories"][0]["memory"]["content"] == "allergic to latex"
        ok(await client.call_tool("forget_user", {"user_id": RAW_ID, "confirm": True}))


def test_a_different_key_than_the_data_was_written_with_is_refused(tmp_path: Path) -> None:
    def settings_with(key: str | None) -> Settings:
        return Settings(data_dir=tmp_path, embedding_model="hash", user_id_key=None if key is None else SecretStr(key))

    first = open_memory(settings_with("k" * 32), HashEmbedder())
    anyio_run(first.remember("alice", "written under the first key"))
    first.close()
    with pytest.raises(UserKeyLost, match="ENGRAM_USER_ID_KEY"):
        open_memory(settings_with("z" * 32), HashEmbedder())
    # The key file is no way around it either: a wrong or regenerated file is refused the same way.
    with pytest.raises(UserKeyLost, match=r"user-id\.key"):
        open_memory(settings_with(None), HashEmbedder())
    settings_with(None).user_key_file.write_text("y" * 64)
    with pytest.raises(UserKeyLost, match=r"user-id\.key"):
        open_memory(settings_with(None), HashEmbedder())
    settings_with(None).user_key_file.write_text("k" * 32)  # the right key, now kept in the file
    again = open_memory(settings_with(None), HashEmbedder())
    try:
        assert [m.content for m in anyio_run(again.list_memories("alice")).memories] == ["written under the first key"]
    finally:
        again.close()


def test_a_new_data_dir_and_one_whose_stores_were_moved_away_get_a_new_key(settings: Settings) -> None:
    open_memory(settings, HashEmbedder()).close()
    settings.user_key_file.unlink()
    moved = settings.data_dir.parent / "old-stores"
    moved.mkdir()
    for store in (settings.long_term_dir, settings.knowledge_dir, settings.session_cache_dir):
        store.rename(moved / store.name)
    open_memory(settings, HashEmbedder()).close()  # starting afresh, as the refusal explains
    assert len(settings.user_key_file.read_bytes()) >= 32


def anyio_run(coroutine):  # type: ignore[no-untyped-def]
    """Run one coroutine to completion from synchronous test code."""

    async def runner():  # type: ignore[no-untyped-def]
        return await coroutine

    return anyio.run(runner)
