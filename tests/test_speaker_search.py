"""Entity-centred retrieval: a gathering question about a named person finds that person's turns sharing no word."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from engram.config import Settings
from engram.core.models import HitScores, Memory, MemoryHit, RememberItem, Role
from engram.core.ports import Embedder
from engram.core.speaker_search import with_their_turns, without_names
from engram.runtime import open_memory
from tests.helpers import stepping_clock

DAY = datetime(2023, 5, 8, tzinfo=UTC)
#: What Melanie does, in words the question does not use.
HER_ACTIVITIES = [
    "I'm off to go swimming with the kids",
    "Pottery class this morning was so relaxing",
    "We went camping by the lake over the weekend",
]
#: Melanie's other turns: her name is in their index text too; one says she has activities without naming one.
HER_OTHER_TURNS = [
    "My car needs new tyres before winter",
    "The rent on our flat went up again",
    "I partake in so many activities these days!",
]
#: What Caroline says to Melanie about activities: close to the question in words and meaning, but not the answer.
TOPICS = ["art", "music", "school", "weekend", "summer", "team", "club", "family", "outdoor", "group", "city", "winter"]


def _hit(memory_id: str, score: float) -> MemoryHit:
    memory = Memory(id=memory_id, user_id="u", content=memory_id, created_at=DAY)
    scores = HitScores(
        similarity=0.5, keyword=None, vector_rank=None, keyword_rank=None, neighbor_boost=0.0, fused=score
    )
    return MemoryHit(score=score, scores=scores, memory=memory)


def test_the_name_is_taken_out_of_the_question() -> None:
    assert without_names("What activities does Melanie partake in?", {"melanie"}) == "What activities does partake in?"
    assert without_names("Where has Ann Lee's family camped?", {"ann lee"}) == "Where has family camped?"
    assert without_names("How many books has Melanies read?", {"mel"}) == "How many books has Melanies read?"


def test_their_turns_take_the_last_places_of_the_top_ten() -> None:
    hits = [_hit(f"h{i}", 2.0 - i / 100) for i in range(20)]
    ranked = with_their_turns(hits, ["h15", "h3", "h12", "h18"], slots=3)
    assert [h.memory.id for h in ranked[:10]] == ["h0", "h1", "h2", "h3", "h4", "h5", "h6", "h15", "h12", "h18"]
    assert [h.memory.id for h in ranked[10:]] == ["h7", "h8", "h9", "h10", "h11", "h13", "h14", "h16", "h17", "h19"]
    assert all(a.score > b.score for a, b in zip(ranked, ranked[1:], strict=False))
    assert with_their_turns(hits, ["h15"], slots=0) == hits
    assert with_their_turns(hits, ["h2", "h5"], slots=3) == hits


@pytest.mark.anyio
@pytest.mark.slow
async def test_a_gathering_question_finds_what_the_person_did_in_other_words(
    tmp_path: Path, real_embedder: Embedder
) -> None:
    # Ten candidates from each search stand for LoCoMo's fifty among its hundreds of turns per speaker.
    settings = Settings(data_dir=tmp_path / "data", enrichment=False, recall_candidates=10)
    service = open_memory(settings, real_embedder, clock=stepping_clock)

    def turn(text: str, speaker: str, session: str) -> RememberItem:
        return RememberItem(
            content=text, session_id=session, role=Role.USER, metadata={"speaker": speaker}, occurred_at=DAY
        )

    try:
        chatter = [
            turn(f"Melanie, the {topic} activities you partake in sound fun!", "Caroline", f"c-{topic}")
            for topic in TOPICS
        ]
        hers = [turn(text, "Melanie", f"m{i}") for i, text in enumerate(HER_ACTIVITIES + HER_OTHER_TURNS)]
        await service.remember_many("ann", [*hers, *chatter])
        result = await service.recall("ann", "What activities does Melanie partake in?", top_k=10, scope="memories")
        top = [h.memory.content for h in result.memories]
        assert set(HER_ACTIVITIES) <= set(top), [(h.memory.content[:30], h.score) for h in result.memories]
    finally:
        service.close()


def test_with_closeness_a_place_goes_to_the_closer_of_the_two() -> None:
    hits = [_hit(f"h{i}", 2.0 - i / 100) for i in range(20)]
    closeness = {"h7": 0.9, "h8": 0.1, "h9": 0.2, "h15": 0.5, "h12": 0.3, "h18": 0.05}
    ranked = with_their_turns(hits, ["h15", "h12", "h18"], slots=3, closeness=closeness)
    assert [h.memory.id for h in ranked[7:10]] == ["h7", "h15", "h12"]
    assert [h.memory.id for h in ranked[10:13]] == ["h8", "h9", "h10"]
