"""Writing memories: check a draft, place it in its session, embed, enrich and store it once; update one later."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from engram.core.context import MemoryContext
from engram.core.errors import InvalidInput, quoted
from engram.core.identity import UserKey
from engram.core.indexing import index_text
from engram.core.models import (
    MAX_TAGS,
    Kind,
    Memory,
    MemoryUpdated,
    MetadataValue,
    RememberItem,
    RememberResult,
    Role,
    Sentiment,
    Turn,
    Visibility,
)
from engram.core.passages import passages
from engram.core.ports import Enrichment, Vectors
from engram.core.validation import (
    as_utc,
    check_entities,
    check_label,
    check_memory_id,
    check_metadata,
    check_optional_id,
    check_tags,
    check_unit,
    memory_id,
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
    """remember, remember_many and update_memory: every way a memory enters or changes in long-term memory."""

    def __init__(self, context: MemoryContext) -> None:
        self._ctx = context

    async def remember(
        self,
        user_id: str,
        content: str,
        *,
        session_id: str | None = None,
        agent_id: str | None = None,
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
    ) -> RememberResult:
        """Store `content` for the user in long-term memory (once), and as a turn of the session if given.

        `occurred_at` dates the memory when importing history (default: now). A `speaker` entry in `metadata`
        names who said it; it is indexed with the content so questions about that person find it.
        """
        # Built without validation: draft() checks every field and names it in its own error.
        item = RememberItem.model_construct(
            content=content,
            session_id=session_id,
            project=project,
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
        placed = await self._place(self._draft(user_id, agent_id, item, ""))
        created = await self.store(placed.memory, placed.indexed, placed.passages)
        self._ctx.metrics.observe_write(placed.key, 1, int(created))
        return RememberResult(
            id=placed.memory.id, created=created, session_turns=placed.session_turns, redacted=placed.redacted
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
                await self._store_passages(p.key, p.memory.id, p.passages)
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
        """Check one memory's fields (naming them with `where` as prefix) without touching any store."""
        ctx = self._ctx
        key = ctx.user_key(user_id)
        check_optional_id("agent_id", agent_id)
        check_optional_id(f"{where}session_id", item.session_id)
        visibility = Visibility(item.visibility)
        if visibility is Visibility.PRIVATE and agent_id is None:
            raise InvalidInput(
                f"{where}visibility", "'private' keeps a memory to the agent that wrote it: pass agent_id as well."
            )
        redacted: dict[str, int] = {}
        text = ctx.content(f"{where}content", item.content, redacted)
        metadata = {
            name: ctx.redact(f"{where}metadata", value, redacted) if isinstance(value, str) else value
            for name, value in check_metadata(item.metadata, f"{where}metadata").items()
        }
        speaker_value = metadata.get("speaker")
        project = check_optional_id(f"{where}project", item.project)
        memory = Memory(
            id=memory_id(key, text, project),
            user_id=key,
            agent_id=agent_id,
            visibility=visibility,
            session_id=item.session_id,
            project=project,
            role=item.role or (Role.USER if item.session_id is not None else None),
            kind=item.kind or (Kind.TURN if item.session_id is not None else Kind.FACT),
            content=text,
            created_at=as_utc(f"{where}occurred_at", item.occurred_at) or ctx.clock(),
            tags=check_tags(f"{where}tags", item.tags),
            category=check_label(f"{where}category", item.category),
            entities=check_entities(f"{where}entities", item.entities),
            sentiment=None if item.sentiment is None else Sentiment(item.sentiment),
            resolved=item.resolved,
            metadata=metadata,
            importance=check_unit(f"{where}importance", item.importance),
        )
        speaker = (speaker_value.strip() or None) if isinstance(speaker_value, str) else None
        return _Draft(key=key, memory=memory, speaker=speaker, redacted=redacted, dated=item.occurred_at is not None)

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
            appended = await self._ctx.run(
                partial(self._ctx.sessions.append_turn, draft.key, memory.session_id, turn, memory.created_at)
            )
            memory = memory.model_copy(update={"turn_index": appended.seq})
            session_turns = appended.working_turns
            if appended.previous is not None:
                before = appended.previous
                previous = (before.speaker or (before.role.value if before.role else None), before.content)
                if not draft.dated and before.created_at < memory.created_at - self._ctx.policy.live_session_gap:
                    # A turn logged into a session of past conversation without its own date happened then,
                    # not today: dated today it would answer "what did I say in May?" wrongly.
                    memory = memory.model_copy(update={"created_at": before.created_at})
        who = speaker or (memory.role.value if memory.role else None)
        indexed = index_text(memory.content, when=memory.created_at, speaker=who, previous=previous)
        return _Placed(
            key=draft.key,
            memory=memory,
            indexed=indexed,
            session_turns=session_turns,
            redacted=draft.redacted,
            passages=_indexed_passages(memory.content, memory.created_at, who),
        )

    async def store(self, memory: Memory, indexed: str, windows: Sequence[str] = ()) -> bool:
        """Embed, enrich and insert one memory (and a long one's later `windows`); True if it was new."""
        # No look-up first: the insert itself is conditional on the id, and checking would cost a scan on every
        # write to save an embedding only on the rare repeat.
        ctx = self._ctx
        vector = await ctx.run(partial(ctx.embedder.embed, [indexed]))
        (memory,) = await self._enriched([memory], vector)
        created = await ctx.run(partial(ctx.long_term.add, memory, indexed, vector[0]))
        if created and windows:
            await self._store_passages(UserKey(memory.user_id), memory.id, windows)
        return created

    async def _store_passages(self, key: UserKey, memory_id_: str, windows: Sequence[str]) -> None:
        """Embed a long memory's later windows and store them as its passages."""
        ctx = self._ctx
        vectors = await ctx.run(partial(ctx.embedder.embed, list(windows)))
        await ctx.run(partial(ctx.long_term.add_passages, key, memory_id_, list(windows), vectors))

    async def _enriched(self, memories: Sequence[Memory], vectors: Vectors) -> list[Memory]:
        """The memories with the metadata their caller left empty filled in by the enricher, if there is one."""
        enricher = self._ctx.enricher
        if enricher is None:
            return list(memories)
        try:
            found = await self._ctx.run(partial(enricher.enrich, [m.content for m in memories], vectors))
        except Exception as exc:
            # Extraction is a bonus: a failure in it must not cost the caller the memory itself. Only the error's
            # type is logged: a library's message or traceback may quote the memory's text.
            logger.warning("metadata extraction failed (%s); storing without it", type(exc).__name__)
            return list(memories)
        return [_with_enrichment(m, e) for m, e in zip(memories, found, strict=True)]

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
        ctx = self._ctx
        key = ctx.user_key(user_id)
        check_memory_id(memory_id_)
        if all(v is None for v in (content, tags, category, importance, resolved, visibility)):
            raise InvalidInput(
                "update", "nothing to change: give content, tags, category, importance, resolved or visibility."
            )
        current = await ctx.visible_memory(key, memory_id_, agent_id, required=True)
        assert current is not None
        changes = self._metadata_changes(current, agent_id, tags, category, importance, resolved, visibility)
        indexed: str | None = None
        vector: Vectors | None = None
        if content is not None:
            text = ctx.content("content", content, {})
            new_id = memory_id(key, text, current.project)
            clash: list[Memory] = (
                [] if new_id == current.id else await ctx.run(partial(ctx.long_term.get, key, [new_id]))
            )
            if clash:
                raise InvalidInput(
                    "content", f"the same content is already stored as memory {new_id!r}; forget this one instead."
                )
            changes.update(id=new_id, content=text)
            speaker = current.metadata.get("speaker")
            who = speaker if isinstance(speaker, str) else (current.role.value if current.role else None)
            indexed = index_text(text, when=current.created_at, speaker=who)
            vector = (await ctx.run(partial(ctx.embedder.embed, [indexed])))[0]
        updated = current.model_copy(update=changes)
        if not await ctx.run(partial(ctx.long_term.replace, key, current.id, updated, indexed, vector)):
            raise InvalidInput("memory_id", f"no memory {quoted(memory_id_)} is held for this user.")
        if content is not None and (windows := _indexed_passages(updated.content, current.created_at, who)):
            await self._store_passages(key, updated.id, windows)
        previous = current.id if updated.id != current.id else None
        return MemoryUpdated(
            id=updated.id, previous_id=previous, memory=updated.model_copy(update={"user_id": user_id})
        )

    def _metadata_changes(
        self,
        current: Memory,
        agent_id: str | None,
        tags: Sequence[str] | None,
        category: str | None,
        importance: float | None,
        resolved: bool | None,
        visibility: Visibility | None,
    ) -> dict[str, object]:
        """The checked metadata fields an update sets, with updated_at."""
        changes: dict[str, object] = {"updated_at": self._ctx.clock()}
        if tags is not None:
            changes["tags"] = check_tags("tags", tags)
        if category is not None:
            changes["category"] = check_label("category", category)
        if importance is not None:
            changes["importance"] = check_unit("importance", importance)
        if resolved is not None:
            changes["resolved"] = resolved
        if visibility is not None:
            visibility = Visibility(visibility)
            if visibility != current.visibility and (current.agent_id is None or current.agent_id != agent_id):
                raise InvalidInput(
                    "visibility", "only the agent that wrote a memory can change its visibility (pass its agent_id)."
                )
            changes["visibility"] = visibility
        return changes


def _indexed_passages(content: str, when: datetime, who: str | None) -> tuple[str, ...]:
    """A long memory's later windows, each indexed with the memory's date and speaker like the memory itself."""
    return tuple(index_text(window, when=when, speaker=who) for window in passages(content))
