"""Pseudonymous user ids: the raw id never reaches the data directory; the key is owner-only and stable."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import lancedb
import pytest
from mcp import Client, MCPError
from pydantic import SecretStr

from engram.config import Settings
from engram.core.errors import InvalidInput
from engram.embeddings.hashing import HashEmbedder
from engram.runtime import open_memory, user_id_key
from engram.server.app import build_server
from tests.helpers import ok, stepping_clock

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
        recalled = ok(await client.call_tool("recall", {"user_id": RAW_ID, "query": "latex", "session_id": "s1"}))
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
