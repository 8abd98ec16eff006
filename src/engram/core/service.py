"""MemoryService: the memory semantics of Engram (remember, recall, summarise, forget) over its ports."""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
import unicodedata
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, TypeVar

import anyio
import anyio.to_thread

from engram.core.errors import (
    ConfirmationRequired,
    EngramError,
    ErasureIncomplete,
    InvalidInput,
    NothingToSummarize,
    TierDamaged,
    quoted,
)
from engram.core.health import TierHealth
from engram.core.indexing import index_text
from engram.core.models import (
    ID_PATTERN,
    ID_RULE,
    MAX_METADATA_KEYS,
    MAX_OFFSET,
    MAX_PAGE,
    MAX_QUERY_CHARS,
    MAX_TAGS,
    MEMORY_ID_PATTERN,
    AgentActivity,
    ForgetReceipt,
    Kind,
    KnowledgeHit,
    Memory,
    MemoryForgotten,
    MemoryHit,
    MemoryPage,
    MemoryUpdated,
    MetadataValue,
    PurgeReport,
    RecallFilters,
    RecallResult,
    RecallScope,
    RememberItem,
    RememberResult,
    Role,
    Sentiment,
    SessionInfo,
    SessionSummary,
    SessionTranscript,
    TierStats,
    Turn,
    Visibility,
    WorkingTurn,
)
from engram.core.ports import (
    Candidate,
    Embedder,
    Enricher,
    Enrichment,
    LongTermStore,
    MemoryMetrics,
    NoMetrics,
    SessionStore,
    Vectors,
)
from engram.core.ranking import RankingPolicy, fuse
from engram.core.redaction import DEFAULT_POLICY, RedactionPolicy, SensitiveContentRejected, redact
from engram.core.summarizer import extractive_summary
from engram.core.timeutil import to_utc, utc_now

if TYPE_CHECKING:
    from engram.core.knowledge import KnowledgeService

logger = logging.getLogger(__name__)

T = TypeVar("T")
Progress = Callable[[float, float, str], Awaitable[None]]

_ID = re.compile(ID_PATTERN)
MAX_TAG_CHARS = 64
MAX_LABEL_CHARS = 64
MAX_METADATA_VALUE_CHARS = 1000
#: Agents named in one include or exclude list of a filter.
MAX_FILTER_AGENTS = 20
#: How many times forget_user erases and checks before it reports what remains.
ERASURE_PASSES = 3


@dataclass(frozen=True)
class MemoryPolicy:
    """The limits and defaults the service enforces (built from Settings by the composition root)."""

    max_content_chars: int = 8000
    default_top_k: int = 5
    max_top_k: int = 50
    summary_max_chars: int = 600
    keep_recent_default: int = 6
    max_keep_recent: int = 1000
    max_batch: int = 500
    #: Long-term memories older than this are purged (None: kept until erased); per-category overrides.
    retention: timedelta | None = None
    retention_by_category: Mapping[str, timedelta] = field(default_factory=dict)
    redaction: RedactionPolicy = DEFAULT_POLICY


def normalize_content(content: str) -> str:
    """Canonical form used for de-duplication: NFC, surrounding whitespace removed."""
    return unicodedata.normalize("NFC", content).strip()


def memory_id(user_id: str, content: str) -> str:
    """Content-addressed id: the same normalised content for the same user always has the same id."""
    digest = hashlib.sha256(f"{user_id}\x00{normalize_content(content)}".encode())
    return digest.hexdigest()[:32]


def check_id(field: str, value: str) -> str:
    """Return `value` if it is a well-formed identifier, else raise InvalidInput naming `field`."""
    if not isinstance(value, str) or not _ID.match(value):
        raise InvalidInput(field, f"{quoted(value)} is not a valid id; expected {ID_RULE}.")
    return value


def _check_optional_id(field: str, value: str | None) -> str | None:
    return None if value is None else check_id(field, value)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _check_label(field: str, value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > MAX_LABEL_CHARS or _CONTROL.search(value):
        raise InvalidInput(field, f"must be 1-{MAX_LABEL_CHARS} non-blank characters without control characters.")
    return value


def _check_tags(field: str, tags: Sequence[str] | None) -> list[str]:
    if not tags:
        return []
    if len(tags) > MAX_TAGS:
        raise InvalidInput(field, f"at most {MAX_TAGS} tags are accepted, got {len(tags)}.")
    cleaned: list[str] = []
    for tag in tags:
        # Tags are labels: "Billing" and "billing" are one tag, so they are stored and matched in lower case.
        tag = tag.strip().lower()
        if not tag or len(tag) > MAX_TAG_CHARS or _CONTROL.search(tag):
            raise InvalidInput(
                field,
                f"each tag must be 1-{MAX_TAG_CHARS} non-blank characters without control characters, "
                f"got {quoted(tag)}.",
            )
        if tag not in cleaned:
            cleaned.append(tag)
    return cleaned


def _check_entities(field: str, entities: Sequence[str] | None) -> list[str]:
    cleaned: list[str] = []
    for entity in entities or []:
        label = _check_label(field, entity)
        if label is not None and label.casefold() not in {e.casefold() for e in cleaned}:
            cleaned.append(label)
    if len(cleaned) > MAX_TAGS:
        raise InvalidInput(field, f"at most {MAX_TAGS} entities are accepted, got {len(cleaned)}.")
    return cleaned


def _check_metadata(metadata: Mapping[str, MetadataValue] | None, field: str = "metadata") -> dict[str, MetadataValue]:
    if not metadata:
        return {}
    if len(metadata) > MAX_METADATA_KEYS:
        raise InvalidInput(field, f"at most {MAX_METADATA_KEYS} keys are accepted, got {len(metadata)}.")
    for key, value in metadata.items():
        if not key or len(key) > MAX_LABEL_CHARS:
            raise InvalidInput(field, f"keys must be 1-{MAX_LABEL_CHARS} characters, got {quoted(key)}.")
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInput(field, f"value of {quoted(key)} must be a finite number.")
        if isinstance(value, str) and len(value) > MAX_METADATA_VALUE_CHARS:
            raise InvalidInput(field, f"value of {quoted(key)} is over {MAX_METADATA_VALUE_CHARS} characters.")
    return dict(metadata)


def _as_utc(field: str, value: datetime | None) -> datetime | None:
    """`value` in UTC (naive means UTC), refusing dates outside the years 1000-9999 that storage can hold."""
    if value is None:
        return None
    if not 1000 <= value.year <= 9998:
        raise InvalidInput(field, f"must be a date between the years 1000 and 9998, got {value.isoformat()}.")
    return to_utc(value)


def _check_memory_id(value: str) -> str:
    if not isinstance(value, str) or not re.match(MEMORY_ID_PATTERN, value):
        raise InvalidInput("memory_id", f"{quoted(value)} is not a memory id; expected 32 lowercase hex digits.")
    return value


def _turn_admitted(filters: RecallFilters, turn: Turn) -> bool:
    """Whether the asking agent may see a session turn (summaries are shared, like their memory)."""
    return filters.admits(turn.agent_id, turn.visibility)


def _with_enrichment(memory: Memory, found: Enrichment) -> Memory:
    """`memory` with extracted metadata in the fields it leaves empty: what the caller supplied always wins.

    Tags are not merged: a caller who tags a memory has chosen its tags, and extracted ones would blur them.
    """
    update: dict[str, object] = {}
    if not memory.tags and found.tags:
        update["tags"] = list(found.tags)[:MAX_TAGS]
    if memory.category is None and found.category is not None:
        update["category"] = found.category
    if not memory.entities and found.entities:
        update["entities"] = list(found.entities)
    if memory.sentiment is None and found.sentiment is not None:
        update["sentiment"] = found.sentiment
        if found.sentiment_score is not None:
            update["sentiment_score"] = min(1.0, max(-1.0, found.sentiment_score))
    return memory.model_copy(update=update) if update else memory


@dataclass(frozen=True)
class _Draft:
    memory: Memory
    speaker: str | None
    redacted: dict[str, int]


@dataclass(frozen=True)
class _Placed:
    memory: Memory
    indexed: str
    session_turns: int | None
    redacted: dict[str, int]


class MemoryService:
    """Every memory operation Engram offers; transport-free and storage-agnostic."""

    def __init__(
        self,
        embedder: Embedder,
        long_term: LongTermStore,
        sessions: SessionStore,
        policy: MemoryPolicy | None = None,
        clock: Callable[[], datetime] = utc_now,
        ranking: RankingPolicy | None = None,
        pseudonymize: Callable[[str], str] | None = None,
        enricher: Enricher | None = None,
        metrics: MemoryMetrics | None = None,
        knowledge: KnowledgeService | None = None,
        health: TierHealth | None = None,
    ) -> None:
        self.embedder = embedder
        self.enricher = enricher
        self.metrics: MemoryMetrics = metrics or NoMetrics()
        #: Knowledge memory (ingested documents), when the composition root provides it.
        self.knowledge = knowledge
        self._pseudonymize = pseudonymize or (lambda user_id: user_id)
        self.long_term = long_term
        self.sessions = sessions
        self.policy = policy or MemoryPolicy()
        self.ranking = ranking or RankingPolicy()
        self._clock = clock
        #: Which tiers storage found damaged (recall, stats and /healthz report them).
        self.health = health or TierHealth()

    def user_key(self, user_id: str) -> str:
        """Check a caller's user id and return the pseudonym the stores know the user by."""
        return self._pseudonymize(check_id("user_id", user_id))

    async def _run(self, fn: Callable[[], T]) -> T:
        """Run blocking work (embedding, disk I/O) on a worker thread so the event loop keeps serving."""
        return await anyio.to_thread.run_sync(fn)

    def _redact(self, field: str, text: str, counts: dict[str, int]) -> str:
        """Apply the redaction policy to `text` before it reaches any store; tally what was replaced."""
        try:
            result = redact(text, self.policy.redaction)
        except SensitiveContentRejected as exc:
            raise InvalidInput(field, str(exc)) from exc
        for category, count in result.counts.items():
            counts[category.value] = counts.get(category.value, 0) + count
        return result.text

    def _check_content(self, field: str, content: str) -> str:
        normalized = normalize_content(content)
        if not normalized:
            raise InvalidInput(field, "must contain text; it is empty or only whitespace.")
        if len(normalized) > self.policy.max_content_chars:
            raise InvalidInput(
                field,
                f"is {len(normalized)} characters; the limit is {self.policy.max_content_chars}. "
                "Split it into several memories or summarise it first.",
            )
        return normalized

    async def remember(
        self,
        user_id: str,
        content: str,
        *,
        session_id: str | None = None,
        agent_id: str | None = None,
        role: Role | None = None,
        kind: Kind | None = None,
        tags: Sequence[str] | None = None,
        category: str | None = None,
        metadata: Mapping[str, MetadataValue] | None = None,
        importance: float | None = None,
        occurred_at: datetime | None = None,
        visibility: Visibility = Visibility.SHARED,
        entities: Sequence[str] | None = None,
        sentiment: Sentiment | None = None,
        resolved: bool | None = None,
    ) -> RememberResult:
        """Store `content` for the user in long-term memory (once), and as a turn of the session if given.

        `occurred_at` dates the memory when importing history (default: now). A `speaker` entry in `metadata`
        names who said it; it is indexed with the content so questions about that person find it.
        """
        # Built without validation: _draft checks every field and names it in its own error.
        item = RememberItem.model_construct(
            content=content,
            session_id=session_id,
            role=role,
            kind=kind,
            tags=list(tags or []),
            category=category,
            metadata=dict(metadata or {}),
            importance=importance,
            occurred_at=occurred_at,
            visibility=visibility,
            entities=list(entities or []),
            sentiment=sentiment,
            resolved=resolved,
        )
        draft = self._draft(user_id, agent_id, item, "")
        placed = await self._place(draft)
        created = await self._store(placed.memory, placed.indexed)
        self.metrics.observe_write(placed.memory.user_id, 1, int(created))
        return RememberResult(
            id=placed.memory.id, created=created, session_turns=placed.session_turns, redacted=placed.redacted
        )

    async def remember_many(
        self, user_id: str, items: Sequence[RememberItem], *, agent_id: str | None = None
    ) -> list[RememberResult]:
        """Store several memories in one call: one batched embedding and one write (for importing history).

        Every item is checked before anything is stored, so a bad item stores nothing. Items with a session are
        appended to it in the given order.
        """
        if not 1 <= len(items) <= self.policy.max_batch:
            raise InvalidInput("items", f"give 1 to {self.policy.max_batch} items, got {len(items)}.")
        drafts = [self._draft(user_id, agent_id, item, f"items[{i}].") for i, item in enumerate(items)]
        placed = [await self._place(draft) for draft in drafts]
        vectors = await self._run(partial(self.embedder.embed, [p.indexed for p in placed]))
        memories = await self._enriched([p.memory for p in placed], vectors)
        inserted = await self._run(partial(self.long_term.add_many, memories, [p.indexed for p in placed], vectors))
        self.metrics.observe_write(self.user_key(user_id), len(placed), len(inserted))
        results: list[RememberResult] = []
        for p in placed:
            created = p.memory.id in inserted
            inserted.discard(p.memory.id)  # a repeat inside the batch is not new the second time
            results.append(
                RememberResult(id=p.memory.id, created=created, session_turns=p.session_turns, redacted=p.redacted)
            )
        return results

    def _draft(self, user_id: str, agent_id: str | None, item: RememberItem, where: str) -> _Draft:
        """Check one memory's fields (naming them with `where` as prefix) without touching any store."""
        key = self.user_key(user_id)
        _check_optional_id("agent_id", agent_id)
        _check_optional_id(f"{where}session_id", item.session_id)
        visibility = Visibility(item.visibility)
        if visibility is Visibility.PRIVATE and agent_id is None:
            raise InvalidInput(
                f"{where}visibility", "'private' keeps a memory to the agent that wrote it: pass agent_id as well."
            )
        redacted: dict[str, int] = {}
        text = self._redact(f"{where}content", self._check_content(f"{where}content", item.content), redacted)
        if item.importance is not None and not (0.0 <= item.importance <= 1.0):
            raise InvalidInput(f"{where}importance", f"must be between 0 and 1, got {item.importance}.")
        metadata = {
            key: self._redact(f"{where}metadata", value, redacted) if isinstance(value, str) else value
            for key, value in _check_metadata(item.metadata, f"{where}metadata").items()
        }
        speaker_value = metadata.get("speaker")
        role = item.role or (Role.USER if item.session_id is not None else None)
        when = _as_utc(f"{where}occurred_at", item.occurred_at) or self._clock()
        memory = Memory(
            id=memory_id(key, text),
            user_id=key,
            agent_id=agent_id,
            visibility=visibility,
            session_id=item.session_id,
            role=role,
            kind=item.kind or (Kind.TURN if item.session_id is not None else Kind.FACT),
            content=text,
            created_at=when,
            tags=_check_tags(f"{where}tags", item.tags),
            category=_check_label(f"{where}category", item.category),
            entities=_check_entities(f"{where}entities", item.entities),
            sentiment=None if item.sentiment is None else Sentiment(item.sentiment),
            resolved=item.resolved,
            metadata=metadata,
            importance=item.importance,
        )
        speaker = (speaker_value.strip() or None) if isinstance(speaker_value, str) else None
        return _Draft(memory=memory, speaker=speaker, redacted=redacted)

    async def _place(self, draft: _Draft) -> _Placed:
        """Append the memory to its session (if any) and build the text to embed and index."""
        memory, speaker = draft.memory, draft.speaker
        previous: tuple[str | None, str] | None = None
        session_turns: int | None = None
        if memory.session_id is not None:
            # The turn goes into the session first: its position and the turn it follows are part of what is
            # indexed. A retry after a failure below is recognised there and not appended twice.
            turn = Turn(
                memory_id=memory.id,
                seq=0,
                role=memory.role,
                content=memory.content,
                created_at=memory.created_at,
                agent_id=memory.agent_id,
                visibility=memory.visibility,
                speaker=speaker,
            )
            appended = await self._run(
                partial(self.sessions.append_turn, memory.user_id, memory.session_id, turn, memory.created_at)
            )
            memory = memory.model_copy(update={"turn_index": appended.seq})
            session_turns = appended.working_turns
            if appended.previous is not None:
                before = appended.previous
                previous = (before.speaker or (before.role.value if before.role else None), before.content)
        who = speaker or (memory.role.value if memory.role else None)
        indexed = index_text(memory.content, when=memory.created_at, speaker=who, previous=previous)
        return _Placed(memory=memory, indexed=indexed, session_turns=session_turns, redacted=draft.redacted)

    async def _store(self, memory: Memory, indexed: str) -> bool:
        # No look-up first: the insert itself is conditional on the id, and checking would cost a scan on every
        # write to save an embedding only on the rare repeat.
        vector = await self._run(partial(self.embedder.embed, [indexed]))
        (memory,) = await self._enriched([memory], vector)
        return await self._run(partial(self.long_term.add, memory, indexed, vector[0]))

    async def _enriched(self, memories: Sequence[Memory], vectors: Vectors) -> list[Memory]:
        """The memories with the metadata their caller left empty filled in by the enricher, if there is one."""
        if self.enricher is None:
            return list(memories)
        try:
            found = await self._run(partial(self.enricher.enrich, [m.content for m in memories], vectors))
        except Exception as exc:
            # Extraction is a bonus: a failure in it must not cost the caller the memory itself. Only the error's
            # type is logged: a library's message or traceback may quote the memory's text.
            logger.warning("metadata extraction failed (%s); storing without it", type(exc).__name__)
            return list(memories)
        return [_with_enrichment(m, e) for m, e in zip(memories, found, strict=True)]

    async def recall(
        self,
        user_id: str,
        query: str,
        *,
        session_id: str | None = None,
        top_k: int | None = None,
        min_score: float | None = None,
        filters: RecallFilters | None = None,
        agent_id: str | None = None,
        scope: RecallScope = "both",
    ) -> RecallResult:
        """Return the session's working memory and the user's long-term memories closest to `query`.

        `agent_id` is the agent asking: it sees the user's shared memories and its own private ones only.
        `scope` chooses personal memory (working and long-term), knowledge (ingested documents) or both.
        """
        key = self.user_key(user_id)
        _check_optional_id("session_id", session_id)
        query = query.strip()
        if not query:
            raise InvalidInput("query", "must contain text; it is empty or only whitespace.")
        if len(query) > MAX_QUERY_CHARS:
            raise InvalidInput("query", f"is {len(query)} characters; the limit is {MAX_QUERY_CHARS}.")
        top_k = self.policy.default_top_k if top_k is None else top_k
        if not (1 <= top_k <= self.policy.max_top_k):
            raise InvalidInput("top_k", f"must be between 1 and {self.policy.max_top_k}, got {top_k}.")
        if min_score is not None and not (-1.0 <= min_score <= 1.0):
            raise InvalidInput("min_score", f"must be between -1 and 1, got {min_score}.")
        filters = self._check_filters(filters or RecallFilters(), agent_id)
        if scope == "knowledge":
            found, dropped = await self._knowledge_hits(key, query, await self._embed_query(query), top_k, min_score)
            return RecallResult(working=[], memories=[], knowledge=found, dropped_below_min_score=dropped)

        working: list[WorkingTurn] = []
        if session_id is not None:
            started = time.perf_counter()
            turns = await self._run(partial(self.sessions.working, key, session_id))
            working = [WorkingTurn.model_validate(t.model_dump()) for t in turns if _turn_admitted(filters, t)]
            self.metrics.observe_recall_tier("working", time.perf_counter() - started)
        started = time.perf_counter()
        ranking = self.ranking
        limit = max(ranking.candidates, top_k)
        candidates: dict[str, list[Candidate]] = {"semantic": [], "keyword": []}
        failed: list[EngramError] = []

        async def search_keywords() -> None:
            try:
                candidates["keyword"] = await self._run(
                    partial(self.long_term.keyword_search, key, query, filters, limit)
                )
            except EngramError as exc:  # raised after the task group, as itself rather than in an exception group
                failed.append(exc)

        async with anyio.create_task_group() as group:
            # The keyword search needs no query vector: it runs on the second core while the query is embedded and
            # searched by meaning (LanceDB's searches release the GIL). In-process at 10k memories: 33 ms -> 28.
            if ranking.fusion != "vector":
                group.start_soon(search_keywords)
            vector = await self._embed_query(query)
            if ranking.fusion != "keyword":
                try:
                    candidates["semantic"] = await self._run(
                        partial(self.long_term.vector_search, key, vector, filters, limit)
                    )
                except EngramError as exc:
                    failed.append(exc)
        unavailable: list[str] = []
        if failed:
            # With scope 'both', damaged long-term memory still leaves working memory and knowledge to answer.
            if scope != "both" or not isinstance(failed[0], TierDamaged):
                raise failed[0]
            unavailable.append(str(failed[0]))
            candidates = {"semantic": [], "keyword": []}
        semantic, keyword = candidates["semantic"], candidates["keyword"]
        kept: list[MemoryHit] = []
        dropped = 0
        # The threshold applies before the cut, so weak hits make room for passing ones further down.
        for hit in fuse(semantic, keyword, vector, ranking, self._clock()):
            if len(kept) == top_k:
                break
            if min_score is not None and hit.scores.similarity < min_score:
                dropped += 1
            else:
                kept.append(hit.model_copy(update={"memory": hit.memory.model_copy(update={"user_id": user_id})}))
        self.metrics.observe_recall_tier("long_term", time.perf_counter() - started)
        self.metrics.observe_recall_results(
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

    async def _knowledge_hits(
        self, key: str, query: str, vector: Vectors, top_k: int, min_score: float | None
    ) -> tuple[list[KnowledgeHit], int]:
        """Global and the user's own knowledge chunks matching the query (none without knowledge memory)."""
        if self.knowledge is None:
            return [], 0
        return await self.knowledge.search(key, query, vector, top_k, min_score)

    async def _embed_query(self, query: str) -> Vectors:
        """The query's vector.

        Not cached: a query is the user's data too, and a cache of them on disk had to be keyed, scrubbed on
        erasure and rebuilt when damaged, to save one query embedding (1-3 ms with ONNX) on a repeat.
        """
        vector: Vectors = (await self._run(partial(self.embedder.embed, [query])))[0]
        return vector

    def _check_filters(self, filters: RecallFilters, viewer: str | None) -> RecallFilters:
        """Check caller-chosen filter values (naming the tool argument) and set who is asking."""
        _check_optional_id("agent_id", viewer)
        for name, agents in (("from_agents", filters.agents), ("exclude_agents", filters.exclude_agents)):
            if len(agents) > MAX_FILTER_AGENTS:
                raise InvalidInput(name, f"at most {MAX_FILTER_AGENTS} agents are accepted, got {len(agents)}.")
            for agent in agents:
                check_id(name, agent)
        _check_optional_id("from_session", filters.session_id)
        if filters.min_importance is not None and not (0.0 <= filters.min_importance <= 1.0):
            raise InvalidInput("min_importance", f"must be between 0 and 1, got {filters.min_importance}.")
        since, until = _as_utc("since", filters.since), _as_utc("until", filters.until)
        if since is not None and until is not None and since >= until:
            raise InvalidInput("since", f"must be earlier than 'until' ({since.isoformat()} >= {until.isoformat()}).")
        return filters.model_copy(
            update={
                "since": since,
                "until": until,
                "tags_any": _check_tags("tags", filters.tags_any),
                "tags_all": _check_tags("tags_all", filters.tags_all),
                "entity": _check_label("entity", filters.entity),
                "category": _check_label("category", filters.category),
                "viewer_agent": viewer,
            }
        )

    async def summarize_session(
        self,
        user_id: str,
        session_id: str,
        *,
        keep_recent: int | None = None,
        summary: str | None = None,
        progress: Progress | None = None,
        agent_id: str | None = None,
    ) -> SessionSummary:
        """Replace the session's older turns with a summary (the caller's, or an extractive one) kept long-term.

        Only turns the asking `agent_id` may see are summarised; if any of them is private to it, so is the summary.
        """
        key = self.user_key(user_id)
        check_id("session_id", session_id)
        visible = RecallFilters(viewer_agent=_check_optional_id("agent_id", agent_id))
        keep = self.policy.keep_recent_default if keep_recent is None else keep_recent
        if not (0 <= keep <= self.policy.max_keep_recent):
            raise InvalidInput("keep_recent", f"must be between 0 and {self.policy.max_keep_recent}, got {keep}.")
        summary_text = None if summary is None else self._redact("summary", self._check_content("summary", summary), {})

        transcript = await self._run(partial(self.sessions.transcript, key, session_id))
        working = await self._run(partial(self.sessions.working, key, session_id))
        verbatim = transcript if transcript is not None else [t for t in working if not t.is_summary]
        if not verbatim:
            raise InvalidInput(
                "session_id", f"no turns are stored for session {quoted(session_id)} of this user (unknown or expired)."
            )
        start = await self._run(partial(self.sessions.summarized_until, key, session_id))
        cutoff = verbatim[-1].seq + 1 - keep
        older = [t for t in verbatim if start <= t.seq < cutoff]
        if not older:
            raise NothingToSummarize(
                f"Session {quoted(session_id)} has no turns older than the {keep} to keep verbatim that are not "
                "already summarised. Call it again after more turns, or with a smaller keep_recent."
            )
        if progress:
            await progress(0, 3, f"Summarising {len(older)} older turns")

        method: str
        if summary_text is not None:
            method = "caller"
        else:
            method = "extractive"
            # Earlier summary lines already carry their speakers ("user: ..."), so they get no label of their own.
            previous = [("", t.content) for t in working if t.is_summary]
            pieces = previous + [
                (t.role.value if t.role else "", t.content) for t in older if _turn_admitted(visible, t)
            ]
            summary_text = await self._run(
                partial(extractive_summary, pieces, self.embedder, self.policy.summary_max_chars)
            )
        if progress:
            await progress(1, 3, "Storing the summary in long-term memory")

        now = self._clock()
        replaced = list(dict.fromkeys(t.memory_id for t in older))
        private = any(t.visibility is Visibility.PRIVATE for t in older if _turn_admitted(visible, t))
        memory = Memory(
            id=memory_id(key, summary_text),
            user_id=key,
            agent_id=agent_id,
            visibility=Visibility.PRIVATE if private else Visibility.SHARED,
            session_id=session_id,
            kind=Kind.SUMMARY,
            content=summary_text,
            created_at=now,
            links=replaced,
            metadata={"summarized_turns": len(older), "method": method},
        )
        await self._store(memory, index_text(summary_text, when=now, speaker="summary"))
        summary_turn = Turn(
            memory_id=memory.id,
            seq=cutoff,
            role=None,
            content=summary_text,
            created_at=now,
            agent_id=agent_id,
            visibility=memory.visibility,
            is_summary=True,
        )
        await self._run(partial(self.sessions.apply_summary, key, session_id, summary_turn, cutoff, now))
        if progress:
            await progress(3, 3, "Session summarised")
        logger.info("summarised %d turns of a session (%s)", len(older), method)
        return SessionSummary(
            summary_id=memory.id,
            summary=summary_text,
            method="caller" if method == "caller" else "extractive",
            summarized_turns=len(older),
            kept_turns=sum(1 for t in verbatim if t.seq >= cutoff),
            replaced_ids=replaced,
        )

    async def forget_user(self, user_id: str, *, confirm: bool) -> ForgetReceipt:
        """Erase everything held for the user in every tier; refuses without `confirm=True`."""
        key = self.user_key(user_id)
        if not confirm:
            raise ConfirmationRequired(
                # No user id in the message: tool errors are logged, and logs must not carry raw ids.
                "forget_user erases every memory of this user in every tier and cannot be undone; "
                "call it again with confirm=true once the user has asked for this."
            )
        long_term = working = short_term = knowledge = 0
        # Other servers on the data directory keep writing meanwhile: their commits can leave the erasure's files
        # (a write-ahead log another process was reading, say) for a moment. Erasing again once they settled is
        # cheap and idempotent, so a few passes turn that race into a success.
        for attempt in range(1, ERASURE_PASSES + 1):
            long_term += await self._run(partial(self.long_term.delete_user, key))
            working_now, short_term_now = await self._run(partial(self.sessions.forget_user, key))
            working, short_term = working + working_now, short_term + short_term_now
            if self.knowledge is not None:
                knowledge += await self.knowledge.forget_owner(key)
            left = await self._traces_of(key)
            if not left:
                break
            # Places only (store, file, version): never the user's id or content.
            logger.info("erasure pass %d of %d left %s", attempt, ERASURE_PASSES, "; ".join(left))
            if attempt < ERASURE_PASSES:
                await anyio.sleep(0.1 * attempt)  # let the other servers' commits and readers move on
        else:
            logger.warning("erasure incomplete after %d passes: %s", ERASURE_PASSES, "; ".join(left))
            raise ErasureIncomplete(
                f"Erasure ran {ERASURE_PASSES} times but traces of the user remain: {'; '.join(left)}. Call "
                "forget_user again; if they persist, stop the servers on this data directory and delete or "
                "restore the files named (the server log lists them too)."
            )
        logger.info("erased a user: %d long-term, %d working, %d short-term", long_term, working, short_term)
        return ForgetReceipt(
            user_id=user_id,
            erased=True,
            working=working,
            short_term=short_term,
            long_term=long_term,
            knowledge=knowledge,
            finished_at=self._clock(),
            verification=(
                "no row, older table version, index entry or file byte of the user's pseudonymous id remains in "
                "long-term or knowledge memory (compacted, indexes rebuilt, old versions removed); no "
                "session-cache entry or file byte of it remains (secure delete, write-ahead log truncated)"
            ),
        )

    async def _traces_of(self, key: str) -> list[str]:
        """Every trace of the user left in any tier, as 'tier: place' (never the user's id or content)."""
        left = [f"long-term store: {trace}" for trace in await self._run(partial(self.long_term.traces_of, key))]
        left += [f"session cache: {trace}" for trace in await self._run(partial(self.sessions.traces_of, key))]
        if self.knowledge is not None:
            left += [f"knowledge store: {trace}" for trace in await self.knowledge.traces_of_owner(key)]
        return left

    async def forget_memory(self, user_id: str, memory_id_: str, *, agent_id: str | None = None) -> MemoryForgotten:
        """Delete one of the user's memories from long-term memory and from the user's session transcripts.

        Another agent's private memory is treated as absent: an agent cannot delete what it may not see.
        """
        key = self.user_key(user_id)
        _check_memory_id(memory_id_)
        await self._visible_memory(key, memory_id_, agent_id, required=False)
        deleted = await self._run(partial(self.long_term.delete, key, [memory_id_]))
        removed_turns = await self._run(partial(self.sessions.remove_memory, key, memory_id_))
        if not deleted and not removed_turns:
            raise InvalidInput("memory_id", f"no memory {quoted(memory_id_)} is held for this user.")
        return MemoryForgotten(memory_id=memory_id_, long_term=deleted, session_turns=removed_turns)

    async def sessions_of(self, user_id: str) -> list[SessionInfo]:
        """The user's recent sessions (short-term memory), most recently active first."""
        key = self.user_key(user_id)
        return await self._run(partial(self.sessions.sessions, key))

    async def transcript(self, user_id: str, session_id: str, *, agent_id: str | None = None) -> SessionTranscript:
        """A session's working memory, or its short-term transcript once working memory has expired.

        Turns private to another agent than `agent_id` are left out.
        """
        key = self.user_key(user_id)
        check_id("session_id", session_id)
        visible = RecallFilters(viewer_agent=_check_optional_id("agent_id", agent_id))
        working = await self._run(partial(self.sessions.working, key, session_id))
        if working:
            turns = [t for t in working if _turn_admitted(visible, t)]
            return SessionTranscript(session_id=session_id, tier="working", turns=turns)
        transcript = await self._run(partial(self.sessions.transcript, key, session_id))
        if transcript is None:
            raise InvalidInput(
                "session_id", f"no session {quoted(session_id)} is held for this user (unknown or expired)."
            )
        turns = [t for t in transcript if _turn_admitted(visible, t)]
        return SessionTranscript(session_id=session_id, tier="short_term", turns=turns)

    async def recent_memories(self, user_id: str, limit: int = 20, *, agent_id: str | None = None) -> list[Memory]:
        """The user's most recently stored long-term memories that `agent_id` may see, newest first."""
        return (await self.list_memories(user_id, limit=limit, agent_id=agent_id)).memories

    async def list_memories(
        self,
        user_id: str,
        *,
        filters: RecallFilters | None = None,
        limit: int = 20,
        offset: int = 0,
        agent_id: str | None = None,
    ) -> MemoryPage:
        """A page of the user's memories matching `filters`, newest first, as the asking `agent_id` may see them."""
        key = self.user_key(user_id)
        if not (1 <= limit <= MAX_PAGE):
            raise InvalidInput("limit", f"must be between 1 and {MAX_PAGE}, got {limit}.")
        if not (0 <= offset <= MAX_OFFSET):
            raise InvalidInput(
                "offset", f"must be between 0 and {MAX_OFFSET}, got {offset}; narrow the filters instead."
            )
        checked = self._check_filters(filters or RecallFilters(), agent_id)
        # One extra row tells whether another page follows without a separate count.
        rows = await self._run(partial(self.long_term.list_memories, key, checked, limit + 1, offset))
        memories = [m.model_copy(update={"user_id": user_id}) for m in rows[:limit]]
        return MemoryPage(memories=memories, next_offset=offset + limit if len(rows) > limit else None)

    async def agents_of(self, user_id: str, *, agent_id: str | None = None) -> list[AgentActivity]:
        """The agents that wrote the user's memories, with counts; other agents' private memories count as 0."""
        key = self.user_key(user_id)
        viewer = _check_optional_id("agent_id", agent_id)
        activity = await self._run(partial(self.long_term.agent_activity, key))
        return [
            a if a.agent_id == viewer or not a.private else a.model_copy(update={"private": 0})
            for a in activity
            if a.agent_id == viewer or a.shared
        ]

    async def _visible_memory(
        self, key: str, memory_id_: str, agent_id: str | None, *, required: bool
    ) -> Memory | None:
        """The user's memory `memory_id_` if the asking agent may see it; else None, or InvalidInput if `required`."""
        found = await self._run(partial(self.long_term.get, key, [memory_id_]))
        visible = RecallFilters(viewer_agent=_check_optional_id("agent_id", agent_id))
        if not found or not visible.admits(found[0].agent_id, found[0].visibility):
            # Another agent's private memory gets the same answer as a missing one: its existence is private too.
            if required or found:
                raise InvalidInput("memory_id", f"no memory {quoted(memory_id_)} is held for this user.")
            return None
        return found[0]

    async def update_memory(
        self,
        user_id: str,
        memory_id_: str,
        *,
        agent_id: str | None = None,
        content: str | None = None,
        tags: Sequence[str] | None = None,
        category: str | None = None,
        importance: float | None = None,
        resolved: bool | None = None,
        visibility: Visibility | None = None,
    ) -> MemoryUpdated:
        """Change a memory's metadata or content, keeping created_at and setting updated_at.

        A new content is redacted, re-embedded and re-indexed, and gets its content-addressed id (returned, with
        the old one). Unset arguments leave the field as it is; an empty tag list clears the tags.
        """
        key = self.user_key(user_id)
        _check_memory_id(memory_id_)
        if all(v is None for v in (content, tags, category, importance, resolved, visibility)):
            raise InvalidInput(
                "update", "nothing to change: give content, tags, category, importance, resolved or visibility."
            )
        current = await self._visible_memory(key, memory_id_, agent_id, required=True)
        assert current is not None
        changes: dict[str, object] = {"updated_at": self._clock()}
        if tags is not None:
            changes["tags"] = _check_tags("tags", tags)
        if category is not None:
            changes["category"] = _check_label("category", category)
        if importance is not None:
            if not (0.0 <= importance <= 1.0):
                raise InvalidInput("importance", f"must be between 0 and 1, got {importance}.")
            changes["importance"] = importance
        if resolved is not None:
            changes["resolved"] = resolved
        if visibility is not None:
            visibility = Visibility(visibility)
            if visibility != current.visibility and (current.agent_id is None or current.agent_id != agent_id):
                raise InvalidInput(
                    "visibility", "only the agent that wrote a memory can change its visibility (pass its agent_id)."
                )
            changes["visibility"] = visibility
        indexed: str | None = None
        vector: Vectors | None = None
        if content is not None:
            text = self._redact("content", self._check_content("content", content), {})
            new_id = memory_id(key, text)
            clash: list[Memory] = (
                [] if new_id == current.id else await self._run(partial(self.long_term.get, key, [new_id]))
            )
            if clash:
                raise InvalidInput(
                    "content", f"the same content is already stored as memory {new_id!r}; forget this one instead."
                )
            changes.update(id=new_id, content=text)
            speaker = current.metadata.get("speaker")
            who = speaker if isinstance(speaker, str) else (current.role.value if current.role else None)
            indexed = index_text(text, when=current.created_at, speaker=who)
            vector = (await self._run(partial(self.embedder.embed, [indexed])))[0]
        updated = current.model_copy(update=changes)
        if not await self._run(partial(self.long_term.replace, key, current.id, updated, indexed, vector)):
            raise InvalidInput("memory_id", f"no memory {quoted(memory_id_)} is held for this user.")
        previous = current.id if updated.id != current.id else None
        return MemoryUpdated(
            id=updated.id, previous_id=previous, memory=updated.model_copy(update={"user_id": user_id})
        )

    async def purge(self) -> PurgeReport:
        """Apply retention: delete long-term memories past their age limit and expired session entries."""
        now = self._clock()
        deleted = 0
        for category, age in self.policy.retention_by_category.items():
            deleted += await self._run(partial(self.long_term.delete_older_than, now - age, category))
        if self.policy.retention is not None:
            exclude = list(self.policy.retention_by_category)
            deleted += await self._run(
                partial(self.long_term.delete_older_than, now - self.policy.retention, None, exclude)
            )
        expired = await self._run(self.sessions.purge_expired)
        if deleted or expired:
            logger.info("retention purge: %d long-term memories, %d expired session entries", deleted, expired)
        return PurgeReport(long_term=deleted, expired_session_entries=expired, finished_at=self._clock())

    async def tier_stats(self) -> dict[str, TierStats]:
        """Items and bytes on disk of each tier; a damaged tier is reported as such instead of failing the rest."""
        stores: dict[str, tuple[str, Callable[[], int], Callable[[], int]]] = {
            "long_term": ("long-term", self.long_term.count, self.long_term.bytes_on_disk),
            "sessions": ("session", self.sessions.count, self.sessions.bytes_on_disk),
        }
        if self.knowledge is not None:
            stores["knowledge"] = ("knowledge", self.knowledge.store.count, self.knowledge.store.bytes_on_disk)
        stats: dict[str, TierStats] = {}
        for name, (tier, count, size) in stores.items():
            try:
                stats[name] = TierStats(items=await self._run(count), bytes_on_disk=await self._run(size))
            except TierDamaged as exc:
                stats[name] = TierStats(items=0, bytes_on_disk=0, status="damaged", damage=str(exc))
                continue
            damage = self.health.damaged().get(tier)
            if damage is not None:
                stats[name] = stats[name].model_copy(update={"status": "damaged", "damage": str(damage)})
        return stats

    def warm_up(self) -> None:
        """Build what may wait until the service answers (the metadata extractors); blocking, off the request path."""
        warm = getattr(self.enricher, "warm_up", None)
        if callable(warm):
            warm()

    def close(self) -> None:
        """Close the stores."""
        if self.knowledge is not None:
            self.knowledge.close()
        self.long_term.close()
        self.sessions.close()
