"""Newer versions first: the newer of two near-identical hits near the top of a recall ranks above the older."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from engram.core.models import HitScores, Memory, MemoryHit
from engram.core.versions import newer_versions_first


def _hit(memory_id: str, day: int, score: float) -> MemoryHit:
    memory = Memory(id=memory_id, user_id="u", content=memory_id, created_at=datetime(2024, 1, day, tzinfo=UTC))
    scores = HitScores(
        similarity=score, keyword=None, vector_rank=None, keyword_rank=None, neighbor_boost=0.0, fused=score
    )
    return MemoryHit(score=score, scores=scores, memory=memory)


def _unit(*values: float) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def test_the_newer_version_of_a_fact_moves_above_the_older_one() -> None:
    hits = [_hit("gym-twice", 1, 0.9), _hit("tea", 5, 0.8), _hit("gym-four-times", 9, 0.7)]
    vectors = {"gym-twice": _unit(1, 0.1, 0), "gym-four-times": _unit(1, 0.2, 0), "tea": _unit(0, 0, 1)}
    ranked = newer_versions_first(hits, vectors)
    assert [h.memory.id for h in ranked] == ["gym-four-times", "gym-twice", "tea"]


def test_unlike_or_older_hits_keep_their_order_and_nothing_leaves_the_window() -> None:
    hits = [_hit("a", 9, 0.9), _hit("b", 1, 0.8), _hit("c", 5, 0.7)]
    vectors = {"a": _unit(1, 0, 0), "b": _unit(1, 0.1, 0), "c": _unit(0, 1, 0)}
    # b is a version of a but older; c is newer than b but says something else.
    assert [h.memory.id for h in newer_versions_first(hits, vectors)] == ["a", "b", "c"]
    many = [_hit(f"m{i}", 1 + i, 1.0 - i / 100) for i in range(15)]
    same = {h.memory.id: _unit(1, 0, 0) for h in many}
    reordered = newer_versions_first(many, same, window=10)
    assert {h.memory.id for h in reordered[:10]} == {h.memory.id for h in many[:10]}
    assert reordered[10:] == many[10:]
