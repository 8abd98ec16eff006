"""One session may hold at most a few of the first ten hits while another session's hits score close to the best."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client

from engram.config import Settings
from engram.core.session_spread import SPREAD_WINDOW, spans_sessions, spread
from engram.embeddings.hashing import HashEmbedder
from engram.server.app import build_server
from tests.helpers import hit_ids, ok, session_hit, stepping_clock

pytestmark = pytest.mark.anyio


def test_a_crowded_session_yields_its_later_hits_to_a_close_second_session() -> None:
    crowd = [session_hit(f"a{i}", 1.0 - i * 0.01, "a") for i in range(12)]
    second = [session_hit("b0", 0.7, "b"), session_hit("b1", 0.6, "b")]
    ranked = spread([*crowd, *second], cap=3, share=0.5)
    assert hit_ids(ranked)[:5] == ["a0", "a1", "a2", "b0", "b1"]
    assert hit_ids(ranked)[5:] == [f"a{i}" for i in range(3, 12)], "the held hits follow, in their order"
    assert [h.score for h in ranked] == sorted((h.score for h in ranked), reverse=True)
    assert ranked[3].scores.fused == ranked[3].score


def test_a_session_alone_near_the_top_keeps_the_top_ten() -> None:
    crowd = [session_hit(f"a{i}", 1.0 - i * 0.01, "a") for i in range(12)]
    weak = [session_hit("b0", 0.3, "b"), session_hit("none", 0.2, None)]
    hits = [*crowd, *weak]
    assert spread(hits, cap=3, share=0.5) == hits, "other sessions below the share do not displace it"
    assert spread(hits, cap=0, share=0.5) == hits, "cap 0 is off"


def test_only_the_first_ten_are_spread() -> None:
    hits = [session_hit(f"s{i}", 1.0 - i * 0.01, f"s{i}") for i in range(SPREAD_WINDOW)]
    hits += [session_hit("a0", 0.85, "s0"), session_hit("late", 0.8, "late")]
    assert spread(hits, cap=1, share=0.5) == hits


def test_only_questions_that_count_compare_or_gather_are_spread() -> None:
    crowd = [session_hit(f"a{i}", 1.0 - i * 0.01, "a") for i in range(12)]
    hits = [*crowd, session_hit("b0", 0.7, "b")]
    assert hit_ids(spread(hits, 3, 0.5, "How many plants did I buy in total?"))[3] == "b0"
    assert spread(hits, 3, 0.5, "When did Melanie run a charity race?") == hits
    for gathering in ("Which cities has John been to?", "How much more did I pay in Hawaii compared to Tokyo?"):
        assert spans_sessions(gathering), gathering
    for single in ("What workshop did Caroline attend recently?", "Where did John explore on a road trip?"):
        assert not spans_sessions(single), single


#: One long chat about the son's piano, every turn close to the question in words.
PIANO_SESSION = [
    "My son plays the piano every evening after school.",
    "He practises piano scales for an hour, my son really loves playing.",
    "Which piano pieces does your son play?",
    "My son plays Chopin and some jazz on the piano.",
    "Does your son play piano in a band?",
    "No, my son plays piano alone, but he plays for the family.",
    "How long has your son played the piano?",
    "My son has played piano since he was six.",
    "Does he play piano at school concerts?",
    "Yes, my son plays piano at every school concert.",
    "Tell me what your son plays next.",
    "He will play a piano sonata next month.",
    "Does your son play the piano for friends?",
    "My son plays piano for his friends on Fridays.",
    "Will your son play piano in the spring recital?",
    "My son plays piano in the recital, yes.",
    "Does your son play the piano well?",
    "My son plays the piano very well.",
    "Does your son play piano on weekends?",
    "My son plays piano on weekends too.",
]
OTHER_SESSIONS = [
    "The weather was mild this week.",
    "I baked bread on Sunday.",
    "Our car needs new tyres.",
    "The garden needs weeding.",
    "I read a novel about sailors.",
    "We painted the kitchen yellow.",
]
#: The other session's evidence: at rank 15 without the cap, scoring 0.74 of the best hit.
VIOLIN = "Does he play the violin too?"


async def top_ten_has_violin(data_dir: Path, violin_turn: str = VIOLIN, **setting: int) -> bool:
    """Whether recall's first ten hits for a gathering question hold `violin_turn`, the second session's evidence."""
    settings = Settings(data_dir=data_dir, embedding_model="hash", tools="all", **setting)
    server = build_server(settings, embedder=HashEmbedder(), clock=stepping_clock)
    async with Client(server, raise_exceptions=True) as client:
        for turn in PIANO_SESSION:
            ok(await client.call_tool("remember", {"user_id": "al", "content": turn, "session_id": "s-piano"}))
        for i, turn in enumerate(OTHER_SESSIONS):
            ok(await client.call_tool("remember", {"user_id": "al", "content": turn, "session_id": f"s-{i}"}))
        said = {"user_id": "al", "content": violin_turn, "session_id": "s-violin"}
        violin = ok(await client.call_tool("remember", said))
        found = ok(
            await client.call_tool(
                "recall", {"user_id": "al", "query": "Which instruments does my son play?", "top_k": 10}
            )
        )
    top = [hit["id"] for hit in found["hits"] if hit["tier"] == "long_term"]
    assert len(top) == 10
    return str(violin["id"]) in top


async def test_a_two_session_question_finds_the_second_sessions_evidence_in_the_top_10(tmp_path: Path) -> None:
    assert await top_ten_has_violin(tmp_path / "data"), "the second session's evidence is among the first ten"
