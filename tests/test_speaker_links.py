"""What a named person said: a gathering question about someone lifts that person's own turns above replies to them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engram.config import Settings
from engram.core.models import HitScores, Memory, MemoryHit, RememberItem, Role
from engram.core.service import MemoryService
from engram.core.speaker_links import SPEAKER_LIFT, lift_named_speakers, named_speakers
from engram.embeddings.hashing import HashEmbedder
from engram.runtime import open_memory
from tests.helpers import stepping_clock

DAY = datetime(2023, 5, 8, tzinfo=UTC)


def _hit(memory_id: str, score: float, speaker: Any) -> MemoryHit:
    metadata = {} if speaker is None else {"speaker": speaker}
    memory = Memory(id=memory_id, user_id="u", content=memory_id, metadata=metadata, created_at=DAY)
    scores = HitScores(
        similarity=0.5, keyword=None, vector_rank=None, keyword_rank=None, neighbor_boost=0.0, fused=score
    )
    return MemoryHit(score=score, scores=scores, memory=memory)


def test_a_gathering_question_lifts_the_named_speakers_turns() -> None:
    hits = [_hit("reply", 1.0, "Caroline"), _hit("said", 0.8, "Melanie"), _hit("plain", 0.9, None)]
    ranked = lift_named_speakers(hits, "What activities does Melanie partake in?")
    assert [h.memory.id for h in ranked] == ["said", "reply", "plain"]
    assert ranked[0].score == pytest.approx(0.8 + SPEAKER_LIFT) and ranked[0].scores.graph_boost == SPEAKER_LIFT
    assert ranked[1] == hits[0]


@pytest.mark.parametrize(
    "question",
    [
        "What did Melanie paint recently?",  # one thing: the wording decides
        "What did Caroline realize after the race?",  # adversarial questions name the wrong person on purpose
        "What activities does Jordan partake in?",  # no such speaker
        "How many trips did the user take?",  # a role, not a person
    ],
)
def test_other_questions_and_names_leave_the_order(question: str) -> None:
    hits = [_hit("a", 1.0, "Melanie"), _hit("b", 0.8, "Caroline"), _hit("c", 0.7, "user"), _hit("d", 0.6, 3)]
    assert named_speakers(question, hits) == set()
    assert lift_named_speakers(hits, question) == hits


def test_names_match_as_whole_words_in_any_case() -> None:
    hits = [_hit("a", 1.0, "Mel"), _hit("b", 0.8, "Ann Lee")]
    assert named_speakers("Where has MEL camped?", hits) == {"mel"}
    assert named_speakers("Where has Melanie camped?", hits) == set()
    assert named_speakers("How many books has ann  lee read?", hits) == {"ann lee"}
    assert lift_named_speakers(hits, "Where has Mel camped?", lift=0.0) == hits


@pytest.fixture
def hashed(tmp_path: Path) -> Iterator[MemoryService]:
    service = open_memory(Settings(data_dir=tmp_path / "data", enrichment=False), HashEmbedder(), clock=stepping_clock)
    yield service
    service.close()


@pytest.mark.anyio
async def test_recall_brings_what_a_person_said_above_what_was_said_to_them(hashed: MemoryService) -> None:
    def turn(text: str, speaker: str, session: str) -> RememberItem:
        return RememberItem(
            content=text, session_id=session, role=Role.USER, metadata={"speaker": speaker}, occurred_at=DAY
        )

    said = "Camping and pottery are my favourite activities"
    await hashed.remember_many(
        "ann",
        [
            turn(said, "Melanie", "s1"),
            turn("Melanie, what activities?", "Caroline", "s2"),
            *(turn(f"The bus was late again on day {i}", "Caroline", f"s{i}") for i in range(3, 7)),
            # A weak keyword match, so the statement's own keyword score is not the bottom of that list.
            turn("It rained all week and the bus was late, so the long trip to see Melanie waits", "Caroline", "s7"),
        ],
    )
    result = await hashed.recall("ann", "What activities does Melanie partake in?", top_k=2, scope="memories")
    ranked = [(h.memory.content, h.scores.graph_boost) for h in result.memories]
    assert ranked[0] == (said, SPEAKER_LIFT), ranked
