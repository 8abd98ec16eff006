"""The metadata filters `recall` and `list_memories` share: one description of each, one way to build them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from engram.core.models import ID_PATTERN, MAX_TAGS, Kind, RecallFilters, Sentiment
from engram.tools._fields import AgentIdsArg

FromAgentsArg = Annotated[AgentIdsArg, Field(description="Only memories written by one of these agents (max 20).")]
ExcludeAgentsArg = Annotated[AgentIdsArg, Field(description="Leave out memories written by these agents (max 20).")]
SharedOnlyArg = Annotated[
    bool, Field(description="Only memories shared with every agent (leave out the asking agent's private ones).")
]
FromSessionArg = Annotated[str | None, Field(pattern=ID_PATTERN, description="Only memories from this session.")]
TagsAnyArg = Annotated[
    list[str] | None, Field(max_length=MAX_TAGS, description="Only memories with at least one of these tags.")
]
TagsAllArg = Annotated[
    list[str] | None, Field(max_length=MAX_TAGS, description="Only memories with all of these tags.")
]
EntityArg = Annotated[
    str | None,
    Field(max_length=64, description="Only memories mentioning this entity (person, company, product...; any case)."),
]
SentimentArg = Annotated[Sentiment | None, Field(description="Only memories of this sentiment.")]
CategoryArg = Annotated[str | None, Field(max_length=64, description="Only memories in this category.")]
KindArg = Annotated[Kind | None, Field(description="Only memories of this kind.")]
ResolvedArg = Annotated[
    bool | None,
    Field(description="true: only memories marked resolved; false: only those not marked resolved (or never marked)."),
]
MinImportanceArg = Annotated[
    float | None, Field(ge=0.0, le=1.0, description="Only memories whose importance is at least this (0 to 1).")
]
SinceArg = Annotated[datetime | None, Field(description="Only memories created at or after (ISO 8601).")]
UntilArg = Annotated[datetime | None, Field(description="Only memories created before (ISO 8601).")]


def build_filters(
    *,
    from_agents: list[str] | None,
    exclude_agents: list[str] | None,
    shared_only: bool,
    from_session: str | None,
    tags: list[str] | None,
    tags_all: list[str] | None,
    entity: str | None,
    sentiment: Sentiment | None,
    category: str | None,
    kind: Kind | None,
    resolved: bool | None,
    min_importance: float | None,
    since: datetime | None,
    until: datetime | None,
) -> RecallFilters:
    """The core's filter object from the tool arguments (the service checks the values)."""
    return RecallFilters(
        agents=from_agents or [],
        exclude_agents=exclude_agents or [],
        shared_only=shared_only,
        session_id=from_session,
        tags_any=tags or [],
        tags_all=tags_all or [],
        entity=entity,
        sentiment=sentiment,
        category=category,
        kind=kind,
        resolved=resolved,
        min_importance=min_importance,
        since=since,
        until=until,
    )
