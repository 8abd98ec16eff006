"""The metadata filters of `recall` and `list_memories`, declared once.

`MemoryFilters` is the tools' `filters` argument as its schema shows it, the value core passes on without
checking it again, and what each storage back end compiles into its own query language (LanceDB:
`storage/filters.py`). A new filter is one field here (with its limits), plus a compile rule in each back end when
it is a new kind of condition, plus `admits` when working memory must honour it too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from engram.core.limits import MAX_FILTER_AGENTS
from engram.core.models import Kind, ProjectScope, Sentiment, Visibility
from engram.core.values import Id, Label, Tags, UtcDate

_Agents = Annotated[list[Id] | None, Field(max_length=MAX_FILTER_AGENTS)]

#: The kinds of condition a back end compiles. A filter of a known kind is one field below; a new kind needs a rule
#: in every back end (`storage/filters.py` for LanceDB).
#: `valid_at` holds for a memory valid at the time (valid from it or earlier, not closed by then); `open_at` for one not
#: closed (superseded) by the time, whenever it started.
ConditionKind = Literal[
    "equals", "in", "not_in", "has_any", "has_all", "has_folded", "is_true", "at_least", "before", "valid_at", "open_at"
]


@dataclass(frozen=True)
class Condition:
    """How a filter field constrains a memory: which attribute of it, and by what kind of test."""

    attribute: str
    kind: ConditionKind


class MemoryFilters(BaseModel):
    """Conditions on long-term memories' metadata."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="Filters")

    from_agents: Annotated[
        _Agents, Field(description="Written by one of these agents."), Condition("agent_id", "in")
    ] = None
    exclude_agents: Annotated[
        _Agents, Field(description="Not written by these agents."), Condition("agent_id", "not_in")
    ] = None
    shared_only: Annotated[bool, Field(description="No private memories.")] = False
    from_session: Annotated[Id | None, Field(description="From this session."), Condition("session_id", "equals")] = (
        None
    )
    # Which projects a query reaches is a scope, like visibility, not a condition: unset, it is global memories.
    project: Annotated[Id | None, Field(description="Current project (plus global).")] = None
    projects: Annotated[ProjectScope, Field(description="'only' it; 'any' project.")] = "with_global"
    tags: Annotated[Tags, Field(description="With at least one of these tags."), Condition("tags", "has_any")] = None
    tags_all: Annotated[Tags, Field(description="With all of these tags."), Condition("tags", "has_all")] = None
    entity: Annotated[Label | None, Condition("entities", "has_folded")] = None
    sentiment: Annotated[Sentiment | None, Condition("sentiment", "equals")] = None
    category: Annotated[Label | None, Condition("category", "equals")] = None
    kind: Annotated[Kind | None, Condition("kind", "equals")] = None
    resolved: Annotated[bool | None, Condition("resolved", "is_true")] = None
    min_importance: Annotated[float | None, Field(ge=0.0, le=1.0), Condition("importance", "at_least")] = None
    since: Annotated[UtcDate | None, Field(description="Created at or after."), Condition("created_at", "at_least")] = (
        None
    )
    until: Annotated[UtcDate | None, Field(description="Created before."), Condition("created_at", "before")] = None
    # Validity in time is set by the service (recall's own `as_of` argument, or "now"), so the schema leaves it out.
    #: Only memories valid at this time (recall's `as_of`).
    as_of: Annotated[UtcDate | None, SkipJsonSchema(), Condition("validity", "valid_at")] = None
    #: Only memories not closed (superseded) by this time, whenever they started: recall's default, "now".
    open_at: Annotated[UtcDate | None, SkipJsonSchema(), Condition("validity", "open_at")] = None

    # Who is asking is not the caller's choice, so it is no field: the service sets it from the request.
    _viewer_agent: str | None = PrivateAttr(default=None)

    @field_validator("until")
    @classmethod
    def _after_since(cls, until: datetime | None, info: ValidationInfo) -> datetime | None:
        since = info.data.get("since")
        if until is not None and since is not None and since >= until:
            raise PydanticCustomError(
                "date_order", f"'since' must be earlier than 'until' ({since.isoformat()} >= {until.isoformat()})"
            )
        return until

    @property
    def viewer_agent(self) -> str | None:
        """The agent asking: every query sees the user's shared memories plus this agent's private ones only."""
        return self._viewer_agent

    def seen_by(self, agent_id: str | None) -> Self:
        """These filters as `agent_id` (already checked) applies them."""
        copy = self.model_copy()
        copy._viewer_agent = agent_id
        return copy

    def admits(self, agent_id: str | None, visibility: Visibility) -> bool:
        """Whether a memory or turn written by `agent_id` with `visibility` passes the agent rules."""
        if visibility is Visibility.PRIVATE and (
            self.shared_only or agent_id is None or agent_id != self._viewer_agent
        ):
            return False
        if self.from_agents and agent_id not in self.from_agents:
            return False
        return not (self.exclude_agents and agent_id in self.exclude_agents)

    def conditions(self) -> Iterator[tuple[Condition, Any]]:
        """Each set filter's condition and value; `shared_only` and the viewer are the visibility rule instead."""
        for name, condition in conditioned_fields(type(self)):
            value = getattr(self, name)
            if value is not None and value != []:
                yield condition, value


@cache
def conditioned_fields(model: type[BaseModel]) -> tuple[tuple[str, Condition], ...]:
    """The fields of `model` that carry a Condition, with it, in declaration order.

    Read from the fields' metadata once per class: every search asks for the conditions (a recall four times), and
    scanning all 18 fields' metadata each time cost ~9 us a call.
    """
    found = []
    for name, field in model.model_fields.items():
        condition = next((m for m in field.metadata if isinstance(m, Condition)), None)
        if condition is not None:
            found.append((name, condition))
    return tuple(found)
