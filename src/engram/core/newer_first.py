"""Knowledge updates in recall: of the two conversations that best match a question, the newer one's best hits first.

A user who said "I have three bikes" in February and "I'll have four bikes with me" in October left two versions of
one fact, and no caller superseded the first. Both conversations match "how many bikes do I own?" about as well,
and wording decides which ranks first. The later conversation is the better guess at what holds now, so recall
moves its best hits ahead of the other's, when the question asks about the present or the past state of something
("currently", "now", "previous", "how many ... have I"). Measured on the LongMemEval dev set's knowledge-update
questions (README, "Facts that change"): pairwise similarity could not tell versions of a fact from related facts,
but the two best-matching conversations, taken together with their dates, could. Unconditionally, it cost LoCoMo
turn R@5 0.732 -> 0.536 (conversations 1-3), whose questions mostly ask about one past event.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

from engram.core.models import MemoryHit

#: The runner-up conversation counts as a version of the same fact only when its best hit scores at least this
#: share of the best one's; below it, the question is about one conversation and the order stays.
SAME_SUBJECT_SHARE = 0.4
#: Words of a question about a fact that changes: its current value, or the one before it. "Recently" and "still"
#: are left out: on LoCoMo they ask about one past event ("What workshop did Caroline attend recently?").
_CHANGING = re.compile(
    r"\b(currently|now|these days|latest|most recent(?:ly)?|previous(?:ly)?|anymore|so far"
    r"|have (?:i|we)|do (?:i|we) (?:have|own))\b",
    re.IGNORECASE,
)
#: The gap kept between consecutive moved hits, so scores stay in the order of the list.
SCORE_STEP = 1e-6


def conversation_of(hit: MemoryHit) -> str:
    """The conversation a hit belongs to: its session, or the memory itself when it has none."""
    session = hit.memory.session_id
    return f"session:{session}" if session is not None else f"memory:{hit.memory.id}"


def _since(hit: MemoryHit) -> datetime:
    memory = hit.memory
    return memory.valid_from or memory.created_at


def asks_about_change(question: str) -> bool:
    """Whether `question` asks for the current (or the previous) value of something that changes."""
    return _CHANGING.search(question) is not None


def newer_first(hits: Sequence[MemoryHit], moved: int, question: str) -> list[MemoryHit]:
    """`hits` (best first) with the newer of the two best-matching sessions' top `moved` hits ahead of the other's.

    Only for a question about something that changes (`asks_about_change`), and only when both sessions (or
    sessionless memories) match about as well (SAME_SUBJECT_SHARE) and have different dates. A moved hit's score
    is raised to keep the list in score order; the raise is reported as `scores.newer_lift`. `moved` 0 leaves the
    ranking alone.
    """
    ranked = list(hits)
    if moved <= 0 or len(ranked) < 2 or not asks_about_change(question):
        return ranked
    best: dict[str, MemoryHit] = {}
    for hit in ranked:
        best.setdefault(conversation_of(hit), hit)
        if len(best) == 2:
            break
    if len(best) < 2:
        return ranked
    leader, runner_up = best.values()
    if leader.score <= 0 or runner_up.score < SAME_SUBJECT_SHARE * leader.score:
        return ranked
    newer = max((leader, runner_up), key=_since)
    if _since(leader) == _since(runner_up):
        return ranked
    unit = conversation_of(newer)
    lifted = [h for h in ranked if conversation_of(h) == unit][:moved]
    taken = {h.memory.id for h in lifted}
    rest = [h for h in ranked if h.memory.id not in taken]
    # The newer one's best go where the leader stood (nothing of either session ranked above it), in their order.
    at = next(i for i, h in enumerate(ranked) if h is leader)
    floor = rest[at].score if at < len(rest) else -1.0
    raised = [_lifted(h, floor + SCORE_STEP * (len(lifted) - i)) for i, h in enumerate(lifted)]
    return [*rest[:at], *raised, *rest[at:]]


def _lifted(hit: MemoryHit, score: float) -> MemoryHit:
    """`hit` with its score raised to `score` (never lowered), the raise recorded in its scores."""
    lift = max(0.0, score - hit.score)
    if not lift:
        return hit
    return hit.rescored(round(hit.score + lift, 6), newer_lift=round(lift, 6))
