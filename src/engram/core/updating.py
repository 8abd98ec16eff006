"""Changing a stored memory: its metadata, its validity in time, or its text (which gives it a new id)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import partial

from engram.core.context import MemoryContext
from engram.core.errors import InvalidInput, quoted
from engram.core.identity import UserKey
from engram.core.indexing import index_text
from engram.core.models import Memory, MemoryUpdated, Visibility
from engram.core.passages import indexed_passages, store_passages
from engram.core.ports import Vectors
from engram.core.supersession import link_successor, successor_of, validity_changes
from engram.core.validation import as_utc, check_label, check_memory_id, check_tags, check_unit, memory_id

#: What `update_memory` can change.
_UPDATABLE = (
    "content",
    "tags",
    "category",
    "importance",
    "resolved",
    "visibility",
    "valid_until",
    "superseded_by",
)


class MemoryUpdater:
    """update_memory: a memory's fields change in place, keeping when it was created."""

    def __init__(self, context: MemoryContext) -> None:
        self._ctx = context

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
        valid_until: datetime | None = None,
        superseded_by: str | None = None,
    ) -> MemoryUpdated:
        """Change a memory's metadata or content, keeping created_at and setting updated_at.

        A new content is redacted, re-embedded and re-indexed, and gets its content-addressed id (returned, with
        the old one). Unset arguments leave the field as it is; an empty tag list clears the tags. `valid_until`
        closes the memory (it no longer holds from then); `superseded_by` names the newer memory that replaces it
        (closing it when that one starts, unless `valid_until` is earlier).
        """
        ctx = self._ctx
        key = ctx.user_key(user_id)
        check_memory_id(memory_id_)
        given = (content, tags, category, importance, resolved, visibility, valid_until, superseded_by)
        if all(v is None for v in given):
            raise InvalidInput("update", f"nothing to change: give one of {', '.join(_UPDATABLE)}.")
        current = await ctx.visible_memory(key, memory_id_, agent_id, required=True)
        assert current is not None
        successor = await successor_of(ctx, key, current, superseded_by, agent_id)
        changes = self._metadata_changes(current, agent_id, tags, category, importance, resolved, visibility)
        changes.update(validity_changes(current, as_utc("valid_until", valid_until), successor))
        indexed: str | None = None
        vector: Vectors | None = None
        windows: tuple[str, ...] = ()
        if content is not None:
            indexed, vector, windows = await self._new_content(key, current, content, changes)
        updated = current.model_copy(update=changes)
        if not await ctx.run(partial(ctx.long_term.replace, key, current.id, updated, indexed, vector)):
            raise InvalidInput("memory_id", f"no memory {quoted(memory_id_)} is held for this user.")
        if windows:
            await store_passages(ctx, key, updated.id, windows)
        if successor is not None:
            await link_successor(ctx, key, successor, [updated])
        previous = current.id if updated.id != current.id else None
        return MemoryUpdated(
            id=updated.id, previous_id=previous, memory=updated.model_copy(update={"user_id": user_id})
        )

    async def _new_content(
        self, key: UserKey, current: Memory, content: str, changes: dict[str, object]
    ) -> tuple[str, Vectors, tuple[str, ...]]:
        """Record a new content's id and text in `changes`; return its index text, vector and passages."""
        ctx = self._ctx
        text = ctx.content("content", content, {})
        new_id = memory_id(key, text, current.project)
        clash: list[Memory] = [] if new_id == current.id else await ctx.run(partial(ctx.long_term.get, key, [new_id]))
        if clash:
            raise InvalidInput(
                "content", f"the same content is already stored as memory {new_id!r}; forget this one instead."
            )
        changes.update(id=new_id, content=text)
        speaker = current.metadata.get("speaker")
        who = speaker if isinstance(speaker, str) else (current.role.value if current.role else None)
        indexed = index_text(text, when=current.created_at, speaker=who)
        vector = (await ctx.run(partial(ctx.embedder.embed, [indexed])))[0]
        return indexed, vector, indexed_passages(text, current.created_at, who)

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
