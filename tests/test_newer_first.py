"""Knowledge updates in recall: the newer of two matching sessions (or facts) ranks first, without any supersedes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engram.config import Settings
from engram.core.models import RememberItem, Role
from engram.core.newer_first import SAME_SUBJECT_SHARE, asks_about_change, newer_first
from engram.core.service import MemoryService
from engram.embeddings.hashing import HashEmbedder
from engram.runtime import open_memory
from tests.helpers import hit_ids, session_hit, stepping_clock

FEBRUARY = datetime(2023, 2, 22, tzinfo=UTC)
OCTOBER = datetime(2023, 10, 10, tzinfo=UTC)
NOW = "How many bikes do I currently own?"


def test_the_newer_sessions_best_hits_move_ahead_of_the_older_sessions() -> None:
    hits = [
        session_hit("old-1", 1.3, "feb", FEBRUARY),
        session_hit("old-2", 1.2, "feb", FEBRUARY),
        session_hit("new-1", 0.8, "oct", OCTOBER),
        session_hit("old-3", 0.75, "feb", FEBRUARY),
        session_hit("new-2", 0.7, "oct", OCTOBER),
        session_hit("new-3", 0.6, "oct", OCTOBER),
    ]
    ranked = newer_first(hits, moved=2, question=NOW)
    assert hit_ids(ranked) == ["new-1", "new-2", "old-1", "old-2", "old-3", "new-3"]
    # Scores follow the new order, and the raise is shown as the reason for it.
    assert [h.score for h in ranked] == sorted((h.score for h in ranked), reverse=True)
    assert ranked[0].scores.newer_lift > 0 and ranked[0].scores.fused == ranked[0].score
    assert ranked[2].scores.newer_lift == 0.0 and ranked[2] == hits[0]


def test_a_newer_session_already_first_keeps_its_best_hits_above_the_older_ones() -> None:
    hits = [
        session_hit("new-1", 1.36, "jun17", OCTOBER),
        session_hit("old-1", 1.13, "jun11", FEBRUARY),
        session_hit("new-2", 0.86, "jun17", OCTOBER),
        session_hit("new-3", 0.72, "jun17", OCTOBER),
    ]
    assert hit_ids(newer_first(hits, moved=3, question=NOW)) == ["new-1", "new-2", "new-3", "old-1"]


def test_a_third_sessions_hits_keep_their_order_below_the_moved_ones() -> None:
    hits = [
        session_hit("old-1", 1.3, "feb", FEBRUARY),
        session_hit("new-1", 1.2, "oct", OCTOBER),
        session_hit("mid", 1.1, "mar", datetime(2023, 3, 1, tzinfo=UTC)),
        session_hit("old-2", 1.0, "feb", FEBRUARY),
        session_hit("new-2", 0.9, "oct", OCTOBER),
    ]
    assert hit_ids(newer_first(hits, moved=5, question=NOW)) == ["new-1", "new-2", "old-1", "mid", "old-2"]


def test_order_stays_when_the_runner_up_matches_too_weakly_or_the_rule_is_off() -> None:
    weak = [
        session_hit("old-1", 1.0, "feb", FEBRUARY),
        session_hit("new-1", SAME_SUBJECT_SHARE * 0.99, "oct", OCTOBER),
    ]
    assert hit_ids(newer_first(weak, moved=5, question=NOW)) == ["old-1", "new-1"]
    close = [session_hit("old-1", 1.0, "feb", FEBRUARY), session_hit("new-1", 0.9, "oct", OCTOBER)]
    assert hit_ids(newer_first(close, moved=0, question=NOW)) == ["old-1", "new-1"]
    same_day = [session_hit("a", 1.0, "s1", FEBRUARY), session_hit("b", 0.9, "s2", FEBRUARY)]
    assert hit_ids(newer_first(same_day, moved=5, question=NOW)) == ["a", "b"]


@pytest.mark.parametrize(
    ("question", "changing"),
    [
        ("How many titles are currently on my to-watch list?", True),
        ("How many followers do I have on Instagram now?", True),
        ("What was my previous personal best time for the 5K?", True),
        ("How many hours have I spent on my sculpture?", True),
        ("Where did I go on my most recent family trip?", True),
        ("When did Caroline go to the LGBTQ support group?", False),
        ("What workshop did Caroline attend recently?", False),
        ("Is the knowledge still valid?", False),
    ],
)
def test_only_questions_about_something_that_changes_reorder(question: str, changing: bool) -> None:
    assert asks_about_change(question) is changing
    hits = [session_hit("old-1", 1.0, "feb", FEBRUARY), session_hit("new-1", 0.9, "oct", OCTOBER)]
    assert hit_ids(newer_first(hits, moved=5, question=question)) == (
        ["new-1", "old-1"] if changing else ["old-1", "new-1"]
    )


def test_sessionless_facts_are_versions_by_their_validity() -> None:
    paris = session_hit("paris", 1.0, None, FEBRUARY)
    berlin = session_hit("berlin", 0.7, None, OCTOBER)
    assert hit_ids(newer_first([paris, berlin], moved=5, question=NOW)) == ["berlin", "paris"]


@pytest.fixture
def hashed(tmp_path: Path) -> Iterator[MemoryService]:
    service = open_memory(Settings(data_dir=tmp_path / "data", enrichment=False), HashEmbedder(), clock=stepping_clock)
    yield service
    service.close()


def _turn(text: str, session: str, when: datetime) -> RememberItem:
    return RememberItem(content=text, session_id=session, role=Role.USER, occurred_at=when)


@pytest.mark.anyio
async def test_recall_ranks_the_later_conversation_about_a_fact_first(hashed: MemoryService) -> None:
    old = "I own three bikes: a road bike, a mountain bike and a commuter"
    new = "Since I bought a hybrid I own four bikes"
    await hashed.remember_many(
        "ann",
        [
            _turn(old, "s-feb", FEBRUARY),
            _turn("Which wheels suit my road bike for long rides?", "s-feb", FEBRUARY),
            _turn("Can you recommend a good pasta recipe?", "s-mar", datetime(2023, 3, 1, tzinfo=UTC)),
            _turn(new, "s-oct", OCTOBER),
            _turn("The trip starts in the mountains", "s-oct", OCTOBER),
        ],
    )
    asked = datetime(2023, 10, 27, tzinfo=UTC)
    result = await hashed.recall("ann", "How many bikes do I own?", top_k=5, scope="memories", as_of=asked)
    contents = [hit.memory.content for hit in result.memories]
    assert contents.index(new) < contents.index(old)
    assert result.memories[0].memory.session_id == "s-oct"
