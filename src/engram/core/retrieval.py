"""Reading memory: recall (working, long-term and knowledge, fused), pages of memories, sessions and agents."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from engram.core.asked_at import asked_at, merged, within
from engram.core.context import MemoryContext, turn_admitted
from engram.core.errors import EngramError, InvalidInput, TierDamaged, quoted
from engram.core.feedback import with_feedback
from engram.core.filters import MemoryFilters
from engram.core.graph_links import links
from engram.core.identity import UserKey
from engram.core.limits import MAX_OFFSET, MAX_PAGE, MAX_QUERY_CHARS
from engram.core.models import (
    AgentActivity,
    KnowledgeHit,
    Memory,
    MemoryHit,
    MemoryPage,
    RecallResult,
    RecallScope,
    SessionInfo,
    SessionTranscript,
    WorkingTurn,
)
from engram.core.newer_first import newer_first
from engram.core.own_turns import own_turns_first
from engram.core.ports import Candidate, Vectors
from engram.core.ranking import fuse
from engram.core.session_first import sessions_first
from engram.core.session_spread import spans_sessions, spread
from engram.core.speaker_links import lift_named_speakers
from engram.core.temporal import TimeReference
from engram.core.validation import check_id, check_memory_id, check_optional_id

#: What recall adds to a memory naming an entity the query names, or one of its one-hop neighbours. A neighbour's
#: memories share no words with the question ("Where is Priya's employer?" - "Headquarters in Rotterdam"), so the
#: relation has to carry them further than the memories that name the entity itself.
GRAPH_DIRECT_BOOST = 0.1
GRAPH_NEIGHBOUR_BOOST = 0.25
#: How many names (with aliases) recall follows, and how many memories it brings in per name.
GRAPH_MAX_NAMES = 12
GRAPH_PER_ENTITY = 10


def _boosted(hit: MemoryHit, boost: float) -> MemoryHit:
    """`hit` with the graph's boost added to its score."""
    if not boost:
        return hit
    return hit.rescored(round(hit.score + boost, 6), graph_boost=boost)


@dataclass
class _Searched:
    """What the two long-term searches found, and the damage that kept one of them from answering."""

    semantic: list[Candidate] = field(default_factory=list)
    keyword: list[Candidate] = field(default_factory=list)
    failed: list[EngramError] = field(default_factory=list)


class MemoryReader:
    """recall, list_memories, sessions, transcripts and agents: every way memory is read back."""

    def __init__(self, context: MemoryContext) -> None:
        self._ctx = context

    async def recall(
        self,
        user_id: str,
        query: str,
        *,
        session_id: str | None = None,
        top_k: int | None = None,
        min_score: float | None = None,
        filters: MemoryFilters | None = None,
        agent_id: str | None = None,
        scope: RecallScope = "both",
        as_of: datetime | None = None,
    ) -> RecallResult:
        """Return the session's working memory and the user's long-term memories closest to `query`.

        `agent_id` is the agent asking: it sees the user's shared memories and its own private ones only.
        `scope` chooses personal memory (working and long-term), knowledge (ingested documents) or both.
        `as_of` (default now) is when it is asked: memories valid then, and where dates in the query count from.
        """
        ctx = self._ctx
        key = ctx.user_key(user_id)
        check_optional_id("session_id", session_id)
        query, top_k = self._checked_query(query, top_k, min_score)
        asked = asked_at(query, filters or MemoryFilters(), as_of, ctx.clock())
        filters = asked.filters.seen_by(check_optional_id("agent_id", agent_id))
        if scope == "knowledge":
            found, dropped = await self._knowledge_hits(key, query, await self._embed_query(query), top_k, min_score)
            return RecallResult(working=[], memories=[], knowledge=found, dropped_below_min_score=dropped)

        working = await self._working(key, session_id, filters)
        started = time.perf_counter()
        vector, searched = await self._search_long_term(key, query, filters, top_k, asked.when)
        boosts = await self._follow_graph(key, query, vector, filters, searched) if not searched.failed else {}
        unavailable: list[str] = []
        if searched.failed:
            # With scope 'both', damaged long-term memory still leaves working memory and knowledge to answer.
            if scope != "both" or not isinstance(searched.failed[0], TierDamaged):
                raise searched.failed[0]
            unavailable.append(str(searched.failed[0]))
            searched = _Searched()
        kept, dropped = self._ranked(user_id, searched, vector, top_k, min_score, asked.when, boosts, query=query)
        ctx.metrics.observe_recall_tier("long_term", time.perf_counter() - started)
        ctx.metrics.observe_recall_results(
            key, [hit.score for hit in kept], [hit.scores.similarity for hit in kept], dropped
        )
        cited: list[KnowledgeHit] = []
        dropped_knowledge = 0
        if scope == "both":
            try:
                cited, dropped_knowledge = await self._knowledge_hits(key, query, vector, top_k, min_score)
            except TierDamaged as exc:
                # Damaged knowledge memory must not cost the caller the personal memories found above.
                unavailable.append(str(exc))
        return RecallResult(
            working=working,
            memories=kept,
            knowledge=cited,
            dropped_below_min_score=dropped + dropped_knowledge,
            unavailable=unavailable,
        )

    def _checked_query(self, query: str, top_k: int | None, min_score: float | None) -> tuple[str, int]:
        """The query text, trimmed, and the number of hits asked for, both within their limits."""
        policy = self._ctx.policy
        query = query.strip()
        if not query:
            raise InvalidInput("query", "must contain text; it is empty or only whitespace.")
        if len(query) > MAX_QUERY_CHARS:
            raise InvalidInput("query", f"is {len(query)} characters; the limit is {MAX_QUERY_CHARS}.")
        top_k = policy.default_top_k if top_k is None else top_k
        if not (1 <= top_k <= policy.max_top_k):
            raise InvalidInput("top_k", f"must be between 1 and {policy.max_top_k}, got {top_k}.")
        if min_score is not None and not (-1.0 <= min_score <= 1.0):
            raise InvalidInput("min_score", f"must be between -1 and 1, got {min_score}.")
        return query, top_k

    async def _working(self, key: UserKey, session_id: str | None, filters: MemoryFilters) -> list[WorkingTurn]:
        """The session's working memory as the asking agent may see it (none without a session)."""
        if session_id is None:
            return []
        started = time.perf_counter()
        turns = await self._ctx.run(partial(self._ctx.sessions.working, key, session_id))
        working = [WorkingTurn.model_validate(t.model_dump()) for t in turns if turn_admitted(filters, t)]
        self._ctx.metrics.observe_recall_tier("working", time.perf_counter() - started)
        return working

    async def _search_long_term(
        self, key: UserKey, query: str, filters: MemoryFilters, top_k: int, when: TimeReference | None = None
    ) -> tuple[Vectors, _Searched]:
        """The query's vector, and the candidates of the keyword and vector searches of long-term memory."""
        ctx, ranking = self._ctx, self._ctx.ranking
        limit = max(ranking.candidates, top_k)
        # Without a period weight the period's own search could add nothing to the ranking.
        period = None if when is None or not ranking.period_weight else within(filters, when)

        def search() -> tuple[Vectors, _Searched]:
            # One worker hop for the embedding and every search: both searches read the in-memory index (about
            # 1 ms each at 10,000 memories), so running the keyword search on the other core saved less wall time
            # than its own hop cost in CPU (issue #15).
            searched = _Searched()
            if ranking.fusion != "vector":
                try:
                    searched.keyword = ctx.long_term.keyword_search(key, query, filters, limit)
                except EngramError as exc:  # raised after the searches, so the other one still answers first
                    searched.failed.append(exc)
            vector: Vectors = ctx.embedder.embed([query])[0]
            if ranking.fusion != "keyword":
                try:
                    passages = bool(ranking.passages)
                    searched.semantic = ctx.long_term.vector_search(key, vector, filters, limit, passages=passages)
                    if period is not None:
                        # The question names a period: its memories are searched too, so that the right Saturday's
                        # turn is a candidate even when turns of other dates say the same thing more closely.
                        # Without passages: the search above already brought the long memories their passages found.
                        dated = ctx.long_term.vector_search(key, vector, period, top_k, passages=False)
                        searched.semantic = merged(searched.semantic, dated)
                except EngramError as exc:
                    searched.failed.append(exc)
            return vector, searched

        return await ctx.run(search)

    async def _follow_graph(
        self, key: UserKey, query: str, vector: Vectors, filters: MemoryFilters, searched: _Searched
    ) -> dict[str, float]:
        """Bring in the memories naming an entity the query names or its one-hop neighbours; their boosts by id."""
        ctx = self._ctx
        # A caller's own entity filter already says which entity to look at. A graph that never held an entity is
        # told from a directory listing on this thread: most users have none, and a worker hop to learn it cost more.
        if ctx.graph is None or filters.entity is not None or ctx.graph.holds_nothing():
            return {}
        try:
            found = await links(ctx, ctx.graph, key, query, filters)
        except EngramError:  # a damaged graph must not cost the caller the memories themselves
            return {}
        boosts: dict[str, float] = {}
        present = {c.memory.id for c in searched.semantic}
        for names, boost in ((found.direct, GRAPH_DIRECT_BOOST), (found.neighbours, GRAPH_NEIGHBOUR_BOOST)):
            for name in names[:GRAPH_MAX_NAMES]:
                scoped = filters.model_copy(update={"entity": name})
                linked = await ctx.run(partial(ctx.long_term.vector_search, key, vector, scoped, GRAPH_PER_ENTITY))
                for candidate in linked:
                    boosts[candidate.memory.id] = max(boosts.get(candidate.memory.id, 0.0), boost)
                    if candidate.memory.id not in present:
                        present.add(candidate.memory.id)
                        searched.semantic.append(candidate)
        searched.semantic.sort(key=lambda c: c.score, reverse=True)
        return boosts

    def _ranked(
        self,
        user_id: str,
        searched: _Searched,
        vector: Vectors,
        top_k: int,
        min_score: float | None,
        when: TimeReference | None = None,
        boosts: dict[str, float] | None = None,
        *,
        query: str = "",
    ) -> tuple[list[MemoryHit], int]:
        """The best `top_k` fused hits that pass `min_score` (shown under the caller's user id), and how many failed."""
        kept: list[MemoryHit] = []
        dropped = 0
        policy = self._ctx.ranking
        semantic = with_feedback(
            searched.semantic, searched.keyword, policy, int(policy.feedback_hits), policy.feedback_weight, query
        )
        hits = fuse(semantic, searched.keyword, vector, policy, self._ctx.clock(), when)
        if boosts:
            hits = sorted((_boosted(h, boosts.get(h.memory.id, 0.0)) for h in hits), key=lambda h: -h.score)
        hits = lift_named_speakers(hits, query, self._ctx.ranking.speaker_lift)
        hits = own_turns_first(hits, query, policy.assistant_share)
        hits = newer_first(hits, self._ctx.ranking.newer_first, query)
        hits = spread(hits, int(self._ctx.ranking.session_cap), self._ctx.ranking.session_cap_share, query)
        if spans_sessions(query):
            hits = sessions_first(hits, int(policy.session_heads))
        # The threshold applies before the cut, so weak hits make room for passing ones further down.
        for hit in hits:
            if len(kept) == top_k:
                break
            if min_score is not None and hit.scores.similarity < min_score:
                dropped += 1
            else:
                kept.append(hit.model_copy(update={"memory": hit.memory.model_copy(update={"user_id": user_id})}))
        return kept, dropped

    async def _knowledge_hits(
        self, key: UserKey, query: str, vector: Vectors, top_k: int, min_score: float | None
    ) -> tuple[list[KnowledgeHit], int]:
        """Global and the user's own knowledge chunks matching the query (none without knowledge memory)."""
        if self._ctx.knowledge is None:
            return [], 0
        return await self._ctx.knowledge.search(key, query, vector, top_k, min_score)

    async def _embed_query(self, query: str) -> Vectors:
        """The query's vector.

        Not cached: a query is the user's data too, and a cache of them on disk had to be keyed, scrubbed on
        erasure and rebuilt when damaged, to save one query embedding (1-3 ms with ONNX) on a repeat.
        """
        vector: Vectors = (await self._ctx.run(partial(self._ctx.embedder.embed, [query])))[0]
        return vector

    async def list_memories(
        self,
        user_id: str,
        *,
        filters: MemoryFilters | None = None,
        limit: int = 20,
        offset: int = 0,
        agent_id: str | None = None,
    ) -> MemoryPage:
        """A page of the user's memories matching `filters`, newest first, as the asking `agent_id` may see them."""
        ctx = self._ctx
        key = ctx.user_key(user_id)
        if not (1 <= limit <= MAX_PAGE):
            raise InvalidInput("limit", f"must be between 1 and {MAX_PAGE}, got {limit}.")
        if not (0 <= offset <= MAX_OFFSET):
            raise InvalidInput(
                "offset", f"must be between 0 and {MAX_OFFSET}, got {offset}; narrow the filters instead."
            )
        checked = (filters or MemoryFilters()).seen_by(check_optional_id("agent_id", agent_id))
        # One extra row tells whether another page follows without a separate count.
        rows = await ctx.run(partial(ctx.long_term.list_memories, key, checked, limit + 1, offset))
        memories = [m.model_copy(update={"user_id": user_id}) for m in rows[:limit]]
        return MemoryPage(memories=memories, next_offset=offset + limit if len(rows) > limit else None)

    async def get_memory(self, user_id: str, memory_id_: str, *, agent_id: str | None = None) -> Memory:
        """One of the user's memories by id, as the asking `agent_id` may see it (InvalidInput if it is not held)."""
        key = self._ctx.user_key(user_id)
        check_memory_id(memory_id_)
        found = await self._ctx.visible_memory(key, memory_id_, agent_id, required=True)
        assert found is not None
        return found.model_copy(update={"user_id": user_id})

    async def recent_memories(self, user_id: str, limit: int = 20, *, agent_id: str | None = None) -> list[Memory]:
        """The user's most recently stored long-term memories that `agent_id` may see, newest first."""
        return (await self.list_memories(user_id, limit=limit, agent_id=agent_id)).memories

    async def sessions_of(self, user_id: str) -> list[SessionInfo]:
        """The user's recent sessions (short-term memory), most recently active first."""
        key = self._ctx.user_key(user_id)
        return await self._ctx.run(partial(self._ctx.sessions.sessions, key))

    async def transcript(self, user_id: str, session_id: str, *, agent_id: str | None = None) -> SessionTranscript:
        """A session's working memory, or its short-term transcript once working memory has expired.

        Turns private to another agent than `agent_id` are left out.
        """
        ctx = self._ctx
        key = ctx.user_key(user_id)
        check_id("session_id", session_id)
        visible = MemoryFilters().seen_by(check_optional_id("agent_id", agent_id))
        working = await ctx.run(partial(ctx.sessions.working, key, session_id))
        if working:
            turns = [t for t in working if turn_admitted(visible, t)]
            return SessionTranscript(session_id=session_id, tier="working", turns=turns)
        transcript = await ctx.run(partial(ctx.sessions.transcript, key, session_id))
        if transcript is None:
            raise InvalidInput(
                "session_id", f"no session {quoted(session_id)} is held for this user (unknown or expired)."
            )
        turns = [t for t in transcript if turn_admitted(visible, t)]
        return SessionTranscript(session_id=session_id, tier="short_term", turns=turns)

    async def agents_of(self, user_id: str, *, agent_id: str | None = None) -> list[AgentActivity]:
        """The agents that wrote the user's memories, with counts; other agents' private memories count as 0."""
        key = self._ctx.user_key(user_id)
        viewer = check_optional_id("agent_id", agent_id)
        activity = await self._ctx.run(partial(self._ctx.long_term.agent_activity, key))
        return [
            a if a.agent_id == viewer or not a.private else a.model_copy(update={"private": 0})
            for a in activity
            if a.agent_id == viewer or a.shared
        ]
