"""Searching knowledge memory: global and the user's own chunks, both searches fused, each hit with its citation."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import numpy as np

from engram.core.identity import GLOBAL_OWNER, UserKey
from engram.core.knowledge_models import ChunkCandidate, KnowledgeStore, scope_of
from engram.core.models import Citation, HitScores, KnowledgeHit
from engram.core.ports import Vectors
from engram.core.ranking import RankingPolicy, fused_scores

_Found = tuple[list[ChunkCandidate], list[ChunkCandidate]]
#: Runs blocking work off the event loop (the knowledge service's worker threads).
Run = Callable[[Callable[[], _Found]], Awaitable[_Found]]


def _candidates(
    store: KnowledgeStore, owners: list[UserKey], query: str, vector: Vectors, ranking: RankingPolicy, limit: int
) -> _Found:
    """The vector and keyword candidates (blocking), none at all while no document is stored."""
    # Most users never ingest a document: a row count (well under a millisecond) spares them two searches
    # of an empty table (about 8 ms of CPU together) on every recall.
    if store.count() == 0:
        return [], []
    semantic = [] if ranking.fusion == "keyword" else store.vector_search(owners, vector, limit)
    keyword = [] if ranking.fusion == "vector" else store.keyword_search(owners, query, limit)
    return semantic, keyword


def _hit(candidate: ChunkCandidate, score: float, scores: HitScores) -> KnowledgeHit:
    chunk = candidate.chunk
    return KnowledgeHit(
        score=score,
        scores=scores,
        content=chunk.content,
        citation=Citation(
            source=chunk.source,
            title=chunk.title,
            heading_path=chunk.heading_path,
            position=chunk.position,
            chunks=chunk.chunks,
            page=chunk.page,
            scope=scope_of(chunk.owner),
            ingested_at=chunk.ingested_at,
        ),
    )


async def search_knowledge(
    run: Run,
    store: KnowledgeStore,
    ranking: RankingPolicy,
    search: tuple[UserKey, str, Vectors, int, float | None],
) -> tuple[list[KnowledgeHit], int]:
    """The chunks best matching the query (user key, query, vector, top_k, min_score), and how many min_score cut."""
    user_key, query, vector, top_k, min_score = search
    limit = max(ranking.candidates, top_k)
    # Told from a directory listing on this thread: a store that never held a chunk costs a recall no worker hop.
    if store.holds_nothing():
        return [], 0
    semantic, keyword = await run(lambda: _candidates(store, [GLOBAL_OWNER, user_key], query, vector, ranking, limit))
    if not semantic and not keyword:
        return [], 0
    by_id: dict[str, ChunkCandidate] = {}
    for candidate in [*semantic, *keyword]:
        by_id.setdefault(candidate.chunk.id, candidate)
    vector_rank = {c.chunk.id: rank for rank, c in enumerate(semantic, start=1)}
    keyword_rank = {c.chunk.id: rank for rank, c in enumerate(keyword, start=1)}
    keyword_score = {c.chunk.id: c.score for c in keyword}
    fused = fused_scores([(c.chunk.id, c.score) for c in semantic], [(c.chunk.id, c.score) for c in keyword], ranking)
    ordered = sorted(fused, key=lambda i: (-fused[i], vector_rank.get(i, math.inf), i))
    query_vector = np.asarray(vector, dtype=np.float32).reshape(-1)
    hits: list[KnowledgeHit] = []
    dropped = 0
    for chunk_id in ordered:
        if len(hits) == top_k:
            break
        similarity = float(np.dot(query_vector, by_id[chunk_id].vector))
        if min_score is not None and similarity < min_score:
            dropped += 1
            continue
        score = round(fused[chunk_id], 6)
        scores = HitScores(
            similarity=round(similarity, 6),
            keyword=None if chunk_id not in keyword_score else round(keyword_score[chunk_id], 6),
            vector_rank=vector_rank.get(chunk_id),
            keyword_rank=keyword_rank.get(chunk_id),
            neighbor_boost=0.0,
            fused=score,
        )
        hits.append(_hit(by_id[chunk_id], score, scores))
    return hits, dropped
