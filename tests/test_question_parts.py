"""A question naming two things side by side finds the turns about each, not only about the one it matches best."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from engram.config import Settings
from engram.core.models import RememberItem, Role
from engram.core.question_parts import question_parts
from engram.core.service import MemoryService
from engram.embeddings.hashing import HashEmbedder
from engram.runtime import open_memory
from tests.helpers import TEST_NOW, stepping_clock

#: Many turns about one show, each sharing the question's words; one turn about the other.
ABOUT_ONE = [
    "I started watching Game of Thrones first thing on Sunday, which show is better than Game of Thrones?",
    "Game of Thrones is the show I keep watching; did I start the first season of Game of Thrones too fast?",
    "Which Game of Thrones season should I start watching first after the show's first season?",
    "I'm watching Game of Thrones again, the first show I started watching on HBO.",
    "Is the Game of Thrones show worth watching first, before the books? I started it last week.",
]
ABOUT_THE_OTHER = (
    "I binged the third season of The Crown on Netflix in two weeks, then made soup, fixed the bike, phoned my "
    "aunt about her garden, booked a dentist visit and sorted the recycling before the weekend was over."
)
#: Turns about anything else, so that the show's words are rare in the history, as in a real one.
FILLER = [f"Day {i}: I cooked lentils, walked to the market and paid the electricity bill." for i in range(20)]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


async def _top_three(data_dir: Path, part_heads: int) -> list[str]:
    """The first three memories recalled for a choice between two shows, with `part_heads` as configured."""
    settings = Settings(data_dir=data_dir, enrichment=False, recall_part_heads=part_heads)
    service: MemoryService = open_memory(settings, HashEmbedder(), clock=stepping_clock)
    try:
        if not (await service.list_memories("ann", limit=1)).memories:
            texts = [*ABOUT_ONE, ABOUT_THE_OTHER, *FILLER]
            await service.remember_many(
                "ann",
                [
                    RememberItem(
                        content=text, session_id=f"s{i}", role=Role.USER, occurred_at=TEST_NOW - timedelta(days=i)
                    )
                    for i, text in enumerate(texts)
                ],
            )
        asked = "Which show did I start watching first, 'The Crown' or 'Game of Thrones'?"
        result = await service.recall("ann", asked, top_k=3, scope="memories")
        return [h.memory.content for h in result.memories]
    finally:
        service.close()


@pytest.mark.anyio
async def test_each_thing_a_choice_names_has_a_turn_at_the_top_when_parts_are_on(data_dir: Path) -> None:
    # Off by default (it moved no evidence into the top ten on LoCoMo or LongMemEval), so the whole question's words,
    # all about one show, fill the top three; on, the other show's turn takes a place.
    assert ABOUT_THE_OTHER not in await _top_three(data_dir, part_heads=0)
    assert ABOUT_THE_OTHER in await _top_three(data_dir, part_heads=2)


def test_parts_are_quoted_titles_or_the_options_of_a_choice() -> None:
    assert question_parts("Which did I finish first, 'The Hate U Give' or 'The Nightingale'?") == [
        "The Hate U Give",
        "The Nightingale",
    ]
    assert question_parts("Which happened first, my cultural festival or the start of my Spanish classes?") == [
        "my cultural festival",
        "the start of my Spanish classes",
    ]
    assert question_parts("Did they meet in Boston? Answer in yes, yes or no?") == []
    assert question_parts("What did my best friend's dog eat, and when?") == []
    assert question_parts("Have I read 'Dune'?") == []
