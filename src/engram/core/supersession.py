"""Facts that replace older ones: suggesting what a new memory may supersede, and closing what the caller says it does.

Engram has no language model to judge whether "we moved to Berlin" replaces "I live in Paris". It offers the
calling model the stored memories that look like older versions of a new one (by embedding similarity and shared
entities) and records a supersession only when the caller names it. A superseded memory stays readable (list,
`as_of` recall) with `valid_until` and `superseded_by` set, until it is erased.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from engram.core.context import MemoryContext
from engram.core.errors import InvalidInput, quoted
from engram.core.filters import MemoryFilters
from engram.core.identity import UserKey
from engram.core.limits import MAX_SUPERSEDES as MAX_SUPERSEDES
from engram.core.models import Kind, Memory, SupersedeSuggestion
from engram.core.ports import Vectors
from engram.core.validation import check_memory_id

#: At most this many suggestions in one answer (`supersedes` takes at most MAX_SUPERSEDES ids, core/limits.py).
MAX_SUGGESTIONS = 3


@dataclass(frozen=True)
class SuggestionPolicy:
    """How alike a stored memory must be to a new one to be offered as an older version of it (cosine)."""

    #: Almost the same statement: a repeat with other words, or the same attribute with another value.
    near_duplicate: float = 0.85
    #: Mentions an entity the new memory mentions, and says something similar about it.
    shared_entity: float = 0.35
    #: Says something similar without a shared entity (the subject may be implied: "I", "we").
    similar: float = 0.4


def valid_from(memory: Memory) -> datetime:
    """Since when the memory holds: its own valid_from, else when it occurred."""
    return memory.valid_from or memory.created_at


def _reason(new: Memory, old: Memory, similarity: float, policy: SuggestionPolicy) -> str | None:
    """Why `old` may be an older version of `new`, or None if it does not look like one."""
    if similarity >= policy.near_duplicate:
        return "near-duplicate"
    shared = sorted({e.casefold() for e in new.entities} & {e.casefold() for e in old.entities})
    if shared and similarity >= policy.shared_entity:
        return f"same subject: {', '.join(shared[:3])}"
    if similarity >= policy.similar:
        return "similar statement"
    return None


async def suggest(
    ctx: MemoryContext, key: UserKey, memory: Memory, vector: Vectors, policy: SuggestionPolicy
) -> list[SupersedeSuggestion]:
    """The current memories (visible to the writing agent) that look like older versions of `memory`.

    Only for facts: turns are a conversation's log, where "older versions" are just earlier turns.
    """
    if memory.kind is not Kind.FACT:
        return []
    filters = MemoryFilters(project=memory.project, open_at=ctx.clock()).seen_by(memory.agent_id)
    found = await ctx.run(partial(ctx.long_term.vector_search, key, vector, filters, MAX_SUGGESTIONS * 4))
    suggestions: list[SupersedeSuggestion] = []
    for candidate in found:
        old = candidate.memory
        # Summaries stand for many turns, and a memory already replaced by this one needs no suggestion.
        if old.id == memory.id or old.kind is Kind.SUMMARY or old.id in memory.supersedes:
            continue
        # A memory that starts after the new one is not an older version of it.
        if valid_from(old) > valid_from(memory):
            continue
        reason = _reason(memory, old, candidate.score, policy)
        if reason is not None:
            suggestions.append(
                SupersedeSuggestion(
                    id=old.id,
                    content=old.content,
                    valid_from=valid_from(old),
                    similarity=round(candidate.score, 3),
                    reason=reason,
                )
            )
        if len(suggestions) == MAX_SUGGESTIONS:
            break
    return suggestions


async def superseded_memories(
    ctx: MemoryContext, key: UserKey, ids: Sequence[str], agent_id: str | None, field: str = "supersedes"
) -> list[Memory]:
    """The memories a caller names as superseded, checked before anything is stored (visible, existing)."""
    if len(ids) > MAX_SUPERSEDES:
        raise InvalidInput(field, f"at most {MAX_SUPERSEDES} ids are accepted, got {len(ids)}.")
    memories: list[Memory] = []
    for memory_id in dict.fromkeys(ids):
        check_memory_id(memory_id)
        found = await ctx.visible_memory(key, memory_id, agent_id, required=True)
        assert found is not None
        memories.append(found)
    return memories


def check_order(new_from: datetime, olds: Sequence[Memory], field: str = "supersedes") -> None:
    """Refuse to let a memory supersede one that starts after it: the older fact would end before it began."""
    for old in olds:
        if valid_from(old) > new_from:
            raise InvalidInput(
                field,
                f"memory {quoted(old.id)} holds from {valid_from(old).isoformat()}, after this memory's "
                f"valid_from {new_from.isoformat()}; only an older memory can be superseded (or give occurred_at).",
            )


async def close(ctx: MemoryContext, key: UserKey, old: Memory, new: Memory) -> None:
    """Record that `new` replaces `old`: `old` holds until `new` starts; each names the other."""
    until = valid_from(new)
    if old.valid_until is not None and old.valid_until < until:
        until = old.valid_until  # already closed earlier: an explicit end stays
    closed = old.model_copy(
        update={
            "valid_from": valid_from(old),
            "valid_until": until,
            "superseded_by": list(dict.fromkeys([*old.superseded_by, new.id])),
        }
    )
    await ctx.run(partial(ctx.long_term.replace, key, old.id, closed))


async def link_successor(ctx: MemoryContext, key: UserKey, new: Memory, olds: Sequence[Memory]) -> Memory:
    """Add `olds` to `new.supersedes` in the store (when `new` was stored before this call named them)."""
    wanted = list(dict.fromkeys([*new.supersedes, *(o.id for o in olds)]))
    if wanted == new.supersedes:
        return new
    linked = new.model_copy(update={"supersedes": wanted, "valid_from": valid_from(new)})
    await ctx.run(partial(ctx.long_term.replace, key, new.id, linked))
    return linked


async def close_all(ctx: MemoryContext, key: UserKey, olds: Sequence[Memory], new: Memory, created: bool) -> Memory:
    """Close each of `olds` as superseded by `new`; return `new` as stored (linked to them if it was stored before)."""
    if not olds:
        return new
    if not created:  # named in a later call: the stored memory gains the links
        stored = await ctx.run(partial(ctx.long_term.get, key, [new.id]))
        new = await link_successor(ctx, key, stored[0] if stored else new, olds)
    for old in olds:
        await close(ctx, key, old, new)
    return new


def validity_changes(current: Memory, until: datetime | None, successor: Memory | None) -> dict[str, object]:
    """The fields that close `current`: when it stops holding, and which memory replaces it."""
    if until is None and successor is None:
        return {}
    if successor is not None and (until is None or until > valid_from(successor)):
        until = valid_from(successor)
    assert until is not None
    if until < valid_from(current):
        raise InvalidInput("valid_until", f"must not be before the memory holds ({valid_from(current).isoformat()}).")
    changes: dict[str, object] = {"valid_from": valid_from(current), "valid_until": until}
    if successor is not None:
        changes["superseded_by"] = list(dict.fromkeys([*current.superseded_by, successor.id]))
    return changes


async def successor_of(
    ctx: MemoryContext, key: UserKey, current: Memory, superseded_by: str | None, agent_id: str | None
) -> Memory | None:
    """The memory `update_memory` names as replacing `current`, checked (visible, another one, not older)."""
    if superseded_by is None:
        return None
    (successor,) = await superseded_memories(ctx, key, [superseded_by], agent_id, "superseded_by")
    if successor.id == current.id:
        raise InvalidInput("superseded_by", "a memory cannot supersede itself.")
    check_order(valid_from(successor), [current], "superseded_by")
    return successor
