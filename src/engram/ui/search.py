"""The memory browser's search form: its fields read from the query string, and the core calls they make."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from engram.core.errors import InvalidInput
from engram.core.filters import MemoryFilters
from engram.core.models import KnowledgeHit, Memory, MemoryHit, RecallScope, WorkingTurn
from engram.core.service import MemoryService
from engram.core.validation import parsed

Tier = Literal["all", "long_term", "working", "knowledge"]
TIERS: tuple[Tier, ...] = ("all", "long_term", "working", "knowledge")
#: Memories on one page of the browser.
PAGE = 25
#: Longest value taken from one form field (anything longer is refused with a message, not cut).
MAX_FIELD = 2000


def _when(name: str, text: str, *, end: bool) -> datetime | None:
    """A date (YYYY-MM-DD, the whole day) or date-time from a form field, in UTC unless it names a zone."""
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(name, "must be a date like 2026-12-07 or a date and time like 2026-12-07T14:30.") from None
    if len(text) == 10 and end:
        parsed = parsed.replace(hour=23, minute=59, second=59, microsecond=999_999)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class SearchForm:
    """What the person asked for: a query (or none, to list), a tier, and metadata filters."""

    user: str = ""
    query: str = ""
    tier: Tier = "all"
    tag: str = ""
    category: str = ""
    entity: str = ""
    agent: str = ""
    project: str = ""
    session: str = ""
    since: str = ""
    until: str = ""
    offset: int = 0

    @classmethod
    def parse(cls, params: dict[str, str]) -> SearchForm:
        """The form from query parameters; a bad value raises InvalidInput naming the field."""
        values: dict[str, str] = {}
        for name in (
            "user",
            "query",
            "tier",
            "tag",
            "category",
            "entity",
            "agent",
            "project",
            "session",
            "since",
            "until",
        ):
            value = params.get(name, "").strip()
            if len(value) > MAX_FIELD:
                raise InvalidInput(name, f"is {len(value)} characters; the limit is {MAX_FIELD}.")
            values[name] = value
        named = values.pop("tier") or "all"
        tier = next((t for t in TIERS if t == named), None)
        if tier is None:
            raise InvalidInput("tier", f"must be one of {', '.join(TIERS)}.")
        offset_text = params.get("offset", "0") or "0"
        if not offset_text.isdigit() or len(offset_text) > 6:
            raise InvalidInput("offset", "must be a whole number from 0.")
        return cls(tier=tier, offset=int(offset_text), **values)

    def filters(self) -> MemoryFilters:
        """The metadata conditions the form sets (parsed by core: a bad value is an InvalidInput naming it)."""
        # A browser shows every project unless one is named; then that project alone.
        values: dict[str, object] = {
            "project": self.project or None,
            "projects": "only" if self.project else "any",
            "tags": [self.tag] if self.tag else None,
            "category": self.category or None,
            "entity": self.entity or None,
            "from_agents": [self.agent] if self.agent else None,
            "from_session": self.session or None,
            "since": _when("since", self.since, end=False),
            "until": _when("until", self.until, end=True),
        }
        return parsed(MemoryFilters, values)


@dataclass
class Found:
    """What a search or listing shows: hits by tier, or a page of memories."""

    memories: list[MemoryHit] = field(default_factory=list)
    knowledge: list[KnowledgeHit] = field(default_factory=list)
    working: list[WorkingTurn] = field(default_factory=list)
    listed: list[Memory] = field(default_factory=list)
    next_offset: int | None = None
    note: str = ""
    unavailable: list[str] = field(default_factory=list)


async def run_search(memory: MemoryService, form: SearchForm, user: str, agent: str | None) -> Found:
    """Recall (with a query) or list (without) what the form asks for, as recall and list_memories do."""
    filters = form.filters()
    if form.tier == "working" and not form.session:
        return Found(note="Working memory belongs to a session: give a session id.")
    if not form.query:
        if form.tier == "knowledge":
            return Found(note="Type a query to search knowledge.")
        if form.tier == "working":
            transcript = await memory.transcript(user, form.session, agent_id=agent)
            turns = [WorkingTurn.model_validate(t.model_dump()) for t in transcript.turns]
            return Found(working=turns)
        page = await memory.list_memories(user, filters=filters, limit=PAGE, offset=form.offset, agent_id=agent)
        return Found(listed=page.memories, next_offset=page.next_offset)
    scope: RecallScope = "knowledge" if form.tier == "knowledge" else "memories" if form.tier != "all" else "both"
    result = await memory.recall(
        user,
        form.query,
        session_id=form.session or None if form.tier in ("all", "working") else None,
        filters=filters,
        agent_id=agent,
        scope=scope,
    )
    return Found(
        memories=[] if form.tier == "working" else result.memories,
        knowledge=result.knowledge,
        working=[] if form.tier == "long_term" else result.working,
        unavailable=result.unavailable,
    )
