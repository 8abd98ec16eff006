"""The metadata filters of `recall` and `list_memories`, declared once.

`MemoryFilters` is the tools' `filters` argument as its schema shows it, the value core passes on without
checking it again, and what each storage back end compiles into its own query language (LanceDB:
`storage/filters.py`). A new filter is one field here (with its limits), plus a compile rule in each back end when
it is a new kind of condition, plus `admits` when working memory must honour it too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from engram.core.limits import MAX_FILTER_AGENTS
from engram.core.models import Kind, Sentiment, Visibility
from engram.core.values import Id, Label, Tags, UtcDate

_Agents = Annotated[list[Id] | None, Field(max_length=MAX_FILTER_AGENTS)]


class MemoryFilters(BaseModel):
    """Conditions on long-term memories' metadata."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="Filters")

    from_agents: Annotated[_Agents, Field(description="Written by one of these agents.")] = None
    exclude_agents: Annotated[_Agents, Field(description="Not written by these agents.")] = None
    shared_only: Annotated[bool, Field(description="No private memories.")] = False
    from_session: Annotated[Id | None, Field(description="From this session.")] = None
    tags: Annotated[Tags, Field(description="With at least one of these tags.")] = None
    tags_all: Annotated[Tags, Field(description="With all of these tags.")] = None
    entity: Label | None = None
    sentiment: Sentiment | None = None
    category: Label | None = None
    kind: Kind | None = None
    resolved: bool | None = None
    min_importance: Annotated[float | None, Field(ge=0.0, le=1.0)] = None
    since: Annotated[UtcDate | None, Field(description="Created at or after.")] = None
    until: Annotated[UtcDate | None, Field(description="Created before.")] = None

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
