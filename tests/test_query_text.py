"""Any query text is valid input to `recall`: quotes, operators and other query syntax are searched as plain terms."""

from __future__ import annotations

import pytest
from mcp import Client

from engram.core.service import MemoryService
from tests.helpers import error, ok

pytestmark = pytest.mark.anyio

#: Text that a full-text query parser would read as syntax: phrases, empty phrases, boolean and SQL-looking
#: injections, field names, wildcards, fuzziness and boosts, brackets, escapes, and characters outside ASCII.
ADVERSARIAL = [
    '"thirty days"',
    '""',
    '" OR ""="',
    '"',
    '"""',
    "'thirty days'",
    "' OR '1'='1",
    "thirty AND days",
    "thirty OR days",
    "NOT thirty",
    "+thirty -days",
    "thirty && days || logs",
    "index_text:thirty",
    "content:days",
    "thirty*",
    "t?irty",
    "thirty~2",
    "thirty^10",
    "(thirty days",
    "thirty days)",
    "[thirty TO days]",
    "{thirty}",
    "thirty\\ days",
    "\\",
    '\\"thirty\\"',
    "/thirty/",
    "thirty; DROP TABLE memories; --",
    "%",
    "_",
    "*",
    "?",
    ":",
    "!",
    "AND",
    "OR",
    "NOT",
    "the",
    "日本語のクエリ",
    "ümlaut café thirty",
    "emoji 🤖 thirty",
    "thirty\tdays\nlogs",
    "thirty\x00days",
    '"thirty days" AND "logs"',
    "a" * 2000,
]


@pytest.fixture
async def stocked(client: Client) -> Client:
    """A user with a long-term memory and a knowledge document that both say 'thirty days'."""
    ok(await client.call_tool("remember", {"user_id": "alice", "content": "We keep the access logs for thirty days."}))
    ok(await client.call_tool("remember", {"user_id": "alice", "content": "The office plants need water weekly."}))
    text = "# Retention\n\nBackups are kept for thirty days.\n\n# Plants\n\nWater the office plants weekly."
    ok(await client.call_tool("ingest_text", {"user_id": "alice", "source": "policy.md", "text": text}))
    return client


@pytest.mark.parametrize("scope", ["both", "memories", "knowledge"])
async def test_any_query_text_is_answered_in_every_scope(stocked: Client, scope: str) -> None:
    for query in ADVERSARIAL:
        result = await stocked.call_tool(
            "recall", {"detail": "full", "user_id": "alice", "query": query, "scope": scope}
        )
        assert not result.is_error, f"{query[:40]!r} in scope {scope}: {result.content}"


async def test_a_quoted_phrase_finds_its_words_in_both_tables(stocked: Client) -> None:
    found = ok(
        await stocked.call_tool("recall", {"detail": "full", "user_id": "alice", "query": '"thirty days"', "top_k": 1})
    )
    (memory,) = found["memories"]
    assert memory["memory"]["content"] == "We keep the access logs for thirty days."
    assert memory["scores"]["keyword_rank"] == 1  # found by its words, as the unquoted query would be
    assert "thirty days" in found["knowledge"][0]["content"]
    assert found["knowledge"][0]["scores"]["keyword_rank"] == 1
    plain = ok(
        await stocked.call_tool("recall", {"detail": "full", "user_id": "alice", "query": "thirty days", "top_k": 1})
    )
    assert plain["memories"][0]["scores"]["keyword"] == memory["scores"]["keyword"]
    assert plain["knowledge"][0]["scores"]["keyword"] == found["knowledge"][0]["scores"]["keyword"]


async def test_a_blank_query_is_refused_with_a_reason(stocked: Client) -> None:
    assert "must contain text" in error(
        await stocked.call_tool("recall", {"detail": "full", "user_id": "alice", "query": "  \n "})
    )


async def test_a_quoted_phrase_searches_an_optimized_long_term_index(service: MemoryService) -> None:
    await service.remember("alice", "We keep the access logs for thirty days.")
    await service.remember("alice", "The office plants need water weekly.")
    service.long_term.inner.catch_up()  # type: ignore[attr-defined]
    service.long_term.inner.store.optimize()  # type: ignore[attr-defined]  # the rows are in the FTS index itself now
    for query in ADVERSARIAL:
        await service.recall("alice", query, scope="memories")
    found = await service.recall("alice", '"thirty days"', scope="memories", top_k=1)
    assert found.memories[0].memory.content == "We keep the access logs for thirty days."
