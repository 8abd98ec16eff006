"""Briefing: the layered context an assistant's hook injects before a prompt, found without the embedding model.

A hook runs in its own short-lived process on every prompt, so it cannot wait seconds for a model to load: it
searches long-term memory and knowledge by keywords (BM25) only, takes the session's working memory as it is, and
fits the result into a token budget. With no prompt (a session starting) the project's latest memories stand in
for the relevant ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, TypeVar

import anyio.to_thread
from pydantic import BaseModel, Field

from engram.core.context import turn_admitted
from engram.core.filters import MemoryFilters
from engram.core.identity import GLOBAL_OWNER
from engram.core.models import MAX_QUERY_CHARS, Memory, Turn
from engram.core.validation import check_optional_id, parsed

if TYPE_CHECKING:
    from engram.core.service import MemoryService

T = TypeVar("T")

#: Characters per token, for the budget: close enough for English prose and code with common tokenizers.
CHARS_PER_TOKEN = 4
#: The longest any one item may be in the briefing, so one long memory cannot take the whole budget.
MAX_ITEM_CHARS = 600


@dataclass(frozen=True)
class BriefingLimits:
    """How much a briefing may hold."""

    max_tokens: int = 1000
    memories: int = 8
    knowledge: int = 3
    working_turns: int = 6


class Briefing(BaseModel):
    """What a briefing found and the text to inject (empty when nothing was found)."""

    text: str
    tokens: int = Field(description="Estimated tokens of `text` (characters / 4).")
    memories: int = Field(description="Long-term memories included.")
    knowledge: int = Field(description="Knowledge passages included.")
    working: int = Field(description="Working-memory turns included.")


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_ITEM_CHARS else text[: MAX_ITEM_CHARS - 1] + "…"


def _day(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d")


async def brief(
    memory: MemoryService,
    user_id: str,
    *,
    query: str | None,
    session_id: str | None = None,
    project: str | None = None,
    agent_id: str | None = None,
    limits: BriefingLimits | None = None,
) -> Briefing:
    """The user's relevant memories, knowledge and the session's working memory as one text within the budget.

    Memories of the current session are left out of the long-term part: the assistant already has them.
    """
    limits = limits or BriefingLimits()
    key = memory.user_key(user_id)
    check_optional_id("session_id", session_id)
    filters = parsed(MemoryFilters, {"project": project}).seen_by(check_optional_id("agent_id", agent_id))
    store = memory.long_term
    # A pasted page is a prompt too: its first part is plenty to match on, and keeps the search quick.
    query = (query or "").strip()[:MAX_QUERY_CHARS] or None
    wanted = limits.memories + limits.working_turns  # room for the current session's own turns, dropped below
    if query is not None:
        found = [c.memory for c in await _run(partial(store.keyword_search, key, query, filters, wanted))]
    else:
        found = await _run(partial(store.list_memories, key, filters, wanted, 0))
    memories = [m for m in found if session_id is None or m.session_id != session_id][: limits.memories]
    passages: list[str] = []
    if query is not None and memory.knowledge is not None:
        knowledge = memory.knowledge.store
        if await _run(knowledge.count):
            chunks = await _run(partial(knowledge.keyword_search, [GLOBAL_OWNER, key], query, limits.knowledge))
            passages = [f"{_clip(c.chunk.content)} ({c.chunk.title}, {c.chunk.source})" for c in chunks]
    working: list[Turn] = []
    if session_id is not None:
        turns = await _run(partial(memory.sessions.working, key, session_id))
        working = [t for t in turns if turn_admitted(filters, t)][-limits.working_turns :]
    return _fit(memories, passages, working, limits.max_tokens)


async def _run(fn: Callable[[], T]) -> T:
    return await anyio.to_thread.run_sync(fn)


def _fit(memories: list[Memory], passages: list[str], working: list[Turn], max_tokens: int) -> Briefing:
    """The three layers as text, most useful first, stopping at the token budget."""
    budget = max_tokens * CHARS_PER_TOKEN
    sections: list[tuple[str, list[str]]] = [
        ("Relevant memories (Engram, long-term):", [f"- [{_day(m.created_at)}] {_clip(m.content)}" for m in memories]),
        ("Relevant documents (Engram knowledge):", [f"- {p}" for p in passages]),
        (
            "This session so far (Engram working memory):",
            [f"- {t.role.value if t.role else 'note'}: {_clip(t.content)}" for t in working],
        ),
    ]
    lines: list[str] = []
    used = 0
    counts: list[int] = []
    for heading, items in sections:
        kept = 0
        for item in items:
            cost = len(item) + 1 + (0 if kept else len(heading) + 2)
            if used + cost > budget:
                break
            if not kept:
                lines.extend(["", heading] if lines else [heading])
            lines.append(item)
            used += cost
            kept += 1
        counts.append(kept)
    text = "\n".join(lines)
    return Briefing(
        text=text,
        tokens=-(-len(text) // CHARS_PER_TOKEN),
        memories=counts[0],
        knowledge=counts[1],
        working=counts[2],
    )
