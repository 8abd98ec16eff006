"""Evidence from several sessions in the top of recall: one session may hold at most a few of the first ten hits.

Measured on LongMemEval (issue #18): one well-matching session filled the top ten while a second evidence session,
scoring almost as well, fell to rank 11-25. Here the first `SPREAD_WINDOW` hits are chosen in score order, but a
session that already holds `cap` of them yields its further hits to other sessions' hits, as long as those score
at least `share` of the best hit: a question answered by one session keeps that session's hits once the other
sessions' matches are weak. (The older `session_decay` discounted every session's later hits unconditionally, and
lowered LoCoMo, whose evidence often sits in one session.)
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from engram.core.models import MemoryHit
from engram.core.newer_first import SCORE_STEP, conversation_of

#: How many of the first hits the cap applies to: the ten an assistant reads first (and the metrics score).
SPREAD_WINDOW = 10
#: Questions whose answer spans sessions: counts and sums ("how many", "how much more ... than"), comparisons, and
#: gatherings ("which cities has John been to?", "what books ..."). Other questions keep their ranking: on LoCoMo,
#: whose single-hop and temporal questions are answered by one session, the cap on every question lowered turn
#: R@10 (README, "Long histories").
_SPANS_SESSIONS = re.compile(
    r"\bhow\s+(?:many|much)\b|\b(?:in\s+total|altogether|combined|both|compared?)\b"
    r"|\b(?:what|which)\s+(?:\w+\s+)?(?:activities|events|books|things|kinds|types|ways|places|hobbies|items"
    r"|instruments|pets|sports|games|countries|cities|artists|bands|songs|movies|shows|locations|names)\b"
    r"|\bwhere\s+(?:has|have)\b|\b(?:what|which)\s+\w+\s+(?:has|have)\b",
    re.IGNORECASE,
)


def spans_sessions(question: str) -> bool:
    """Whether `question` counts, sums, compares or gathers things, whose evidence is often in several sessions."""
    return _SPANS_SESSIONS.search(question) is not None


def spread(hits: Sequence[MemoryHit], cap: int, share: float, question: str | None = None) -> list[MemoryHit]:
    """`hits` (best first) with at most `cap` hits of one session among the first SPREAD_WINDOW, while others are close.

    A hit past its session's cap waits while hits of other sessions scoring at least `share` of the best hit take
    the free places; below that, the waiting hits come back in their order. `cap` 0 leaves the ranking alone. A hit
    moved up has its score raised just above the one after it, so the list stays in score order. With `question`,
    only a question that `spans_sessions` is spread.
    """
    ranked = list(hits)
    if cap <= 0 or len(ranked) < 2 or ranked[0].score <= 0:
        return ranked
    if question is not None and not spans_sessions(question):
        return ranked
    floor = share * ranked[0].score
    chosen: list[MemoryHit] = []
    held = 0
    counts: Counter[str] = Counter()
    for hit in ranked:
        if len(chosen) == SPREAD_WINDOW or hit.score < floor:
            break
        unit = conversation_of(hit)
        if counts[unit] >= cap:
            held += 1
            continue
        counts[unit] += 1
        chosen.append(hit)
    if not held:
        return ranked
    return ahead(chosen, ranked)


def ahead(first: Sequence[MemoryHit], ranked: Sequence[MemoryHit]) -> list[MemoryHit]:
    """`first`, then the rest of `ranked` in its order; a moved hit's score is raised just above the one after it."""
    taken = {id(hit) for hit in first}
    order = [*first, *(hit for hit in ranked if id(hit) not in taken)]
    # From the end, so that each raised score already sits above everything after it.
    for i in range(len(order) - 2, -1, -1):
        after = order[i + 1].score
        if order[i].score < after:
            order[i] = order[i].rescored(round(after + SCORE_STEP, 6))
    return order
