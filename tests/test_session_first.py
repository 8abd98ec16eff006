"""Sessions first: for a gathering question, the best turn of each of the best sessions comes before the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from engram.core.session_first import session_scores, sessions_first
from tests.helpers import hit_ids, session_hit
from tests.test_session_spread import top_ten_has_violin

pytestmark = pytest.mark.anyio


def test_the_best_hit_of_each_leading_session_comes_first() -> None:
    crowd = [session_hit(f"a{i}", 1.0 - i * 0.01, "a") for i in range(12)]
    others = [session_hit("b0", 0.3, "b"), session_hit("c0", 0.2, "c"), session_hit("d0", 0.1, "d")]
    ranked = sessions_first([*crowd, *others], heads=3)
    assert hit_ids(ranked)[:3] == ["a0", "b0", "c0"], "one hit each of the three best sessions, in session order"
    assert hit_ids(ranked)[3:] == [*(f"a{i}" for i in range(1, 12)), "d0"], "the rest follow in their order"
    assert [h.score for h in ranked] == sorted((h.score for h in ranked), reverse=True)
    assert ranked[1].scores.fused == ranked[1].score


def test_a_session_matching_in_several_turns_outranks_one_matching_once() -> None:
    hits = [
        session_hit("once", 0.8, "x"),
        session_hit("y0", 0.75, "y"),
        session_hit("y1", 0.7, "y"),
        session_hit("y2", 0.7, "y"),
    ]
    scores = session_scores(hits)
    assert scores["session:y"] > scores["session:x"]
    assert hit_ids(sessions_first(hits, heads=1))[0] == "y0"


def test_heads_zero_leaves_the_ranking_alone() -> None:
    hits = [session_hit("a0", 1.0, "a"), session_hit("a1", 0.9, "a"), session_hit("b0", 0.1, "b")]
    assert sessions_first(hits, heads=0) == hits


#: The second session's evidence: it shares one word with the question, scoring well under the session cap's share
#: of the best hit (so the cap leaves it at rank 24), but its session is the second best.
VIOLIN = "He also plays the violin."


async def test_a_gathering_question_finds_a_weak_second_sessions_evidence_in_the_top_10(tmp_path: Path) -> None:
    assert await top_ten_has_violin(tmp_path / "default", VIOLIN), "the second session's evidence is in the top ten"
    assert await top_ten_has_violin(tmp_path / "no-feedback", VIOLIN, recall_feedback_hits=0), "sessions first alone"
    without = await top_ten_has_violin(tmp_path / "no-heads", VIOLIN, recall_session_heads=0)
    assert not without, "the test shows the change"
