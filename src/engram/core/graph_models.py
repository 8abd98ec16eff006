"""The vocabulary of a user's graph: entities with aliases, typed relations with validity, and what tools return."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from engram.core.models import Visibility

#: Limits of one graph call and of what one read returns.
MAX_GRAPH_ITEMS = 100
MAX_NAME_CHARS = 200
MAX_ALIASES = 20
MAX_OBSERVATIONS = 50
MAX_GRAPH_READ = 500
MAX_OBSERVATION_CHARS = 10_000
#: Bounded text: a name, an alias, a type or relation type, an observation.
Name = Annotated[str, Field(min_length=1, max_length=200)]
Observation = Annotated[str, Field(min_length=1, max_length=MAX_OBSERVATION_CHARS)]


def entity_key(name: str) -> str:
    """How names are compared: case-folded, underscores as spaces ("John_Smith" = "john smith"), spaces collapsed."""
    return re.sub(r"\s+", " ", name.replace("_", " ")).strip().casefold()


def graph_id(user: str, *parts: str) -> str:
    """A content-addressed id of a node or edge of one user (the same parts give the same id)."""
    digest = hashlib.sha256("\x1f".join([user, *parts]).encode()).hexdigest()
    return digest[:32]


def entity_id(user: str, visibility: str, owner: str | None, name: str) -> str:
    """The id of a user's entity: one per name (its key), visibility and, when private, owning agent."""
    return graph_id(user, visibility, owner or "", entity_key(name))


def relation_id(user: str, visibility: str, owner: str | None, source: str, kind: str, target: str) -> str:
    """The id of a user's relation: one per pair of ends and type, visibility and, when private, owning agent."""
    return graph_id(user, visibility, owner or "", entity_key(source), entity_key(kind), entity_key(target))


class Entity(BaseModel):
    """A node of the user's graph: a person, organisation, place, product, project... with its other names."""

    model_config = ConfigDict(frozen=True)

    id: str
    user_id: str
    name: str
    entity_type: str | None = None
    aliases: list[str] = Field(default_factory=list)
    agent_id: str | None = None
    visibility: Visibility = Visibility.SHARED
    created_at: datetime
    updated_at: datetime | None = None

    @property
    def names(self) -> list[str]:
        """The entity's name and aliases, as given."""
        return [self.name, *self.aliases]

    @property
    def keys(self) -> list[str]:
        """The compared forms of every name of the entity."""
        return list(dict.fromkeys(entity_key(n) for n in self.names))


class Relation(BaseModel):
    """A typed edge from one entity to another, valid in time, with the memories it came from."""

    model_config = ConfigDict(frozen=True)

    id: str
    user_id: str
    source: str = Field(description="The name of the entity the relation starts from.")
    target: str = Field(description="The name of the entity the relation ends at.")
    relation_type: str
    valid_from: datetime
    valid_until: datetime | None = None
    memory_ids: list[str] = Field(default_factory=list)
    agent_id: str | None = None
    visibility: Visibility = Visibility.SHARED
    created_at: datetime


class EntityIn(BaseModel):
    """An entity a caller creates (the official memory server's shape, plus aliases)."""

    model_config = ConfigDict(populate_by_name=True)

    name: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    entity_type: str = Field(
        default="thing", alias="entityType", max_length=64, description="person, organization, place, product..."
    )
    observations: list[Observation] = Field(default_factory=list, max_length=MAX_OBSERVATIONS)
    aliases: list[Name] = Field(default_factory=list, max_length=MAX_ALIASES)


class RelationIn(BaseModel):
    """A relation a caller creates: from one entity to another, in the active voice ("works_at")."""

    model_config = ConfigDict(populate_by_name=True)

    source: str = Field(alias="from", min_length=1, max_length=MAX_NAME_CHARS)
    target: str = Field(alias="to", min_length=1, max_length=MAX_NAME_CHARS)
    relation_type: str = Field(alias="relationType", min_length=1, max_length=64)
    valid_from: datetime | None = Field(default=None, description="Since when it holds (default: now).")


class ObservationsIn(BaseModel):
    """Observations (facts) to add to an existing entity."""

    model_config = ConfigDict(populate_by_name=True)

    entity_name: str = Field(alias="entityName", min_length=1, max_length=MAX_NAME_CHARS)
    contents: list[Observation] = Field(min_length=1, max_length=MAX_OBSERVATIONS)


class GraphNode(BaseModel):
    """An entity as graph tools return it: the official server's fields, plus aliases."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    name: str
    entity_type: str | None = Field(alias="entityType")
    observations: list[str] = Field(description="The entity's current memories (the newest first).")
    aliases: list[str] = Field(default_factory=list)


class GraphEdge(BaseModel):
    """A relation as graph tools return it: the official server's fields, plus validity and source memories."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    source: str = Field(alias="from")
    target: str = Field(alias="to")
    relation_type: str = Field(alias="relationType")
    valid_from: datetime
    valid_until: datetime | None = None
    memory_ids: list[str] = Field(default_factory=list)


class KnowledgeGraph(BaseModel):
    """Part or all of a user's graph."""

    entities: list[GraphNode]
    relations: list[GraphEdge]
    truncated: bool = Field(default=False, description="True when more entities exist than were returned.")


class GraphChange(BaseModel):
    """Outcome of a graph write: what was new, and the memories written for observations and relations."""

    entities_created: list[str] = Field(default_factory=list)
    relations_created: int = 0
    memories_created: int = 0
    memory_ids: list[str] = Field(default_factory=list)
