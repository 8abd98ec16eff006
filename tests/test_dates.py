"""Dates: questions' time references resolved against the time they are asked; undated turns of past sessions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from mcp import Client

from engram.config import Settings
from engram.core.temporal import resolve
from engram.embeddings.hashing import HashEmbedder
from engram.runtime import open_memory
from engram.server.app import build_server
from tests.helpers import error, ok, stepping_clock

pytestmark = pytest.mark.anyio

#: A Wednesday.
ASKED = datetime(2025, 3, 12, 18, 30, tzinfo=UTC)


def _day(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("question", "inside", "outside"),
    [
        ("what did I buy last Saturday?", "2025-03-08T15:00", "2025-03-01T15:00"),
        ("what did I cook yesterday?", "2025-03-11T20:00", "2025-03-09T20:00"),
        ("who did I meet two weeks ago?", "2025-02-26T10:00", "2025-02-12T10:00"),
        ("which museum did I visit 10 days ago", "2025-03-02T10:00", "2025-03-08T10:00"),
        ("what did I read in May?", "2024-05-20T10:00", "2025-03-10T10:00"),
        ("what happened in January 2025?", "2025-01-15T10:00", "2024-01-15T10:00"),
        ("what did I plan last month?", "2025-02-14T10:00", "2025-03-05T10:00"),
        ("how many plants did I buy in the last month?", "2025-03-05T10:00", "2025-02-05T10:00"),
        ("how many times did I bake in the past two weeks?", "2025-03-01T10:00", "2025-02-20T10:00"),
    ],
)
def test_time_references_resolve_against_the_question_date(question: str, inside: str, outside: str) -> None:
    period = resolve(question, ASKED).period
    assert period is not None, question
    start, end = period
    assert start <= _day(inside) < end
    assert not start <= _day(outside) < end


def test_questions_without_a_period_name_none_and_may_ask_for_an_end_of_history() -> None:
    assert resolve("Where does my sister live?", ASKED).period is None
    assert resolve("You may tell me what tea I like", ASKED).period is None
    assert resolve("When did I first try climbing?", ASKED).order == "earliest"
    assert resolve("What is my most recent score?", ASKED).order == "latest"


def test_days_start_at_midnight_in_the_question_zone() -> None:
    # Tuesday 23:30 in New York is already Wednesday in UTC: "yesterday" is Monday there.
    asked = datetime(2025, 3, 11, 23, 30, tzinfo=timezone(timedelta(hours=-4)))
    start, end = resolve("what did I do yesterday?", asked).period or (None, None)
    assert start is not None and end is not None
    assert start <= datetime(2025, 3, 10, 12, tzinfo=asked.tzinfo) < end
    assert not start <= datetime(2025, 3, 12, 12, tzinfo=asked.tzinfo) < end


async def test_what_did_i_buy_last_saturday_finds_that_saturdays_turn(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash", tools="all")
    server = build_server(settings, embedder=HashEmbedder(), clock=stepping_clock)
    turns = [
        # Another month's Saturday shopping, worded a little closer to the question than the right one.
        ("s-jan", "2025-01-18T11:00:00Z", "I went to buy a lamp at the market and I bought a new lamp."),
        ("s-mar", "2025-03-08T11:00:00Z", "I bought a cast iron pan at the market."),
        ("s-feb", "2025-02-20T11:00:00Z", "The market was closed, so I did not buy anything."),
    ]
    async with Client(server, raise_exceptions=True) as client:
        ids = {}
        for session, when, content in turns:
            stored = ok(
                await client.call_tool(
                    "remember",
                    {"user_id": "alice", "content": content, "session_id": session, "occurred_at": when},
                )
            )
            ids[session] = stored["id"]
        found = ok(
            await client.call_tool(
                "recall",
                {
                    "user_id": "alice",
                    "query": "what did I buy last Saturday?",
                    "as_of": ASKED.isoformat(),
                    "top_k": 3,
                },
            )
        )
        assert found["hits"][0]["id"] == ids["s-mar"]
        message = error(
            await client.call_tool("recall", {"user_id": "alice", "query": "lamp", "as_of": "last tuesday"})
        )
        assert "as_of" in message


async def test_an_undated_turn_of_a_past_session_takes_the_session_date(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash", tools="all")
    memory = open_memory(settings, HashEmbedder(), clock=stepping_clock)
    try:
        said = datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
        await memory.remember("alice", "I went to the support group", session_id="s1", occurred_at=said)
        reply = await memory.remember("alice", "That sounds great, how was it?", session_id="s1", role=None)
        live = await memory.remember("alice", "Started a live chat", session_id="s2")
        follow = await memory.remember("alice", "And a second live turn", session_id="s2")
        dated = {m.id: m.created_at for m in (await memory.list_memories("alice", limit=10)).memories}
        assert dated[reply.id] == said, "logged into a session of 2023, it happened in 2023"
        assert dated[live.id].year == stepping_clock().year, "a live session's turns are dated now"
        assert dated[follow.id] >= dated[live.id]
    finally:
        memory.close()


async def test_an_undated_turn_of_a_past_session_is_found_as_of_that_session(tmp_path: Path) -> None:
    """Dated by its session, it holds from then too: recall as of a later day of that year finds it."""
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash", tools="all")
    memory = open_memory(settings, HashEmbedder(), clock=stepping_clock)
    try:
        said = datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
        await memory.remember("alice", "I went to the support group", session_id="s1", occurred_at=said)
        reply = await memory.remember("alice", "The support group meets on Mondays.", session_id="s1")
        asked = said + timedelta(days=3)
        found = await memory.recall("alice", "When does the support group meet?", as_of=asked, top_k=5)
        assert reply.id in [hit.memory.id for hit in found.memories]
        (stored,) = [m for m in (await memory.list_memories("alice", limit=10)).memories if m.id == reply.id]
        assert stored.valid_from == said
    finally:
        memory.close()


async def test_one_as_of_sets_both_the_question_date_and_what_was_valid_then(tmp_path: Path) -> None:
    """'Last Saturday' counts from `as_of`, and a memory that starts after `as_of` was not yet there to answer."""
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash", tools="all")
    server = build_server(settings, embedder=HashEmbedder(), clock=stepping_clock)
    turns = {
        "then": ("2025-03-08T11:00:00Z", "I bought a cast iron pan at the market."),
        "later": ("2025-03-15T11:00:00Z", "I bought a copper pan at the market."),
    }
    async with Client(server, raise_exceptions=True) as client:
        ids = {}
        for name, (when, content) in turns.items():
            arguments = {"user_id": "alice", "content": content, "session_id": f"s-{name}", "occurred_at": when}
            ids[name] = ok(await client.call_tool("remember", arguments))["id"]
        asked = {"user_id": "alice", "query": "what did I buy last Saturday?", "top_k": 5}
        then = ok(await client.call_tool("recall", {**asked, "as_of": ASKED.isoformat()}))
        assert [hit["id"] for hit in then["hits"]] == [ids["then"]], "the later pan was not bought yet"
        week_on = ok(await client.call_tool("recall", {**asked, "as_of": (ASKED + timedelta(days=7)).isoformat()}))
        assert week_on["hits"][0]["id"] == ids["later"], "a week on, last Saturday is the 15th"
