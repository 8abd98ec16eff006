"""A question about the user ranks the user's own turns above the assistant's replies that quote them (issue #18)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from engram.config import Settings
from engram.core.models import RememberItem, Role
from engram.core.own_turns import about_the_user
from engram.core.service import MemoryService
from engram.embeddings.hashing import HashEmbedder
from engram.runtime import open_memory
from tests.helpers import TEST_NOW, stepping_clock

#: What the user said, each in its own session, and the assistant's on-topic reply after it.
CHATS = [
    ("I bought three ferns for the plants shelf at the nursery today.",
     "Ferns love humidity: mist your plants on the shelf, keep the ferns out of direct sun, and water the plants "
     "when the soil feels dry. Plants from a nursery settle in within a few weeks."),
    ("Can you suggest a watering schedule for indoor plants?",
     "Most indoor plants like water once a week; succulent plants less, ferns and tropical plants more. "
     "Check the plants' soil with a finger before watering."),
    ("Which plants are safe for cats?",
     "Spider plants, ferns and calatheas are safe plants for cats; lilies are not. Keep toxic plants out of reach."),
    ("How much light do plants on a north window get?",
     "A north window gives plants soft, indirect light: ferns and snake plants do well there, flowering plants less."),
]  # fmt: skip


@pytest.fixture
def service(tmp_path: Path) -> Iterator[MemoryService]:
    memory = open_memory(Settings(data_dir=tmp_path / "data", enrichment=False), HashEmbedder(), clock=stepping_clock)
    yield memory
    memory.close()


def _chat(session: int, said: str, reply: str) -> list[RememberItem]:
    when = TEST_NOW - timedelta(days=30 - session)
    return [
        RememberItem(content=said, session_id=f"s{session}", role=Role.USER, occurred_at=when),
        RememberItem(content=reply, session_id=f"s{session}", role=Role.ASSISTANT, occurred_at=when),
    ]


@pytest.mark.anyio
async def test_the_users_statement_ranks_above_the_replies_about_it(service: MemoryService) -> None:
    items = [item for session, (said, reply) in enumerate(CHATS) for item in _chat(session, said, reply)]
    await service.remember_many("ann", items)
    result = await service.recall("ann", "How many plants did I buy at the nursery?", top_k=1, scope="memories")
    assert [h.memory.content for h in result.memories] == [CHATS[0][0]], [h.memory.role for h in result.memories]


@pytest.mark.anyio
async def test_a_question_about_what_the_assistant_said_keeps_its_replies(service: MemoryService) -> None:
    items = [item for session, (said, reply) in enumerate(CHATS) for item in _chat(session, said, reply)]
    await service.remember_many("ann", items)
    asked = "What did you tell me about misting the ferns on my shelf?"
    result = await service.recall("ann", asked, top_k=1, scope="memories")
    assert [h.memory.content for h in result.memories] == [CHATS[0][1]]


def test_only_first_person_questions_without_you_are_about_the_user() -> None:
    assert about_the_user("How many rare items do I have in total?")
    assert about_the_user("What was my first car?")
    assert about_the_user("My kitchen is a mess again. Any tips for keeping it clean?")
    assert not about_the_user("What did you recommend for my trip?")
    assert not about_the_user("What activities does Melanie partake in?")
    assert not about_the_user("Is it safe in India?")  # "in", "it": no first-person word
