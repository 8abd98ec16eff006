"""A bad value of any size is quoted by a short prefix only, in the caller's error and in every log line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, MCPError

from engram.config import Settings
from engram.core.errors import InvalidInput, quoted
from engram.core.service import MemoryService
from engram.server.app import build_server
from tests.helpers import error, stepping_clock, text

pytestmark = pytest.mark.anyio

BIG = "x" * 2_000_000
#: The longest error or log line a bad value may produce: a few lines of explanation, each quoting a short prefix.
MAX_LINE = 2000
#: A quote of the bad value must be shorter than this.
QUOTE = "x" * 100
MEMORY_ID = "0" * 32

CALLS: list[tuple[str, dict[str, Any]]] = [
    ("remember", {"user_id": "alice", "content": "hi", "tags": [BIG]}),
    ("remember", {"user_id": "alice", "content": "hi", "tags": [f" {BIG} "]}),
    ("remember", {"user_id": "alice", "content": "hi", "tags": ["ok", BIG + "\n"]}),
    ("remember", {"user_id": BIG, "content": "hi"}),
    ("remember", {"user_id": "alice", "content": "hi", "session_id": BIG}),
    ("remember", {"user_id": "alice", "content": "hi", "agent_id": BIG}),
    ("remember", {"user_id": "alice", "content": "hi", "category": BIG}),
    ("remember", {"user_id": "alice", "content": BIG}),
    ("remember", {"user_id": "alice", "content": "hi", "metadata": {BIG: "v"}}),
    ("remember", {"user_id": "alice", "content": "hi", "metadata": {"k": BIG}}),
    ("remember", {"user_id": "alice", "content": "hi", "metadata": {"k": [BIG]}}),
    ("remember", {"user_id": "alice", "content": "hi", "entities": [BIG]}),
    ("remember", {"user_id": "alice", "content": "hi", "role": BIG}),
    ("remember", {"user_id": "alice", "content": "hi", "occurred_at": BIG}),
    ("remember", {"user_id": "alice", "content": "hi", "visibility": BIG}),
    ("remember", {"user_id": "alice", "content": "hi", "tags": [BIG[:1000]] * 20}),
    ("remember_many", {"user_id": "alice", "items": [{"content": "hi", "tags": [BIG]}]}),
    ("remember_many", {"user_id": "alice", "items": [{"content": BIG}]}),
    ("recall", {"user_id": "alice", "query": BIG}),
    ("recall", {"user_id": "alice", "query": "hi", "filters": {"tags": [BIG]}}),
    ("recall", {"user_id": "alice", "query": "hi", "filters": {"tags_all": [BIG]}}),
    ("recall", {"user_id": "alice", "query": "hi", "filters": {"entity": BIG}}),
    ("recall", {"user_id": "alice", "query": "hi", "filters": {"category": BIG}}),
    ("recall", {"user_id": "alice", "query": "hi", "filters": {"from_agents": [BIG]}}),
    ("recall", {"user_id": "alice", "query": "hi", "filters": {"from_session": BIG}}),
    ("recall", {"user_id": "alice", "query": "hi", "session_id": BIG}),
    ("recall", {"user_id": "alice", "query": "hi", "filters": {"since": BIG}}),
    ("recall", {"user_id": "alice", "query": "hi", "scope": BIG}),
    ("list_memories", {"user_id": "alice", "filters": {"tags": [BIG]}}),
    ("list_memories", {"user_id": "alice", "filters": {"entity": BIG}}),
    ("update_memory", {"user_id": "alice", "memory_id": BIG, "resolved": True}),
    ("update_memory", {"user_id": "alice", "memory_id": MEMORY_ID, "tags": [BIG]}),
    ("update_memory", {"user_id": "alice", "memory_id": MEMORY_ID, "content": BIG}),
    ("forget_memory", {"user_id": "alice", "memory_id": BIG}),
    ("summarize_session", {"user_id": "alice", "session_id": BIG}),
    ("summarize_session", {"user_id": "alice", "session_id": "s1", "summary": BIG}),
    ("forget_user", {"user_id": BIG, "confirm": True}),
    ("ingest_text", {"user_id": "alice", "source": BIG, "text": "hello"}),
    ("ingest_text", {"user_id": "alice", "source": "a.md", "text": "hello", "title": BIG}),
    ("ingest_text", {"user_id": "alice", "source": "a.md", "text": "hello", "format": BIG}),
    ("ingest_files", {"user_id": "alice", "paths": [BIG]}),
    ("ingest_files", {"user_id": "alice", "paths": ["/tmp"], "include": [BIG]}),
    ("forget_source", {"user_id": "alice", "source": BIG}),
]


def _short(message: str) -> bool:
    return len(message) < MAX_LINE and QUOTE not in message


def _long_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Log records that are too long or quote too much (tracebacks included)."""
    return [
        f"{r.name}: {r.getMessage()[:120]}…"
        for r in caplog.records
        if not _short(r.getMessage()) or QUOTE in logging.Formatter().format(r)
    ]


@pytest.mark.parametrize(("tool", "arguments"), CALLS, ids=[f"{t}-{i}" for i, (t, _) in enumerate(CALLS)])
async def test_a_huge_bad_value_gets_a_short_error_and_short_log_lines(
    client: Client, caplog: pytest.LogCaptureFixture, tool: str, arguments: dict[str, Any]
) -> None:
    caplog.set_level(logging.DEBUG)
    message = error(await client.call_tool(tool, arguments))
    assert _short(message), message[:300]
    assert _long_lines(caplog) == []


async def test_a_huge_path_to_ingest_is_quoted_short(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    root = tmp_path / "docs"
    root.mkdir()
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash", knowledge_roots=[root], tools="all")
    async with Client(build_server(settings, clock=stepping_clock), raise_exceptions=True) as client:
        for path in (str(root / BIG), str(tmp_path / BIG), "/" + BIG, str(root / "a" / BIG / "b.md")):
            result = await client.call_tool("ingest_files", {"user_id": "alice", "paths": [path]})
            answer = text(result)  # refused, or reported as a file that could not be read: short either way
            assert _short(answer), answer[:300]
    assert _long_lines(caplog) == []


@pytest.mark.parametrize(
    "uri",
    [f"engram://users/{BIG}/sessions/s1", f"engram://users/alice/sessions/{BIG}", f"engram://users/{BIG}/memories"],
)
async def test_a_huge_value_in_a_resource_uri_leaves_short_log_lines(
    client: Client, caplog: pytest.LogCaptureFixture, uri: str
) -> None:
    caplog.set_level(logging.DEBUG)
    # The SDK itself answers (it echoes the URI the caller sent, in the error and its data); the log stays short.
    with pytest.raises(MCPError, match="Unknown resource"):
        await client.read_resource(uri)
    assert _long_lines(caplog) == []


async def test_the_services_own_errors_quote_a_short_prefix(service: MemoryService) -> None:
    for call in (
        service.remember("alice", "hi", tags=[BIG]),
        service.remember("alice", "hi", metadata={BIG: 1}),
        service.recall(BIG, "hi"),
        service.transcript("alice", BIG),
        service.forget_memory("alice", BIG),
    ):
        with pytest.raises(InvalidInput) as refused:
            await call
        assert _short(str(refused.value))
        assert f"({len(BIG):,} characters)" in str(refused.value)  # says how long the value was


def test_quoted_keeps_short_values_whole_and_cuts_long_ones() -> None:
    assert quoted("billing") == "'billing'"
    assert quoted("x" * 60) == repr("x" * 60)
    assert quoted("y" * 61) == f"{'y' * 60!r}… (61 characters)"
    assert quoted("z" * 2_000_000) == f"{'z' * 60!r}… (2,000,000 characters)"
    assert quoted(None) == "None" and quoted(["a"] * 100).endswith("… (500 characters)")
