"""Writing memories: check a draft, place it in its session, embed, enrich and store it once; update one later."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial

from engram.core.context import MemoryContext
from engram.core.errors import InvalidInput
from engram.core.identity import UserKey
from engram.core.indexing import index_text
from engram.core.limits import MAX_TAGS
from engram.core.models import (
    Kind,
    Memory,
    MetadataValue,
    RememberItem,
    RememberResult,
    Role,
    Sentiment,
    Turn,
    Visibility,
)
from engram.core.passages import indexed_passages, store_passages
from engram.core.ports import Enrichment, Vectors
from engram.core.supersession import (
    SuggestionPolicy,
    check_order,
    close_all,
    suggest,
    superseded_memories,
    valid_from,
)
from engram.core.validation import (
    check_optional_id,
    memory_id,
    parsed,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Draft:
    key: UserKey
    memory: Memory
    speaker: str | None
    redacted: dict[str, int]
    #: Whether the caller said when it happened (else it is dated now, or by its session: see _place).
    dated: bool = True


@dataclass(frozen=True)
class _Placed:
    key: UserKey
    memory: Memory
    indexed: str
    session_turns: int | None
    redacted: dict[str, int]
    #: A long memory's later windows, as indexed (its own vector covers the first; see core/passages.py).
    passages: tuple[str, ...] = ()


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


class MemoryWriter:
    """remember and remember_many: every way a memory enters long-term memory (update_memory: core/updating.py)."""

    def __init__(self, context: MemoryContext) -> None:
        self._ctx = context
        self.suggestions = SuggestionPolicy()

    async def remember(
        self,
        user_id: str,
        content: str,
        *,
        agent_id: str | None = None,
        session_id: str | None = None,
        project: str | None = None,
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
        supersedes: Sequence[str] | None = None,
    ) -> RememberResult:
        """`remember_item` for Python callers (CLI, tests): the fields are parsed into a RememberItem first."""
        fields = {
            "content": content,
            "session_id": session_id,
            "project": project,
            "role": role,
            "kind": kind,
            "tags": tags,
            "category": category,
            "metadata": metadata,
            "importance": importance,
            "occurred_at": occurred_at,
            "visibility": visibility,
            "entities": entities,
            "sentiment": sentiment,
            "resolved": resolved,
            "supersedes": supersedes,
        }
        return await self.remember_item(user_id, parsed(RememberItem, fields), agent_id=agent_id)

    async def remember_item(self, user_id: str, item: RememberItem, *, agent_id: str | None = None) -> RememberResult:
        """Store the item for the user in long-term memory (once), and as a turn of its session if it has one.

        `occurred_at` dates the memory when importing history (default: now); it holds from then. A `speaker`
        entry in `metadata` names who said it; it is indexed with the content so questions about that person find
        it. `supersedes` names older memories this one replaces: they stay readable but hold only until it starts.
        A fact is answered with the current memories that look like older versions of it, for the caller to judge.
        """
        ctx = self._ctx
        draft = self._draft(user_id, agent_id, item, "")
        # Checked before anything is stored: a bad id stores nothing.
        olds = await superseded_memories(ctx, draft.key, list(item.supersedes or []), agent_id)
        check_order(valid_from(draft.memory), olds)
        if olds:
            draft = replace(draft, memory=draft.memory.model_copy(update={"supersedes": [o.id for o in olds]}))
        # Placing the turn in its session, embedding, extracting and storing run in one worker-thread hop: each
        # hop costs a thread hand-off and an event-loop wake-up, a tenth of a turn's CPU over four hops (#15).
        placed, (created, memory, vector) = await ctx.run(partial(self._place_and_write, draft))
        if created and placed.passages:
            await store_passages(ctx, placed.key, placed.memory.id, placed.passages)
        ctx.metrics.observe_write(placed.key, 1, int(created))
        memory = await close_all(ctx, placed.key, olds, memory, created)
        candidates = await suggest(ctx, placed.key, memory, vector[0], self.suggestions)
        return RememberResult(
            id=placed.memory.id,
            created=created,
            session_turns=placed.session_turns,
            redacted=placed.redacted,
            supersede_candidates=candidates,
            superseded=[o.id for o in olds],
        )

    async def remember_many(
        self,
        user_id: str,
        items: Sequence[RememberItem],
        *,
        agent_id: str | None = None,
        skip_stored: bool = False,
    ) -> list[RememberResult]:
        """Store several memories in one call: one batched embedding and one write (for importing history).

        Every item is checked before anything is stored, so a bad item stores nothing. Items with a session are
        appended to it in the given order. With `skip_stored`, items already in long-term memory are left out
        before anything else happens, their session included (a capture that runs twice stores once).
        """
        ctx = self._ctx
        if not 1 <= len(items) <= ctx.policy.max_batch:
            raise InvalidInput("items", f"give 1 to {ctx.policy.max_batch} items, got {len(items)}.")
        for i, item in enumerate(items):
            if item.supersedes:  # closing older memories needs one remember per memory, with its suggestions
                raise InvalidInput(f"items[{i}].supersedes", "is taken by remember only, one memory at a time.")
        drafts = [self._draft(user_id, agent_id, item, f"items[{i}].") for i, item in enumerate(items)]
        if skip_stored:
            key = ctx.user_key(user_id)
            ids = list(dict.fromkeys(d.memory.id for d in drafts))
            stored = {m.id for m in await ctx.run(partial(ctx.long_term.get, key, ids))}
            drafts = [d for d in drafts if d.memory.id not in stored]
            if not drafts:
                return []
        placed = [await self._place(draft) for draft in drafts]
        vectors = await ctx.run(partial(ctx.embedder.embed, [p.indexed for p in placed]))
        memories = await self._enriched([p.memory for p in placed], vectors)
        inserted = await ctx.run(partial(ctx.long_term.add_many, memories, [p.indexed for p in placed], vectors))
        for p in placed:
            if p.passages and p.memory.id in inserted:
                await store_passages(ctx, p.key, p.memory.id, p.passages)
        ctx.metrics.observe_write(ctx.user_key(user_id), len(placed), len(inserted))
        results: list[RememberResult] = []
        for p in placed:
            created = p.memory.id in inserted
            inserted.discard(p.memory.id)  # a repeat inside the batch is not new the second time
            results.append(
                RememberResult(id=p.memory.id, created=created, session_turns=p.session_turns, redacted=p.redacted)
            )
        return results

    def _draft(self, user_id: str, agent_id: str | None, item: RememberItem, where: str) -> _Draft:
        """The memory an item makes, with what depends on settings and caller applied, without touching any store.

        The item's own fields were parsed with it; here the content limit and redaction (settings) apply, and a
        private memory needs the writing agent (`where` prefixes the argument named in an error).
        """
        ctx = self._ctx
        key = ctx.user_key(user_id)
        check_optional_id("agent_id", agent_id)
        if item.visibility is Visibility.PRIVATE and agent_id is None:
            raise InvalidInput(
                f"{where}visibility", "'private' keeps a memory to the agent that wrote it: pass agent_id as well."
            )
        redacted: dict[str, int] = {}
        text = ctx.content(f"{where}content", item.content, redacted)
        metadata = {
            name: ctx.redact(f"{where}metadata", value, redacted) if isinstance(value, str) else value
            for name, value in (item.metadata or {}).items()
        }
        # A graph observation names its subject: it is indexed with the text, as a speaker is.
        speaker_value = metadata.get("speaker", metadata.get("subject"))
        in_session = item.session_id is not None
        project = item.project
        memory = Memory(
            id=memory_id(key, text, project),
            user_id=key,
            agent_id=agent_id,
            visibility=item.visibility,
            session_id=item.session_id,
            project=project,
            role=item.role or (Role.USER if in_session else None),
            kind=item.kind or (Kind.TURN if in_session else Kind.FACT),
            content=text,
            created_at=(when := item.occurred_at or ctx.clock()),
            valid_from=when,
            tags=list(item.tags or []),
            category=item.category,
            entities=list(item.entities or []),
            sentiment=item.sentiment,
            resolved=item.resolved,
            metadata=metadata,
            importance=item.importance,
        )
        speaker = (speaker_value.strip() or None) if isinstance(speaker_value, str) else None
        return _Draft(key=key, memory=memory, speaker=speaker, redacted=redacted, dated=item.occurred_at is not None)

    async def _place(self, draft: _Draft) -> _Placed:
        """Append the memory to its session (if any) and build the text to embed and index."""
        if draft.memory.session_id is None:
            return self._placed(draft)  # nothing blocking to do
        return await self._ctx.run(partial(self._placed, draft))

    def _place_and_write(self, draft: _Draft) -> tuple[_Placed, tuple[bool, Memory, Vectors]]:
        """`_placed` then `_write` of its memory, blocking (one worker-thread hop for a single remember)."""
        placed = self._placed(draft)
        return placed, self._write(placed.memory, placed.indexed)

    def _placed(self, draft: _Draft) -> _Placed:
        """`_place`, blocking: the session append runs on the calling thread."""
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
            appended = self._ctx.sessions.append_turn(draft.key, memory.session_id, turn, memory.created_at)
            memory = memory.model_copy(update={"turn_index": appended.seq})
            session_turns = appended.working_turns
            if appended.previous is not None:
                before = appended.previous
                previous = (before.speaker or (before.role.value if before.role else None), before.content)
                if not draft.dated and before.created_at < memory.created_at - self._ctx.policy.live_session_gap:
                    # A turn logged into a session of past conversation without its own date happened then,
                    # not today: dated today it would answer "what did I say in May?" wrongly.
                    # It holds from then too, or recall as of that time would not find it.
                    memory = memory.model_copy(
                        update={"created_at": before.created_at, "valid_from": before.created_at}
                    )
        who = speaker or (memory.role.value if memory.role else None)
        indexed = index_text(memory.content, when=memory.created_at, speaker=who, previous=previous)
        return _Placed(
            key=draft.key,
            memory=memory,
            indexed=indexed,
            session_turns=session_turns,
            redacted=draft.redacted,
            passages=indexed_passages(memory.content, memory.created_at, who),
        )

    async def store(self, memory: Memory, indexed: str) -> bool:
        """Embed, enrich and insert one memory; True if it was new (the insert is conditional on its id)."""
        return (await self._store(memory, indexed))[0]

    async def _store(self, memory: Memory, indexed: str, windows: Sequence[str] = ()) -> tuple[bool, Memory, Vectors]:
        """Embed, enrich and insert one memory (and a long one's later `windows`): whether it was new, the memory
        as enriched, and its vector."""
        # No look-up first: the insert itself is conditional on the id, and checking would cost a scan on every
        # write to save an embedding only on the rare repeat.
        ctx = self._ctx
        created, memory, vector = await ctx.run(partial(self._write, memory, indexed))
        if created and windows:
            await store_passages(ctx, UserKey(memory.user_id), memory.id, windows)
        return created, memory, vector

    def _write(self, memory: Memory, indexed: str) -> tuple[bool, Memory, Vectors]:
        """Embed, enrich and insert one memory, blocking: whether it was new, the memory as enriched, its vector."""
        ctx = self._ctx
        vector = ctx.embedder.embed([indexed])
        (memory,) = self._enrich_now([memory], vector)
        return ctx.long_term.add(memory, indexed, vector[0]), memory, vector

    async def _enriched(self, memories: Sequence[Memory], vectors: Vectors) -> list[Memory]:
        """The memories with the metadata their caller left empty filled in by the enricher, if there is one."""
        return await self._ctx.run(partial(self._enrich_now, memories, vectors))

    def _enrich_now(self, memories: Sequence[Memory], vectors: Vectors) -> list[Memory]:
        """`_enriched`, blocking."""
        enricher = self._ctx.enricher
        if enricher is None:
            return list(memories)
        # A conversation turn gets no keyword tags: they serve only tag filters (recall's keyword search reads the
        # indexed text), and YAKE was most of a turn's extraction CPU (#15). A caller's own tags are kept.
        tagged = [not (m.kind is Kind.TURN and m.session_id is not None) for m in memories]
        try:
            found = enricher.enrich([m.content for m in memories], vectors, tagged=tagged)
        except Exception as exc:
            # Extraction is a bonus: a failure in it must not cost the caller the memory itself. Only the error's
            # type is logged: a library's message or traceback may quote the memory's text.
            logger.warning("metadata extraction failed (%s); storing without it", type(exc).__name__)
            return list(memories)
        return [_with_enrichment(m, e) for m, e in zip(memories, found, strict=True)]
