"""Pseudo-relevance feedback in vector space: what the best first matches are about sharpens the question's vector.

A question's words match its evidence only in part ("What do Melanie's kids like?" - "They were stoked for the
dinosaur exhibit"). The first pass's best hits are mostly about the right subject; the mean of their vectors points
at it more fully than the question alone. Each semantic candidate's score gets `weight` times its similarity to that
mean, before fusion, so turns about the same subject rise, whatever their words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from engram.core.ports import Candidate
from engram.core.ranking import RankingPolicy, fused_scores


def with_feedback(
    semantic: Sequence[Candidate], keyword: Sequence[Candidate], policy: RankingPolicy, hits: int, weight: float
) -> list[Candidate]:
    """`semantic` with each score raised by `weight` times its similarity to the mean of the `hits` best fused."""
    if hits <= 0 or not weight or not semantic:
        return list(semantic)
    base = fused_scores([(c.memory.id, c.score) for c in semantic], [(c.memory.id, c.score) for c in keyword], policy)
    best = sorted(base, key=lambda i: -base[i])[:hits]
    vectors = {c.memory.id: c.vector for c in [*semantic, *keyword]}
    centre = np.mean([np.asarray(vectors[i], dtype=np.float32).reshape(-1) for i in best], axis=0)
    norm = float(np.linalg.norm(centre))
    if norm == 0.0:
        return list(semantic)
    centre /= norm
    rescored = [
        replace(c, score=c.score + weight * float(np.dot(centre, np.asarray(c.vector).reshape(-1)))) for c in semantic
    ]
    return sorted(rescored, key=lambda c: -c.score)
