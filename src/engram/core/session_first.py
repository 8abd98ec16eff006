"""Sessions first: rank conversations by all their hits, then let the best turn of each leading one into the top.

Issue #18: one session whose many turns each match a little fills the top ten, and a second evidence session, whose
one turn matches about as well, falls to rank 11-25. Here each session (a memory without one is its own) is scored
from its hits: its best hit plus `SESSION_DEPTH_SHARE` of its next ones (a session that matches in several turns is
more likely to be about the question). The best hit of each of the `heads` best sessions is then placed first, in
session order, and every other hit follows in its own order.
"""

from __future__ import annotations

from collections.abc import Sequence

from engram.core.models import MemoryHit
from engram.core.newer_first import conversation_of
from engram.core.session_spread import ahead

#: How many of a session's hits after its best count towards its score, and how much each counts.
SESSION_DEPTH = 2
SESSION_DEPTH_SHARE = 0.25


def session_scores(hits: Sequence[MemoryHit]) -> dict[str, float]:
    """Each session's score from its hits (best first): its best hit plus a share of its next `SESSION_DEPTH`."""
    seen: dict[str, list[float]] = {}
    for hit in hits:
        scores = seen.setdefault(conversation_of(hit), [])
        if len(scores) <= SESSION_DEPTH:
            scores.append(hit.score)
    return {unit: s[0] + SESSION_DEPTH_SHARE * sum(s[1:]) for unit, s in seen.items()}


def sessions_first(hits: Sequence[MemoryHit], heads: int) -> list[MemoryHit]:
    """`hits` (best first) with the best hit of each of the `heads` best-scoring sessions ahead of all others.

    A moved hit's score is raised just above the one after it, so the list stays in score order. `heads` 0 leaves
    the ranking alone.
    """
    ranked = list(hits)
    if heads <= 0 or len(ranked) < 2:
        return ranked
    scored = session_scores(ranked)
    leading = sorted(scored, key=lambda unit: -scored[unit])[:heads]
    best: dict[str, MemoryHit] = {}
    for hit in ranked:
        best.setdefault(conversation_of(hit), hit)
    return ahead([best[unit] for unit in leading], ranked)
