"""Questions whose answer spans sessions: one talkative session must not fill the top 10 and push a fact out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engram.config import Settings
from engram.core.models import Kind, Memory
from engram.core.ports import Candidate
from engram.core.ranking import RankingPolicy, fuse
from engram.embeddings.hashing import HashEmbedder
from engram.runtime import open_memory
from tests.helpers import TEST_NOW, stepping_clock

pytestmark = pytest.mark.anyio

#: A long chat about the sister's move, every turn close to the question in words.
CHATTY_SESSION = [
    "My sister is thinking about where to live next year.",
    "She says the work there would be hard to find.",
    "Where would your sister like to live, then?",
    "She wants to live near the sea, and work from home if she can.",
    "What does your sister think about the cost of living?",
    "She thinks living by the sea costs a lot, work or no work.",
    "Does your sister have friends where she wants to live?",
    "A few, and some of them work in the same field as her.",
    "Would she live with them at first?",
    "Maybe, she does not know yet where she will live or work.",
    "Tell me when your sister decides where to live.",
    "I will, she is still weighing work against where to live.",
]
FACTS = {
    "home": ("s-home", "Where does my sister live now? In Lisbon."),
    "job": ("s-job", "My sister's work is marine biology."),
}


async def test_a_two_fact_question_finds_both_facts_in_the_top_10(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash", tools="all")
    memory = open_memory(settings, HashEmbedder(), clock=stepping_clock)
    try:
        ids = {}
        for name, (session, content) in FACTS.items():
            ids[name] = (await memory.remember("alice", content, session_id=session)).id
        for turn in CHATTY_SESSION:
            await memory.remember("alice", turn, session_id="s-chat")
        found = await memory.recall("alice", "Where does my sister live and what is her work?", top_k=10)
        top = [hit.memory.id for hit in found.memories]
        assert ids["home"] in top and ids["job"] in top, [h.memory.content for h in found.memories]
        sessions = [hit.memory.session_id for hit in found.memories]
        assert sessions.count("s-chat") < 10, "one session does not fill the top 10"
    finally:
        memory.close()


def _turn(memory_id: str, session: str, index: int, score: float) -> Candidate:
    memory = Memory(
        id=memory_id, user_id="u", session_id=session, turn_index=index, kind=Kind.TURN, content=memory_id,
        created_at=TEST_NOW,
    )  # fmt: skip
    return Candidate(memory=memory, score=score, vector=np.array([1.0, 0.0], dtype=np.float32))


def test_neighbours_lift_a_turn_at_most_to_the_best_of_them() -> None:
    """A pair of good turns in one session must not both outrank a better turn elsewhere by lending to each other."""
    evidence = _turn("evidence", "s-a", 7, 1.0)
    pair = [_turn("x", "s-b", 3, 0.9), _turn("y", "s-b", 4, 0.85), _turn("far", "s-c", 0, 0.0)]
    ranked = fuse([evidence, *pair], [], np.array([1.0, 0.0]), RankingPolicy(fusion="vector"), TEST_NOW)
    assert [h.memory.id for h in ranked][:3] == ["evidence", "x", "y"]
    lifted = next(h for h in ranked if h.memory.id == "y")
    assert lifted.score <= 0.9, "y is lifted towards its neighbour, never past it"
    assert lifted.scores.neighbor_boost > 0
