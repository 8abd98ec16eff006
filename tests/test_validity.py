"""Facts that stay true: validity in time, supersession decided by the caller, recall `as_of`, old tables upgraded."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lancedb
import pyarrow as pa
import pytest
from mcp import Client

from engram.config import Settings
from engram.core.errors import InvalidInput
from engram.core.models import Kind, Memory
from engram.core.ports import Embedder
from engram.core.service import MemoryService
from engram.embeddings.hashing import HashEmbedder
from engram.runtime import open_memory
from engram.server.app import build_server
from engram.storage import long_term as lt
from tests.helpers import ok, stepping_clock

pytestmark = pytest.mark.anyio

PARIS_DAY = datetime(2024, 3, 1, tzinfo=UTC)
BERLIN_DAY = datetime(2025, 2, 1, tzinfo=UTC)


def _contents(reply: dict[str, Any]) -> list[str]:
    return [hit["content"] for hit in reply["hits"] if hit["tier"] == "long_term"]


@pytest.mark.slow
async def test_a_fact_superseded_on_the_callers_word_is_history_and_answers_as_of_its_time(
    tmp_path: Path, real_embedder: Embedder
) -> None:
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash", tools="all")
    server = build_server(settings, embedder=real_embedder, clock=stepping_clock)
    async with Client(server, raise_exceptions=True) as client:
        paris = ok(
            await client.call_tool(
                "remember", {"user_id": "ann", "content": "I live in Paris", "occurred_at": PARIS_DAY.isoformat()}
            )
        )
        await client.call_tool("remember", {"user_id": "ann", "content": "I enjoy long walks by the river"})
        berlin_args = {
            "user_id": "ann",
            "content": "We moved to Berlin last month",
            "occurred_at": BERLIN_DAY.isoformat(),
        }
        first = ok(await client.call_tool("remember", berlin_args))
        # Engram only suggests; nothing is closed until the caller says so.
        assert paris["id"] in [c["id"] for c in first["supersede_candidates"]]
        assert "superseded" not in first
        # The caller decides, in a later call with the same content.
        again = ok(await client.call_tool("remember", {**berlin_args, "supersedes": [paris["id"]]}))
        assert again["id"] == first["id"] and again["created"] is False and again["superseded"] == [paris["id"]]

        now = ok(await client.call_tool("recall", {"user_id": "ann", "query": "where does the user live?"}))
        assert _contents(now)[0] == "We moved to Berlin last month"
        assert "I live in Paris" not in _contents(now)

        then = ok(
            await client.call_tool(
                "recall", {"user_id": "ann", "query": "where does the user live?", "as_of": "2024-06-01T00:00:00Z"}
            )
        )
        assert _contents(then)[0] == "I live in Paris"
        assert "We moved to Berlin last month" not in _contents(then)

        # History stays readable: the old fact names what replaced it and when it stopped holding.
        listed = ok(await client.call_tool("list_memories", {"user_id": "ann"}))["memories"]
        old = next(m for m in listed if m["id"] == paris["id"])
        new = next(m for m in listed if m["id"] == first["id"])
        assert old["superseded_by"] == [first["id"]] and old["valid_until"].startswith("2025-02-01")
        assert new["supersedes"] == [paris["id"]] and new["valid_until"] is None


async def test_supersedes_in_the_same_call_closes_the_old_fact(service: MemoryService) -> None:
    old = await service.remember("bo", "My phone number ends in 17", occurred_at=PARIS_DAY)
    new = await service.remember("bo", "My phone number ends in 42", occurred_at=BERLIN_DAY, supersedes=[old.id])
    assert new.superseded == [old.id]
    current = await service.recall("bo", "phone number", top_k=5)
    assert [h.memory.id for h in current.memories] == [new.id]
    past = await service.recall("bo", "phone number", top_k=5, as_of=datetime(2024, 12, 1, tzinfo=UTC))
    assert [h.memory.id for h in past.memories] == [old.id]
    before_both = await service.recall("bo", "phone number", top_k=5, as_of=datetime(2023, 1, 1, tzinfo=UTC))
    assert before_both.memories == []


async def test_a_bad_supersedes_stores_nothing_and_says_what_is_accepted(service: MemoryService) -> None:
    with pytest.raises(InvalidInput, match="no memory"):
        await service.remember("cy", "I work at Acme", supersedes=["0" * 32])
    with pytest.raises(InvalidInput, match="supersedes"):
        await service.remember("cy", "I work at Acme", supersedes=["not-an-id"])
    assert (await service.list_memories("cy")).memories == []


async def test_only_an_older_memory_can_be_superseded(service: MemoryService) -> None:
    newer = await service.remember("di", "I drive a blue car", occurred_at=BERLIN_DAY)
    with pytest.raises(InvalidInput, match="only an older memory"):
        await service.remember("di", "I drive a red car", occurred_at=PARIS_DAY, supersedes=[newer.id])
    assert [m.id for m in (await service.list_memories("di")).memories] == [newer.id]


async def test_another_agents_private_memory_cannot_be_superseded(service: MemoryService) -> None:
    secret = await service.remember("ed", "I like tea", agent_id="a1", visibility="private", occurred_at=PARIS_DAY)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="no memory"):
        await service.remember("ed", "I like coffee", agent_id="a2", supersedes=[secret.id])
    listed = await service.list_memories("ed", agent_id="a1")
    assert [m.valid_until for m in listed.memories] == [None]


async def test_update_memory_closes_a_fact_or_names_its_successor(service: MemoryService) -> None:
    old = await service.remember("fa", "My manager is Ruth", occurred_at=PARIS_DAY)
    new = await service.remember("fa", "My manager is Omar", occurred_at=BERLIN_DAY)
    updated = await service.update_memory("fa", old.id, superseded_by=new.id)
    assert updated.memory.valid_until == BERLIN_DAY and updated.memory.superseded_by == [new.id]
    (stored_new,) = [m for m in (await service.list_memories("fa")).memories if m.id == new.id]
    assert stored_new.supersedes == [old.id]
    assert [h.memory.id for h in (await service.recall("fa", "manager", top_k=5)).memories] == [new.id]

    ended = await service.remember("fa", "I am on a sabbatical", occurred_at=PARIS_DAY)
    closed = await service.update_memory("fa", ended.id, valid_until=datetime(2024, 9, 1, tzinfo=UTC))
    assert closed.memory.valid_until == datetime(2024, 9, 1, tzinfo=UTC)
    with pytest.raises(InvalidInput, match="valid_until"):
        await service.update_memory("fa", ended.id, valid_until=datetime(2020, 1, 1, tzinfo=UTC))
    with pytest.raises(InvalidInput, match="superseded_by"):
        await service.update_memory("fa", new.id, superseded_by=old.id)  # older than it


async def test_a_near_duplicate_fact_is_suggested_and_a_turn_gets_no_suggestions(service: MemoryService) -> None:
    first = await service.remember("gu", "My favourite colour is green", occurred_at=PARIS_DAY)
    repeat = await service.remember("gu", "My favourite colour is green.", occurred_at=PARIS_DAY)
    assert repeat.id != first.id
    assert [c.id for c in repeat.supersede_candidates] == [first.id]
    assert repeat.supersede_candidates[0].reason == "near-duplicate"
    turn = await service.remember("gu", "My favourite colour is green!", session_id="s1")
    assert turn.supersede_candidates == []
    # Suggestions never cost the write: both versions are stored and current until the caller decides.
    assert len((await service.list_memories("gu")).memories) == 3


_VALIDITY = ("valid_from", "valid_until", "supersedes", "superseded_by")


def _old_schema(dimensions: int, model_id: str, added: tuple[str, ...]) -> pa.Schema:
    """The memories table as an earlier version wrote it: without the `added` columns."""
    full = lt.memory_schema(dimensions, model_id)
    return pa.schema([f for f in full if f.name not in added], metadata=full.metadata)


# Today's main has the project column but not validity; a directory older than projects lacks both.
@pytest.mark.parametrize("added", [_VALIDITY, (*_VALIDITY, "project")], ids=["before-validity", "before-projects"])
async def test_a_table_written_before_validity_opens_with_every_memory_current(
    tmp_path: Path, added: tuple[str, ...]
) -> None:
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash", tools="all")
    embedder = HashEmbedder()
    old_memory = Memory(
        id="a" * 32, user_id="placeholder", content="I live in Lyon", created_at=PARIS_DAY, kind=Kind.FACT
    )
    service = open_memory(settings, embedder, clock=stepping_clock)
    key = service.user_key("hu")
    service.close()
    # Written the way a previous schema did: none of the `added` columns.
    directory = settings.long_term_dir
    shutil.rmtree(directory / f"{lt.TABLE_NAME}.lance")
    db = lancedb.connect(str(directory))
    row = lt._to_row(old_memory.model_copy(update={"user_id": key}), "I live in Lyon", embedder.embed(["x"])[0])
    for name in added:
        row.pop(name)
    db.create_table(lt.TABLE_NAME, data=[row], schema=_old_schema(embedder.dimensions, embedder.model_id, added))

    service = open_memory(settings, embedder, clock=stepping_clock)
    try:
        (memory,) = (await service.list_memories("hu")).memories
        assert memory.valid_from == PARIS_DAY and memory.valid_until is None and memory.superseded_by == []
        assert [h.memory.id for h in (await service.recall("hu", "Lyon")).memories] == [old_memory.id]
        as_of = await service.recall("hu", "Lyon", as_of=datetime(2024, 6, 1, tzinfo=UTC))
        assert [h.memory.id for h in as_of.memories] == [old_memory.id]
        newer = await service.remember("hu", "I live in Nice", occurred_at=BERLIN_DAY, supersedes=[old_memory.id])
        assert newer.superseded == [old_memory.id]
        assert [h.memory.content for h in (await service.recall("hu", "live")).memories] == ["I live in Nice"]
    finally:
        service.close()
