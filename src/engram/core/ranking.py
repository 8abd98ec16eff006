"""Hybrid ranking: fuse semantic and keyword candidates, then apply the optional scoring signals."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np

from engram.core.models import HitScores, Memory, MemoryHit
from engram.core.ports import Candidate, Vectors
from engram.core.temporal import TimeReference

Fusion = Literal["convex", "rrf", "vector", "keyword"]


@dataclass(frozen=True)
class RankingPolicy:
    """How recall ranks; defaults are the measured best on LoCoMo (see README, 'Retrieval quality')."""

    fusion: Fusion = "convex"
    #: Convex fusion: weight of the min-max-normalised BM25 score (the rest goes to cosine similarity).
    keyword_weight: float = 0.6
    #: Reciprocal-rank fusion constant.
    rrf_k: int = 60
    #: Share of the best neighbouring turn's score (same session, adjacent position) added to a turn's score.
    neighbor_weight: float = 0.4
    #: 1.0: that loan lifts a turn at most to just below the neighbour (0.0: uncapped, as before).
    neighbor_cap: float = 1.0
    #: Recency: up to this much is added to a brand-new memory, halving every `recency_half_life_days`.
    recency_weight: float = 0.0
    recency_half_life_days: float = 30.0
    #: Importance: this much times the memory's importance (0..1) is added.
    importance_weight: float = 0.0
    #: How many candidates each retrieval method contributes before fusion.
    candidates: int = 50
    #: Added to a memory that occurred in the period a question names ("last Saturday", "in May"): more than the
    #: rest of the fused score can reach, so that the period's matches rank first, in their own order.
    period_weight: float = 1.5
    #: Up to this much is added by date order when a question asks for the first or the latest time.
    order_weight: float = 0.1
    #: Past a session's first `session_free_hits` hits, each further one has its score multiplied by this once
    #: more, so one session cannot fill the top of the list. Off (1.0): on all of LoCoMo 0.7 after 5 hits lowered
    #: turn R@10 0.778 -> 0.765 (README), whose evidence often sits in one session.
    session_decay: float = 1.0
    session_free_hits: int = 5
    #: 1.0: a turn ranks at least as high as the reply after it (whose index text quotes it), when both are found.
    reply_yields: float = 0.0
    #: How many hits of the newer of the two best-matching sessions move ahead of the older (core/newer_first.py).
    newer_first: int = 5
    #: Added to a turn said by the person a gathering question names (core/speaker_links.py).
    speaker_lift: float = 0.3
    #: 1.0: vector search scores a long memory by its best passage; 0.0: by its own (first-window) vector only.
    passages: float = 1.0
    #: At most this many hits of one session among the first ten while other sessions' hits score at least
    #: `session_cap_share` of the best hit, for questions that count, compare or gather (core/session_spread.py);
    #: 0: off. On all of LoCoMo multi-hop all-evidence 0.163 -> 0.167, no category lower (README).
    session_cap: int = 2
    session_cap_share: float = 0.7
    #: For questions that count, compare or gather: the best hit of each of this many best sessions (each scored
    #: from its hits) first (core/session_first.py); 0: off. With feedback: LoCoMo multi-hop all@10 0.167 -> 0.192.
    session_heads: int = 5
    #: Pseudo-relevance feedback (core/feedback.py): the mean vector of the best first matches of the `feedback_hits`
    #: best sessions adds `feedback_weight` times its similarity to each semantic candidate's score; 0: off.
    feedback_hits: int = 2
    feedback_weight: float = 0.5
    #: For a question about the user (first person, not "you"): each assistant turn's score times this, so the
    #: user's own statements rank above the replies quoting them (core/own_turns.py); 1.0: off.
    assistant_share: float = 0.7


def _normalised(scored: Sequence[tuple[str, float]]) -> dict[str, float]:
    """Min-max normalise raw scores within one result list, so BM25 and cosine become comparable (0..1)."""
    if not scored:
        return {}
    scores = [score for _, score in scored]
    low, high = min(scores), max(scores)
    if high <= low:
        return {item: 1.0 for item, _ in scored}
    return {item: (score - low) / (high - low) for item, score in scored}


def _reciprocal_ranks(scored: Sequence[tuple[str, float]], k: int) -> dict[str, float]:
    return {item: 1.0 / (k + rank) for rank, (item, _) in enumerate(scored, start=1)}


def fused_scores(
    semantic: Sequence[tuple[str, float]], keyword: Sequence[tuple[str, float]], policy: RankingPolicy
) -> dict[str, float]:
    """The fused score of every item in either list of (id, raw score), best first, as the policy combines them.

    Shared by long-term and knowledge recall, so both rank the same way.
    """
    items = dict.fromkeys(item for item, _ in [*semantic, *keyword])
    if policy.fusion == "convex":
        dense, sparse = _normalised(semantic), _normalised(keyword)
        w = policy.keyword_weight
        return {i: w * sparse.get(i, 0.0) + (1 - w) * dense.get(i, 0.0) for i in items}
    if policy.fusion == "rrf":
        dense, sparse = _reciprocal_ranks(semantic, policy.rrf_k), _reciprocal_ranks(keyword, policy.rrf_k)
        return {i: dense.get(i, 0.0) + sparse.get(i, 0.0) for i in items}
    if policy.fusion == "vector":
        return dict(semantic)
    return dict(keyword)


def _with_priors(score: float, memory: Memory, policy: RankingPolicy, now: datetime) -> float:
    """`score` plus what the memory earns before any match: recency (halving every half-life) and importance."""
    if policy.recency_weight:
        age_days = max(0.0, (now - memory.created_at).total_seconds() / 86400)
        score += policy.recency_weight * math.pow(0.5, age_days / policy.recency_half_life_days)
    if policy.importance_weight and memory.importance is not None:
        score += policy.importance_weight * memory.importance
    return score


def _neighbour_boost(
    memory: Memory,
    score: float,
    base: dict[str, float],
    position: dict[tuple[str, int], str],
    policy: RankingPolicy,
) -> float:
    """What the best adjacent turn of the same session lends this turn (0 without one)."""
    if not policy.neighbor_weight or memory.session_id is None or memory.turn_index is None:
        return 0.0
    neighbours = [
        base[n]
        for n in (
            position.get((memory.session_id, memory.turn_index - 1)),
            position.get((memory.session_id, memory.turn_index + 1)),
        )
        if n is not None
    ]
    best = max(neighbours, default=0.0)
    # Context, not evidence: a neighbour's score may lift a turn up to just below that neighbour, never past
    # it (measured on LongMemEval, replies and session-mates outranked the evidence turns themselves).
    boost = policy.neighbor_weight * best
    if policy.neighbor_cap:
        boost = min(boost, max(0.0, best - score - 1e-6))
    return boost


def fuse(
    semantic: Sequence[Candidate],
    keyword: Sequence[Candidate],
    query_vector: Vectors,
    policy: RankingPolicy,
    now: datetime,
    when: TimeReference | None = None,
) -> list[MemoryHit]:
    """Combine both candidate lists into hits ranked best first, each carrying the scores behind its rank.

    `when` is what the question says about time: memories of the period it names rank higher, and so do the
    earliest or latest ones when it asks for the first or the latest time.
    """
    by_id: dict[str, Candidate] = {}
    for candidate in [*semantic, *keyword]:
        by_id.setdefault(candidate.memory.id, candidate)
    vector_rank = {c.memory.id: rank for rank, c in enumerate(semantic, start=1)}
    keyword_rank = {c.memory.id: rank for rank, c in enumerate(keyword, start=1)}
    keyword_score = {c.memory.id: c.score for c in keyword}
    base = fused_scores([(c.memory.id, c.score) for c in semantic], [(c.memory.id, c.score) for c in keyword], policy)

    # Turns next to a strong match are often the answer to it (a question and its reply): lend them part of
    # the best neighbour's score. Only candidates count, so this needs no extra query.
    position = {
        (c.memory.session_id, c.memory.turn_index): i
        for i, c in by_id.items()
        if i in base and c.memory.session_id is not None and c.memory.turn_index is not None
    }
    query = np.asarray(query_vector, dtype=np.float32).reshape(-1)
    ages = _age_ranks([by_id[i].memory.created_at for i in base], when)
    hits: list[MemoryHit] = []
    for memory_id, score in base.items():
        memory = by_id[memory_id].memory
        boost = _neighbour_boost(memory, score, base, position, policy)
        fused = _with_priors(score + boost + _dated(memory.created_at, when, policy, ages), memory, policy, now)
        similarity = float(np.dot(query, by_id[memory_id].vector))
        hits.append(
            MemoryHit(
                score=round(fused, 6),
                scores=HitScores(
                    similarity=round(similarity, 6),
                    keyword=None if memory_id not in keyword_score else round(keyword_score[memory_id], 6),
                    vector_rank=vector_rank.get(memory_id),
                    keyword_rank=keyword_rank.get(memory_id),
                    neighbor_boost=round(boost, 6),
                    fused=round(fused, 6),
                ),
                memory=memory,
                passage=by_id[memory_id].passage,
            )
        )
    if policy.reply_yields:
        hits = _replies_yield(hits)
    hits.sort(key=lambda h: (-h.score, h.scores.vector_rank or math.inf, h.memory.id))
    return _diversified(hits, policy.session_decay, policy.session_free_hits)


def _replies_yield(hits: list[MemoryHit]) -> list[MemoryHit]:
    """Lift each turn to just above the reply after it when the reply scored higher.

    A reply is indexed with the turn it answers quoted, so it matches that turn's words; the quoted turn is more
    often the evidence (measured on LongMemEval), and should not rank under its echo.
    """
    at = {(h.memory.session_id, h.memory.turn_index): i for i, h in enumerate(hits) if h.memory.turn_index is not None}
    lifted = list(hits)
    for hit in hits:
        if hit.memory.turn_index is None:
            continue
        before = at.get((hit.memory.session_id, hit.memory.turn_index - 1))
        if before is not None and lifted[before].score < hit.score:
            lifted[before] = lifted[before].rescored(round(hit.score + 1e-6, 6))
    return lifted


def _age_ranks(moments: Sequence[datetime], when: TimeReference | None) -> dict[datetime, float]:
    """Each candidate time's place from 0 (the wrong end) to 1 (the end the question asks for), if it asks."""
    if when is None or when.order is None or len(moments) < 2:
        return {}
    ordered = sorted(set(moments), reverse=when.order == "earliest")
    last = max(1, len(ordered) - 1)
    return {moment: rank / last for rank, moment in enumerate(ordered)}


def _dated(moment: datetime, when: TimeReference | None, policy: RankingPolicy, ages: dict[datetime, float]) -> float:
    """What a memory's date adds for a question that names a period or asks for the first or latest time."""
    if when is None:
        return 0.0
    bonus = policy.order_weight * ages.get(moment, 0.0)
    period = when.period
    if period is not None and period[0] <= moment < period[1]:
        bonus += policy.period_weight
    return bonus


def _diversified(hits: list[MemoryHit], decay: float, free: int) -> list[MemoryHit]:
    """Re-rank so that one session does not fill the top: past `free` hits, each further one counts `decay` less."""
    if decay >= 1.0 or len(hits) < 2:
        return hits
    seen: dict[str | None, int] = {}
    keyed: list[tuple[float, int, MemoryHit]] = []
    for order, hit in enumerate(hits):
        session = hit.memory.session_id
        count = seen.get(session, 0) if session is not None else 0
        seen[session] = count + 1
        keyed.append((hit.score * decay ** max(0, count - free + 1), order, hit))
    keyed.sort(key=lambda k: (-k[0], k[1]))
    return [hit for _, _, hit in keyed]
