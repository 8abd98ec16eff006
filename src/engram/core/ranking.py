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
    #: Recency: up to this much is added to a brand-new memory, halving every `recency_half_life_days`.
    recency_weight: float = 0.0
    recency_half_life_days: float = 30.0
    #: Importance: this much times the memory's importance (0..1) is added.
    importance_weight: float = 0.0
    #: How many candidates each retrieval method contributes before fusion.
    candidates: int = 50
    #: How many hits of the newer of the two best-matching sessions move ahead of the older (core/newer_first.py).
    newer_first: int = 5
    #: Added to a turn said by the person a gathering question names (core/speaker_links.py).
    speaker_lift: float = 0.3


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


def fuse(
    semantic: Sequence[Candidate],
    keyword: Sequence[Candidate],
    query_vector: Vectors,
    policy: RankingPolicy,
    now: datetime,
) -> list[MemoryHit]:
    """Combine both candidate lists into hits ranked best first, each carrying the scores behind its rank."""
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
    hits: list[MemoryHit] = []
    for memory_id, score in base.items():
        memory = by_id[memory_id].memory
        boost = 0.0
        if policy.neighbor_weight and memory.session_id is not None and memory.turn_index is not None:
            neighbours = [
                base[n]
                for n in (
                    position.get((memory.session_id, memory.turn_index - 1)),
                    position.get((memory.session_id, memory.turn_index + 1)),
                )
                if n is not None
            ]
            boost = policy.neighbor_weight * max(neighbours, default=0.0)
        fused = _with_priors(score + boost, memory, policy, now)
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
            )
        )
    hits.sort(key=lambda h: (-h.score, h.scores.vector_rank or math.inf, h.memory.id))
    return hits
