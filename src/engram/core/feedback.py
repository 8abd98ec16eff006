"""Pseudo-relevance feedback in vector space: what the best first matches are about sharpens the question's vector.

A question's words match its evidence only in part ("What do Melanie's kids like?" - "They were stoked for the
dinosaur exhibit"). The first pass's best hits are mostly about the right subject; the mean of their vectors points
at it more fully than the question alone. Each semantic candidate's score gets `weight` times its similarity to that
mean, before fusion, so turns about the same subject rise, whatever their words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from engram.core.ports import Candidate
from engram.core.ranking import RankingPolicy, fused_scores

#: A question joining two questions ("Where does she live and what is her work?"): its best first matches are about
#: one of its subjects, and feedback towards them pushed the other subject's evidence out of the top ten.
_TWO_THINGS = re.compile(r"\band\s+(?:what|where|who|whom|when|why|how|which)\b", re.IGNORECASE)


def asks_two_things(question: str) -> bool:
    """Whether `question` joins two questions with "and", so that it has two subjects."""
    return _TWO_THINGS.search(question) is not None


def with_feedback(
    semantic: Sequence[Candidate],
    keyword: Sequence[Candidate],
    policy: RankingPolicy,
    hits: int,
    weight: float,
    question: str = "",
) -> list[Candidate]:
    """`semantic` with each score raised by `weight` times its similarity to the mean of the best fused matches.

    The mean is over the best match of each of the `hits` best sessions. A question that `asks_two_things` is left
    alone.
    """
    if hits <= 0 or not weight or not semantic or asks_two_things(question):
        return list(semantic)
    base = fused_scores([(c.memory.id, c.score) for c in semantic], [(c.memory.id, c.score) for c in keyword], policy)
    memories = {c.memory.id: c for c in [*semantic, *keyword]}
    ordered = sorted(base, key=lambda i: -base[i])
    # One match per session: a session's turns echo each other, and would make the mean about one conversation.
    heads: dict[str, str] = {}
    for i in ordered:
        session = memories[i].memory.session_id
        heads.setdefault(f"session:{session}" if session is not None else f"memory:{i}", i)
    best = list(heads.values())[:hits]
    vectors = {i: c.vector for i, c in memories.items()}
    centre = np.mean([np.asarray(vectors[i], dtype=np.float32).reshape(-1) for i in best], axis=0)
    norm = float(np.linalg.norm(centre))
    if norm == 0.0:
        return list(semantic)
    centre /= norm
    # Built directly rather than by `dataclasses.replace`, which costs a few microseconds more per candidate.
    rescored = [
        Candidate(
            c.memory, c.score + weight * float(np.dot(centre, np.asarray(c.vector).reshape(-1))), c.vector, c.passage
        )
        for c in semantic
    ]
    return sorted(rescored, key=lambda c: -c.score)
