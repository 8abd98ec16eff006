"""Behaviour that needs real semantics: the bundled all-MiniLM-L6-v2 model, loaded offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engram.config import Settings
from engram.core.filters import MemoryFilters
from engram.core.models import Kind, Role
from engram.core.ports import Embedder
from engram.runtime import open_memory
from tests.helpers import stepping_clock

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def test_vectors_are_normalised_and_paraphrases_are_close(real_embedder: Embedder) -> None:
    vectors = real_embedder.embed(["I can't eat peanuts", "She has a nut allergy", "The train leaves at noon"])
    assert vectors.shape == (3, 384) and real_embedder.dimensions == 384
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2


async def test_recall_finds_a_paraphrase_as_the_top_hit(tmp_path: Path, real_embedder: Embedder) -> None:
    service = open_memory(Settings(data_dir=tmp_path), real_embedder, clock=stepping_clock)
    try:
        await service.remember("alice", "My flight to Lisbon leaves on March 3rd.")
        await service.remember("alice", "I am allergic to shellfish.")
        await service.remember("alice", "My brother Tom is a carpenter in Leeds.")
        await service.remember("bob", "I am allergic to pollen and cats.")
        result = await service.recall("alice", "what seafood should she avoid?")
        assert result.memories[0].memory.content == "I am allergic to shellfish."
        assert {h.memory.user_id for h in result.memories} == {"alice"}
        travel = await service.recall("alice", "when is the trip to Portugal?")
        assert travel.memories[0].memory.content == "My flight to Lisbon leaves on March 3rd."
    finally:
        service.close()


async def test_extractive_summary_covers_the_main_topics(tmp_path: Path, real_embedder: Embedder) -> None:
    service = open_memory(Settings(data_dir=tmp_path, summary_max_chars=400), real_embedder, clock=stepping_clock)
    turns = [
        (Role.USER, "Hi, my order 4471 arrived with a cracked screen."),
        (Role.ASSISTANT, "I'm sorry to hear that. Could you send a photo of the damage?"),
        (Role.USER, "Sure, I uploaded the photo just now."),
        (Role.ASSISTANT, "Thanks. I have started a replacement for the cracked screen on order 4471."),
        (Role.USER, "Great. Also, please change my delivery address to 12 Rose Street."),
        (Role.ASSISTANT, "Done, your delivery address is now 12 Rose Street."),
        (Role.USER, "How long will the replacement take?"),
        (Role.ASSISTANT, "The replacement should arrive within five working days."),
        (Role.USER, "OK thanks."),
        (Role.ASSISTANT, "You're welcome."),
    ]
    try:
        for role, content in turns:
            await service.remember("carol", content, session_id="support-1", role=role)
        result = await service.summarize_session("carol", "support-1", keep_recent=2)
        assert result.method == "extractive" and result.summarized_turns == 8
        assert len(result.summary) <= 400
        summary = result.summary.lower()
        assert "screen" in summary and "rose street" in summary
        assert "ok thanks" not in summary  # the kept, recent turns are not part of the summary
        # Filler sentences ("Thanks.", "Great.") are never picked.
        assert all(len(line.split(": ", 1)[1].split()) >= 4 for line in result.summary.splitlines())
        recalled = await service.recall(
            "carol", "where should the parcel be delivered?", filters=MemoryFilters(kind=Kind.SUMMARY)
        )
        assert [h.memory.id for h in recalled.memories] == [result.summary_id]
    finally:
        service.close()
