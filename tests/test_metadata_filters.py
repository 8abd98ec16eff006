"""Metadata on memories: every filter of `recall` and `list_memories`, their combinations, and `update_memory`."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import lancedb
import pyarrow as pa
import pytest
from mcp import Client

from engram.config import Settings
from engram.core.filters import MemoryFilters
from engram.core.models import Visibility
from engram.embeddings.hashing import HashEmbedder
from engram.runtime import open_memory
from tests.helpers import TEST_NOW, error, ok, stepping_clock

pytestmark = pytest.mark.anyio

NOW = TEST_NOW
#: (content, remember arguments) of a small support history.
HISTORY: list[tuple[str, dict[str, Any]]] = [
    (
        "Charged twice for the March invoice",
        {
            "tags": ["billing", "refund"],
            "entities": ["Acme Corp"],
            "sentiment": "negative",
            "category": "billing",
            "resolved": False,
            "importance": 0.9,
            "agent_id": "support",
        },
    ),
    (
        "Refund for the March invoice arrived, thanks",
        {
            "tags": ["billing"],
            "entities": ["Acme Corp"],
            "sentiment": "positive",
            "category": "billing",
            "resolved": True,
            "importance": 0.4,
            "agent_id": "support",
            "session_id": "s2",
        },
    ),
    (
        "The mobile app crashes when opening settings",
        {
            "tags": ["technical-issue", "mobile"],
            "entities": ["Engram App"],
            "sentiment": "negative",
            "category": "technical_issue",
            "importance": 0.7,
            "agent_id": "ide",
        },
    ),
    (
        "Prefers to be contacted by email in the morning",
        {
            "tags": ["contact"],
            "sentiment": "neutral",
            "category": "preference",
            "importance": 0.5,
            "occurred_at": (NOW - timedelta(days=30)).isoformat(),
        },
    ),
]
ALL = {content for content, _ in HISTORY}


@pytest.fixture
async def history(client: Client) -> dict[str, str]:
    ids = {}
    for content, arguments in HISTORY:
        result = ok(await client.call_tool("remember", {"user_id": "alice", "content": content, **arguments}))
        ids[content] = result["id"]
    ok(await client.call_tool("remember", {"user_id": "bob", "content": "Charged twice", "tags": ["billing"]}))
    return ids


async def _recall(client: Client, **filters: Any) -> set[str]:
    arguments = {"detail": "full", "user_id": "alice", "query": "invoice app email", "top_k": 50, "filters": filters}
    return {h["memory"]["content"] for h in ok(await client.call_tool("recall", arguments))["memories"]}


async def _list(client: Client, **filters: Any) -> set[str]:
    arguments = {"user_id": "alice", "limit": 100, "filters": filters}
    return {m["content"] for m in ok(await client.call_tool("list_memories", arguments))["memories"]}


CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({}, ALL),
    ({"tags": ["refund", "mobile"]}, {HISTORY[0][0], HISTORY[2][0]}),
    ({"tags": ["BILLING"]}, {HISTORY[0][0], HISTORY[1][0]}),
    ({"tags_all": ["billing", "refund"]}, {HISTORY[0][0]}),
    ({"entity": "acme corp"}, {HISTORY[0][0], HISTORY[1][0]}),
    ({"entity": "Engram App"}, {HISTORY[2][0]}),
    ({"sentiment": "negative"}, {HISTORY[0][0], HISTORY[2][0]}),
    ({"sentiment": "neutral"}, {HISTORY[3][0]}),
    ({"category": "billing"}, {HISTORY[0][0], HISTORY[1][0]}),
    ({"resolved": True}, {HISTORY[1][0]}),
    ({"resolved": False}, {HISTORY[0][0], HISTORY[2][0], HISTORY[3][0]}),
    ({"min_importance": 0.7}, {HISTORY[0][0], HISTORY[2][0]}),
    ({"from_agents": ["support"]}, {HISTORY[0][0], HISTORY[1][0]}),
    ({"exclude_agents": ["support"]}, {HISTORY[2][0], HISTORY[3][0]}),
    ({"from_session": "s2"}, {HISTORY[1][0]}),
    ({"kind": "turn"}, {HISTORY[1][0]}),
    ({"since": (NOW - timedelta(days=1)).isoformat()}, ALL - {HISTORY[3][0]}),
    ({"until": (NOW - timedelta(days=1)).isoformat()}, {HISTORY[3][0]}),
    # Combinations narrow further.
    ({"category": "billing", "resolved": False}, {HISTORY[0][0]}),
    ({"sentiment": "negative", "min_importance": 0.8, "entity": "ACME CORP"}, {HISTORY[0][0]}),
    ({"tags": ["billing", "mobile"], "exclude_agents": ["ide"], "resolved": True}, {HISTORY[1][0]}),
    ({"category": "billing", "sentiment": "neutral"}, set()),
]


@pytest.mark.parametrize(("filters", "expected"), CASES, ids=[str(sorted(f)) for f, _ in CASES])
async def test_each_filter_and_combination_returns_only_matches(
    client: Client, history: dict[str, str], filters: dict[str, Any], expected: set[str]
) -> None:
    assert await _recall(client, **filters) == expected
    assert await _list(client, **filters) == expected


async def test_update_memory_moves_a_memory_between_resolved_results(client: Client, history: dict[str, str]) -> None:
    charged = HISTORY[0][0]
    assert charged in await _recall(client, resolved=False)
    updated = ok(
        await client.call_tool("update_memory", {"user_id": "alice", "memory_id": history[charged], "resolved": True})
    )
    assert updated["id"] == history[charged] and updated["previous_id"] is None
    assert updated["memory"]["resolved"] is True and updated["memory"]["updated_at"] is not None
    assert charged in await _recall(client, resolved=True)
    assert charged not in await _recall(client, resolved=False)
    assert charged in await _list(client, resolved=True)


async def test_update_memory_changes_metadata_and_keeps_the_rest(client: Client, history: dict[str, str]) -> None:
    crash = HISTORY[2][0]
    before = ok(await client.call_tool("list_memories", {"user_id": "alice", "filters": {"entity": "engram app"}}))[
        "memories"
    ][0]
    ok(
        await client.call_tool(
            "update_memory",
            {"user_id": "alice", "memory_id": history[crash], "tags": ["Urgent"], "category": "bug", "importance": 1},
        )
    )
    after = ok(await client.call_tool("list_memories", {"user_id": "alice", "filters": {"tags": ["urgent"]}}))[
        "memories"
    ]
    assert [m["content"] for m in after] == [crash]
    assert after[0]["category"] == "bug" and after[0]["importance"] == 1.0 and after[0]["tags"] == ["urgent"]
    assert after[0]["created_at"] == before["created_at"] and after[0]["entities"] == ["Engram App"]
    assert crash not in await _recall(client, tags=["mobile"])


async def test_update_memory_content_is_reembedded_and_reindexed(client: Client, history: dict[str, str]) -> None:
    email = HISTORY[3][0]
    updated = ok(
        await client.call_tool(
            "update_memory",
            {"user_id": "alice", "memory_id": history[email], "content": "Prefers phone calls after lunch"},
        )
    )
    assert updated["previous_id"] == history[email] and updated["id"] != history[email]
    hits = ok(
        await client.call_tool(
            "recall", {"detail": "full", "user_id": "alice", "query": "phone calls lunch", "top_k": 1}
        )
    )
    top = hits["memories"][0]["memory"]
    assert top["content"] == "Prefers phone calls after lunch" and top["id"] == updated["id"]
    assert top["created_at"] == updated["memory"]["created_at"] and top["category"] == "preference"
    assert email not in await _list(client)
    keyword = ok(
        await client.call_tool("recall", {"detail": "full", "user_id": "alice", "query": "morning email", "top_k": 50})
    )
    assert email not in {h["memory"]["content"] for h in keyword["memories"]}
    # Bob's memories are untouched and out of reach.
    assert error(
        await client.call_tool("update_memory", {"user_id": "bob", "memory_id": updated["id"], "resolved": True})
    )


@pytest.mark.parametrize(
    ("arguments", "field", "accepted"),
    [
        ({"memory_id": "0" * 32, "resolved": True}, "memory_id", "no memory"),
        ({"memory_id": "xyz", "resolved": True}, "memory_id", "32 lowercase hexadecimal"),
        ({"memory_id": "0" * 32}, "update", "nothing to change"),
        ({"memory_id": "0" * 32, "importance": 2}, "importance", "less than or equal to 1"),
    ],
)
async def test_update_memory_bad_input(client: Client, arguments: dict[str, Any], field: str, accepted: str) -> None:
    message = error(await client.call_tool("update_memory", {"user_id": "alice", **arguments}))
    assert field in message and accepted in message, message


async def test_update_to_content_already_stored_is_refused(client: Client, history: dict[str, str]) -> None:
    message = error(
        await client.call_tool(
            "update_memory", {"user_id": "alice", "memory_id": history[HISTORY[0][0]], "content": HISTORY[1][0]}
        )
    )
    assert "already stored" in message
    assert await _list(client) == ALL


async def test_list_memories_pages_newest_first(client: Client) -> None:
    for i in range(7):
        when = (NOW - timedelta(hours=i)).isoformat()
        ok(await client.call_tool("remember", {"user_id": "alice", "content": f"fact {i}", "occurred_at": when}))
    seen: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = ok(await client.call_tool("list_memories", {"user_id": "alice", "limit": 3, "offset": offset}))
        seen += [m["content"] for m in page["memories"]]
        offset = page["next_offset"]
    assert seen == [f"fact {i}" for i in range(7)]
    message = error(await client.call_tool("list_memories", {"user_id": "alice", "limit": 1000}))
    assert "limit" in message and "less than or equal to 100" in message


def test_a_version_1_table_is_upgraded_in_place(tmp_path: Path) -> None:
    """A store written before visibility and entity keys existed opens, keeps its rows, and filters by them."""
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash")
    embedder = HashEmbedder()
    memory = open_memory(settings, embedder, clock=stepping_clock)
    alice = memory.user_key("alice")
    memory.close()
    db = lancedb.connect(str(settings.data_dir / "lancedb"))
    current = db.open_table("memories").schema
    # The table as schema version 1 stored it: no visibility and no entity_keys columns.
    v1 = pa.schema([f for f in current if f.name not in {"visibility", "entity_keys"}], current.metadata)
    row: dict[str, Any] = dict.fromkeys(v1.names) | {
        "id": "0" * 32,
        "user_id": alice,
        "kind": "fact",
        "content": "kept across the upgrade",
        "created_at": NOW,
        "index_text": "kept across the upgrade",
        "vector": embedder.embed(["kept across the upgrade"])[0].tolist(),
    }
    db.create_table("memories", schema=v1, data=[row], mode="overwrite")
    upgraded = open_memory(settings, embedder, clock=stepping_clock)
    try:
        shared = upgraded.long_term.list_memories(alice, MemoryFilters(), 10)
        assert [(m.content, m.visibility) for m in shared] == [("kept across the upgrade", Visibility.SHARED)]
        assert upgraded.long_term.list_memories(alice, MemoryFilters(entity="x"), 10) == []
    finally:
        upgraded.close()
