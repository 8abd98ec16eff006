"""Hybrid recall: keyword search catches exact rare terms, vector search catches paraphrases, fusion keeps both."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from engram.config import Settings
from engram.core.filters import MemoryFilters
from engram.core.models import Kind, Memory
from engram.core.ports import Candidate, Embedder
from engram.core.ranking import RankingPolicy, fuse
from engram.core.service import MemoryService
from engram.embeddings.hashing import HashEmbedder
from engram.runtime import open_memory
from tests.helpers import TEST_NOW, stepping_clock

pytestmark = pytest.mark.anyio

#: Only one note holds the product code; the others are closer in meaning to a complaint-shaped query.
TARGET_NOTE = "Escalated to the warehouse team on Friday with photos attached: ZT-4471-QW."
COMPLAINTS = [
    "The customer said the screen was cracked and asked what we would do about it.",
    "What did the customer say? She said the replacement took too long.",
    "The customer says the order arrived late and the box was damaged.",
    "Customer feedback: they said support was slow to answer.",
    "Another customer complaint: the charger stopped working after a week.",
    "A complaint from a customer about a refund that never arrived.",
]
FACTS = [
    "I am allergic to shellfish, so prawns and lobster are off the menu.",
    "My sister Ingrid lives in Trondheim and works as a glaciologist.",
    "We are repainting the kitchen a pale sage green next month.",
]


@pytest.fixture
def real_service(tmp_path: Path, real_embedder: Embedder) -> Iterator[MemoryService]:
    service = open_memory(Settings(data_dir=tmp_path), real_embedder, clock=stepping_clock)
    yield service
    service.close()


async def _seed(service: MemoryService) -> None:
    for content in [TARGET_NOTE, *COMPLAINTS, *FACTS]:
        await service.remember("alice", content)


def _with_fusion(service: MemoryService, fusion: str) -> MemoryService:
    service.ranking = replace(service.ranking, fusion=fusion)  # type: ignore[arg-type]
    return service


@pytest.mark.slow
async def test_keyword_search_finds_a_rare_code_that_vector_search_misses(real_service: MemoryService) -> None:
    await _seed(real_service)
    target = TARGET_NOTE
    query = "customer complaint ZT-4471-QW"

    vector_only = await _with_fusion(real_service, "vector").recall("alice", query, top_k=3)
    # The embedding follows the query's meaning (a complaint) and barely weighs the code.
    assert target not in [h.memory.content for h in vector_only.memories]

    keyword_only = await _with_fusion(real_service, "keyword").recall("alice", query, top_k=3)
    assert keyword_only.memories[0].memory.content == target

    hybrid = await _with_fusion(real_service, "convex").recall("alice", query, top_k=3)
    top = hybrid.memories[0]
    assert top.memory.content == target
    assert top.scores.keyword_rank == 1 and top.scores.keyword is not None and top.scores.keyword > 0


@pytest.mark.slow
async def test_vector_search_finds_a_paraphrase_that_keyword_search_misses(real_service: MemoryService) -> None:
    await _seed(real_service)
    target = FACTS[0]
    query = "Which seafood should she avoid eating?"

    keyword_only = await _with_fusion(real_service, "keyword").recall("alice", query, top_k=5)
    assert target not in [h.memory.content for h in keyword_only.memories]  # no word in common

    vector_only = await _with_fusion(real_service, "vector").recall("alice", query, top_k=3)
    assert vector_only.memories[0].memory.content == target

    hybrid = await _with_fusion(real_service, "convex").recall("alice", query, top_k=3)
    top = hybrid.memories[0]
    assert top.memory.content == target
    assert top.scores.vector_rank == 1 and top.scores.keyword is None
    assert top.scores.similarity > hybrid.memories[1].scores.similarity


@pytest.mark.parametrize("compacted", [False, True], ids=["unindexed-rows", "after-compaction"])
async def test_a_forgotten_memory_leaves_keyword_results(service: MemoryService, compacted: bool) -> None:
    kept = await service.remember("alice", "the zephyrine valve needs replacing")
    gone = await service.remember("alice", "the zephyrine gasket was replaced", session_id="s1")
    if compacted:
        service.long_term.inner.optimize()  # type: ignore[attr-defined]
    keyword = _with_fusion(service, "keyword")
    before = await keyword.recall("alice", "zephyrine")
    assert {h.memory.id for h in before.memories} == {kept.id, gone.id}

    result = await service.forget_memory("alice", gone.id)
    assert (result.long_term, result.session_turns) == (1, 1)
    after = await keyword.recall("alice", "zephyrine")
    assert [h.memory.id for h in after.memories] == [kept.id]
    assert service.sessions.working(service.user_key("alice"), "s1") == []
    transcript = service.sessions.transcript(service.user_key("alice"), "s1")
    assert transcript == []


async def test_keyword_results_respect_user_and_filters(service: MemoryService) -> None:
    await service.remember("alice", "invoice INV-88812 was paid", tags=["billing"])
    await service.remember("bob", "invoice INV-88812 was disputed", tags=["billing"])
    await service.remember("alice", "invoice INV-88812 copy requested", tags=["support"])
    keyword = _with_fusion(service, "keyword")
    hits = (await keyword.recall("alice", "INV-88812", filters=MemoryFilters(tags=["billing"]))).memories
    assert [h.memory.content for h in hits] == ["invoice INV-88812 was paid"]


def _candidate(memory_id: str, score: float, session: str | None = None, turn: int | None = None) -> Candidate:
    memory = Memory(
        id=memory_id,
        user_id="u",
        session_id=session,
        turn_index=turn,
        kind=Kind.TURN if session else Kind.FACT,
        content=memory_id,
        created_at=TEST_NOW - timedelta(days=365),
    )
    return Candidate(memory=memory, score=score, vector=np.array([1.0, 0.0], dtype=np.float32))


def test_convex_fusion_weights_normalised_scores() -> None:
    semantic = [_candidate("a", 0.9), _candidate("b", 0.5), _candidate("c", 0.1)]
    keyword = [_candidate("c", 12.0), _candidate("b", 2.0)]
    hits = fuse(semantic, keyword, np.array([1.0, 0.0]), RankingPolicy(keyword_weight=0.6), TEST_NOW)
    scores = {h.memory.id: h.score for h in hits}
    # a: 0.4*1.0 + 0.6*0; b: 0.4*0.5 + 0.6*0; c: 0.4*0 + 0.6*1.0
    assert scores == pytest.approx({"a": 0.4, "b": 0.2, "c": 0.6})
    assert [h.memory.id for h in hits] == ["c", "a", "b"]
    assert hits[0].scores.keyword_rank == 1 and hits[0].scores.vector_rank == 3


def test_neighbouring_turns_lend_part_of_their_score() -> None:
    semantic = [_candidate("q", 1.0, "s", 4), _candidate("far", 0.5, "s", 9), _candidate("zero", 0.0, "s", 1)]
    answer = _candidate("a", 0.5, "s", 5)
    hits = fuse([*semantic, answer], [], np.array([1.0, 0.0]), RankingPolicy(neighbor_weight=0.4), TEST_NOW)
    by_id = {h.memory.id: h for h in hits}
    assert by_id["a"].scores.neighbor_boost == pytest.approx(0.4 * 0.4)  # its neighbour q scored 0.4 (= 0.4 * 1.0)
    assert by_id["far"].scores.neighbor_boost == 0.0
    assert by_id["a"].score > by_id["far"].score


def test_rrf_and_single_method_fusions() -> None:
    semantic = [_candidate("a", 0.9), _candidate("b", 0.8)]
    keyword = [_candidate("b", 3.0)]
    now = TEST_NOW
    rrf = fuse(semantic, keyword, np.array([1.0, 0.0]), RankingPolicy(fusion="rrf", neighbor_weight=0), now)
    assert [h.memory.id for h in rrf] == ["b", "a"]
    assert rrf[0].score == pytest.approx(1 / 62 + 1 / 61, abs=1e-6)
    vector = fuse(semantic, keyword, np.array([1.0, 0.0]), RankingPolicy(fusion="vector"), now)
    assert [h.memory.id for h in vector] == ["a", "b"]


def test_recency_and_importance_signals_are_off_by_default_and_work_when_on() -> None:
    old = _candidate("old", 0.5)
    new = Candidate(
        memory=old.memory.model_copy(update={"id": "new", "created_at": TEST_NOW, "importance": 1.0}),
        score=0.5,
        vector=old.vector,
    )
    now = TEST_NOW
    default = fuse([old, new], [], np.array([1.0, 0.0]), RankingPolicy(fusion="vector"), now)
    assert default[0].score == default[1].score
    boosted = fuse(
        [old, new],
        [],
        np.array([1.0, 0.0]),
        RankingPolicy(fusion="vector", recency_weight=0.2, importance_weight=0.1),
        now,
    )
    assert boosted[0].memory.id == "new" and boosted[0].score == pytest.approx(0.5 + 0.2 + 0.1, abs=1e-3)


def test_hash_embedder_is_deterministic() -> None:
    first, second = HashEmbedder().embed(["same words"]), HashEmbedder().embed(["same words"])
    assert np.array_equal(first, second)
