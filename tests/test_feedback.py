"""Pseudo-relevance feedback: a turn about what the best first matches are about ranks higher, without shared words."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client

from engram.config import Settings
from engram.core.feedback import asks_two_things
from engram.embeddings.hashing import HashEmbedder
from engram.server.app import build_server
from tests.helpers import ok, stepping_clock

pytestmark = pytest.mark.anyio

#: The turns the question matches by its words: they are about dinosaurs at the museum.
KIDS = [
    "My kids like the dinosaur bones at the museum.",
    "Yes, my kids like fossils and dinosaur skeletons most.",
    "My kids like the museum for its dinosaur fossils.",
]
#: Each shares one word ("what") with the question and nothing with the subject.
OTHERS = [
    f"What a long {w} it was, with the usual traffic, the late train and a cold lunch at the desk."
    for w in ("day", "week", "month", "morning", "evening", "night", "shift", "commute", "meeting", "season")
]
#: The evidence in another session: no word of the question, several of the best matches'.
EVIDENCE = "Dinosaur bones, fossils and skeletons at the museum thrilled them."
QUESTION = "What do my kids like?"


async def _rank_of_evidence(data_dir: Path, **setting: int) -> int | None:
    """Where recall ranks EVIDENCE for QUESTION (1 is first), None when it is not in the first 20."""
    settings = Settings(data_dir=data_dir, embedding_model="hash", tools="all", **setting)
    server = build_server(settings, embedder=HashEmbedder(), clock=stepping_clock)
    async with Client(server, raise_exceptions=True) as client:
        for i, turn in enumerate(KIDS):
            ok(await client.call_tool("remember", {"user_id": "al", "content": turn, "session_id": f"s-kids-{i % 2}"}))
        for i, turn in enumerate(OTHERS):
            ok(await client.call_tool("remember", {"user_id": "al", "content": turn, "session_id": f"s-{i}"}))
        evidence = ok(
            await client.call_tool("remember", {"user_id": "al", "content": EVIDENCE, "session_id": "s-museum"})
        )
        found = ok(await client.call_tool("recall", {"user_id": "al", "query": QUESTION, "top_k": 20}))
    top = [hit["id"] for hit in found["hits"] if hit["tier"] == "long_term"]
    return top.index(evidence["id"]) + 1 if evidence["id"] in top else None


async def test_feedback_brings_a_turn_on_the_best_matches_subject_into_the_top_10(tmp_path: Path) -> None:
    rank = await _rank_of_evidence(tmp_path / "default")
    assert rank is not None and rank <= 10, f"with feedback (the default) the evidence ranks {rank}"
    off = await _rank_of_evidence(tmp_path / "off", recall_feedback_hits=0)
    assert off is None or off > 10, f"without feedback it ranks {off}: the test would not show feedback's effect"


def test_a_question_joining_two_questions_gets_no_feedback() -> None:
    # Its best matches are about one of its two subjects (tests/test_multi_session.py: with feedback, the second
    # fact fell from rank 10 to 13).
    assert asks_two_things("Where does my sister live and what is her work?")
    assert not asks_two_things("What do Melanie and her kids like?")
    assert not asks_two_things("What did Caroline research?")
