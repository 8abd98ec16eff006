"""The metadata filters `recall` and `list_memories` share: one object, declared once, turned into the core's."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from engram.core.models import Kind, ProjectScope, RecallFilters, Sentiment
from engram.tools._fields import Id, Label

_Agents = Annotated[list[Id] | None, Field(max_length=20)]
_Labels = Annotated[list[Label] | None, Field(max_length=32)]


class Filters(BaseModel):
    """Conditions on long-term memories' metadata."""

    model_config = ConfigDict(extra="forbid")

    from_agents: Annotated[_Agents, Field(description="Written by one of these agents.")] = None
    exclude_agents: Annotated[_Agents, Field(description="Not written by these agents.")] = None
    shared_only: Annotated[bool, Field(description="No private memories.")] = False
    from_session: Annotated[Id | None, Field(description="From this session.")] = None
    project: Annotated[Id | None, Field(description="Current project (plus global).")] = None
    projects: Annotated[ProjectScope, Field(description="'only' it; 'any' project.")] = "with_global"
    tags: Annotated[_Labels, Field(description="With at least one of these tags.")] = None
    tags_all: Annotated[_Labels, Field(description="With all of these tags.")] = None
    entity: Label | None = None
    sentiment: Sentiment | None = None
    category: Label | None = None
    kind: Kind | None = None
    resolved: bool | None = None
    min_importance: Annotated[float | None, Field(ge=0.0, le=1.0)] = None
    since: Annotated[datetime | None, Field(description="Created at or after (ISO 8601).")] = None
    until: Annotated[datetime | None, Field(description="Created before (ISO 8601).")] = None

    def core(self) -> RecallFilters:
        """The core's filter object (the service checks the values)."""
        return RecallFilters(
            agents=self.from_agents or [],
            exclude_agents=self.exclude_agents or [],
            shared_only=self.shared_only,
            session_id=self.from_session,
            project=self.project,
            project_scope=self.projects,
            tags_any=self.tags or [],
            tags_all=self.tags_all or [],
            entity=self.entity,
            sentiment=self.sentiment,
            category=self.category,
            kind=self.kind,
            resolved=self.resolved,
            min_importance=self.min_importance,
            since=self.since,
            until=self.until,
        )


FiltersArg = Filters | None


def filters_of(filters: Filters | None) -> RecallFilters:
    """The core's filters for a call's `filters` argument (none: no condition)."""
    return (filters or Filters()).core()
