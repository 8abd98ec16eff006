"""A user's graph: entities and typed relations beside the memories that back them, and what recall takes from it.

Observations are memories: an observation of "Priya Patel" is a long-term memory naming her among its entities,
so recall, `as_of`, supersession and erasure treat it like any other memory. A relation is an edge in the graph
store plus a memory stating it ("Priya Patel works at Acme"), whose id the edge keeps. The graph's own rows
(names, aliases, types, edges) live in the graph store, one more tier.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from functools import partial

from engram.core.context import MemoryContext
from engram.core.errors import InvalidInput, quoted
from engram.core.filters import MemoryFilters
from engram.core.graph_links import SCAN_ENTITIES
from engram.core.graph_models import (
    MAX_GRAPH_ITEMS,
    MAX_GRAPH_READ,
    Entity,
    EntityIn,
    GraphChange,
    GraphEdge,
    GraphNode,
    KnowledgeGraph,
    ObservationsIn,
    Relation,
    RelationIn,
    entity_id,
    entity_key,
    relation_id,
)
from engram.core.identity import UserKey
from engram.core.models import Kind, RememberItem, Visibility
from engram.core.ports import GraphStore
from engram.core.validation import as_utc, check_optional_id, parsed
from engram.core.writing import MemoryWriter

#: How many observations of one entity a graph read returns.
OBSERVATIONS_PER_NODE = 50
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _name(where: str, value: str) -> str:
    """A checked entity name: trimmed, non-empty, without control characters."""
    name = value.strip()
    if not name or _CONTROL.search(name):
        raise InvalidInput(where, "must be a non-empty name without control characters.")
    return name


class GraphKeeper:
    """Entities, relations and observations of a user, read and written in the official memory server's terms."""

    def __init__(self, context: MemoryContext, writer: MemoryWriter, graph: GraphStore) -> None:
        self._ctx = context
        self._writer = writer
        self._graph = graph

    # -- writes ---------------------------------------------------------------------------------------------------

    async def create_entities(
        self,
        user_id: str,
        entities: Sequence[EntityIn],
        *,
        agent_id: str | None = None,
        visibility: Visibility = Visibility.SHARED,
    ) -> GraphChange:
        """Add entities (an existing name gains the new aliases) and store their observations as memories."""
        ctx = self._ctx
        key, viewer = self._who(user_id, agent_id, visibility, len(entities), "entities")
        now = ctx.clock()
        change = GraphChange()
        upserts: list[Entity] = []
        items: list[RememberItem] = []
        for i, given in enumerate(entities):
            name = _name(f"entities[{i}].name", given.name)
            aliases = [_name(f"entities[{i}].aliases", a) for a in given.aliases]
            found = await self._find(key, viewer, name)
            if found is None:
                entity = self._new_entity(key, name, given.entity_type, aliases, agent_id, visibility, now)
                change.entities_created.append(name)
                upserts.append(entity)
            else:
                more = [a for a in aliases if entity_key(a) not in found.keys]
                if more:
                    upserts.append(found.model_copy(update={"aliases": [*found.aliases, *more], "updated_at": now}))
            items += [self._observation(name, text, visibility) for text in given.observations]
        if upserts:
            await ctx.run(partial(self._graph.upsert_entities, upserts))
        await self._remember(user_id, items, agent_id, change)
        return change

    async def add_observations(
        self,
        user_id: str,
        observations: Sequence[ObservationsIn],
        *,
        agent_id: str | None = None,
        visibility: Visibility = Visibility.SHARED,
    ) -> GraphChange:
        """Store observations of existing entities as memories naming them."""
        key, viewer = self._who(user_id, agent_id, visibility, len(observations), "observations")
        items: list[RememberItem] = []
        for i, given in enumerate(observations):
            found = await self._find(key, viewer, _name(f"observations[{i}].entityName", given.entity_name))
            if found is None:
                raise InvalidInput(
                    f"observations[{i}].entityName",
                    f"no entity {quoted(given.entity_name)} is held for this user; create it with create_entities.",
                )
            items += [self._observation(found.name, text, visibility) for text in given.contents]
        change = GraphChange()
        await self._remember(user_id, items, agent_id, change)
        return change

    async def create_relations(
        self,
        user_id: str,
        relations: Sequence[RelationIn],
        *,
        agent_id: str | None = None,
        visibility: Visibility = Visibility.SHARED,
    ) -> GraphChange:
        """Add typed relations (creating missing entities), each stated by a memory whose id the edge keeps."""
        ctx = self._ctx
        key, viewer = self._who(user_id, agent_id, visibility, len(relations), "relations")
        now = ctx.clock()
        change = GraphChange()
        edges: list[tuple[str, str, str, datetime]] = []
        new_entities: dict[str, Entity] = {}
        for i, given in enumerate(relations):
            ends = []
            for where, raw in ((f"relations[{i}].from", given.source), (f"relations[{i}].to", given.target)):
                name = _name(where, raw)
                found = await self._find(key, viewer, name)
                if found is None and entity_key(name) not in new_entities:
                    new_entities[entity_key(name)] = self._new_entity(key, name, None, [], agent_id, visibility, now)
                    change.entities_created.append(name)
                ends.append(found.name if found is not None else new_entities[entity_key(name)].name)
            kind = _name(f"relations[{i}].relationType", given.relation_type)
            since = as_utc(f"relations[{i}].valid_from", given.valid_from) or now
            edges.append((ends[0], kind, ends[1], since))
        if new_entities:
            await ctx.run(partial(self._graph.upsert_entities, list(new_entities.values())))
        items = [self._statement(source, kind, target, since, visibility) for source, kind, target, since in edges]
        ids = await self._remember(user_id, items, agent_id, change)
        owner = (agent_id or "") if Visibility(visibility) is Visibility.PRIVATE else ""
        stored = [
            Relation(
                id=relation_id(key, visibility.value, owner, s, k, t),
                user_id=key,
                source=s,
                target=t,
                relation_type=k,
                valid_from=since,
                memory_ids=[memory_id],
                agent_id=agent_id,
                visibility=visibility,
                created_at=now,
            )
            for (s, k, t, since), memory_id in zip(edges, ids, strict=True)
        ]
        change.relations_created = len(await ctx.run(partial(self._graph.upsert_relations, stored)))
        return change

    async def merge_entities(
        self, user_id: str, keep: str, merge: Sequence[str], *, agent_id: str | None = None
    ) -> GraphNode:
        """Make `merge` other names of `keep` (the user says they are one): aliases, and relations moved over."""
        ctx = self._ctx
        key, viewer = self._who(user_id, agent_id, Visibility.SHARED, len(merge), "merge")
        kept = await self._find(key, viewer, _name("keep", keep))
        if kept is None:
            raise InvalidInput("keep", f"no entity {quoted(keep)} is held for this user.")
        merged: list[Entity] = []
        for i, name in enumerate(merge):
            found = await self._find(key, viewer, _name(f"merge[{i}]", name))
            if found is None:
                raise InvalidInput(f"merge[{i}]", f"no entity {quoted(name)} is held for this user.")
            if found.id != kept.id:
                merged.append(found)
        aliases = list(dict.fromkeys([*kept.aliases, *(n for e in merged for n in e.names)]))
        combined = kept.model_copy(update={"aliases": aliases, "updated_at": ctx.clock()})
        moved_keys = [k for e in merged for k in e.keys]
        touching = await ctx.run(partial(self._graph.relations, key, viewer, moved_keys, MAX_GRAPH_READ))
        renamed = [self._renamed(r, set(moved_keys), kept.name) for r in touching]
        await ctx.run(partial(self._graph.upsert_entities, [combined]))
        await ctx.run(partial(self._graph.upsert_relations, renamed))
        await ctx.run(
            partial(self._graph.delete_relations, key, [r.id for r in touching if r.id not in {n.id for n in renamed}])
        )
        await ctx.run(partial(self._graph.delete_entities, key, [e.id for e in merged]))
        (node,) = await self._nodes(key, viewer, [combined])
        return node

    # -- reads ----------------------------------------------------------------------------------------------------

    async def read_graph(self, user_id: str, *, agent_id: str | None = None) -> KnowledgeGraph:
        """The user's whole graph as the asking agent may see it (up to a limit, flagged `truncated`)."""
        ctx = self._ctx
        key = ctx.user_key(user_id)
        viewer = MemoryFilters().seen_by(check_optional_id("agent_id", agent_id))
        entities = await ctx.run(partial(self._graph.entities, key, viewer, None, MAX_GRAPH_READ + 1))
        relations = await ctx.run(partial(self._graph.relations, key, viewer, None, MAX_GRAPH_READ))
        return KnowledgeGraph(
            entities=await self._nodes(key, viewer, entities[:MAX_GRAPH_READ]),
            relations=[_edge(r) for r in relations],
            truncated=len(entities) > MAX_GRAPH_READ,
        )

    async def open_nodes(self, user_id: str, names: Sequence[str], *, agent_id: str | None = None) -> KnowledgeGraph:
        """The named entities (by name or alias) with their observations and every relation from or to them."""
        ctx = self._ctx
        key, viewer = self._who(user_id, agent_id, Visibility.SHARED, len(names), "names")
        keys = [entity_key(_name(f"names[{i}]", n)) for i, n in enumerate(names)]
        entities = await ctx.run(partial(self._graph.entities, key, viewer, keys, MAX_GRAPH_ITEMS))
        return await self._subgraph(key, viewer, entities)

    async def search_nodes(self, user_id: str, query: str, *, agent_id: str | None = None) -> KnowledgeGraph:
        """Entities whose name, alias or type contains `query`, or whose observations match it by meaning."""
        ctx = self._ctx
        key = ctx.user_key(user_id)
        viewer = MemoryFilters().seen_by(check_optional_id("agent_id", agent_id))
        needle = query.strip().casefold()
        if not needle:
            raise InvalidInput("query", "must contain text; it is empty or only whitespace.")
        everyone = await ctx.run(partial(self._graph.entities, key, viewer, None, SCAN_ENTITIES))
        chosen = {
            e.id: e
            for e in everyone
            if any(needle in n.casefold() for n in e.names) or needle in (e.entity_type or "").casefold()
        }
        by_key = {k: e for e in everyone for k in e.keys}
        recalled = await self._recall(user_id, query, agent_id)
        for names in recalled:
            for name in names:
                found = by_key.get(entity_key(name))
                if found is not None:
                    chosen.setdefault(found.id, found)
        return await self._subgraph(key, viewer, list(chosen.values())[:MAX_GRAPH_ITEMS])

    # -- parts ----------------------------------------------------------------------------------------------------

    def _who(
        self, user_id: str, agent_id: str | None, visibility: Visibility, count: int, what: str
    ) -> tuple[UserKey, MemoryFilters]:
        """The user's key and the asking agent's view, once the call's size and visibility are checked."""
        key = self._ctx.user_key(user_id)
        viewer = MemoryFilters().seen_by(check_optional_id("agent_id", agent_id))
        if not 1 <= count <= MAX_GRAPH_ITEMS:
            raise InvalidInput(what, f"give 1 to {MAX_GRAPH_ITEMS} items, got {count}.")
        if Visibility(visibility) is Visibility.PRIVATE and agent_id is None:
            raise InvalidInput("visibility", "'private' keeps the graph's items to one agent: pass agent_id as well.")
        return key, viewer

    async def _find(self, key: UserKey, viewer: MemoryFilters, name: str) -> Entity | None:
        """The visible entity called `name` (or with it as an alias), if any."""
        found = await self._ctx.run(partial(self._graph.entities, key, viewer, [entity_key(name)], 1))
        return found[0] if found else None

    @staticmethod
    def _new_entity(
        key: UserKey,
        name: str,
        entity_type: str | None,
        aliases: list[str],
        agent_id: str | None,
        visibility: Visibility,
        now: datetime,
    ) -> Entity:
        visibility = Visibility(visibility)
        owner = agent_id if visibility is Visibility.PRIVATE else ""
        return Entity(
            id=entity_id(key, visibility.value, owner, name),
            user_id=key,
            name=name,
            entity_type=(entity_type or "").strip() or None,
            aliases=list(dict.fromkeys(a for a in aliases if entity_key(a) != entity_key(name))),
            agent_id=agent_id,
            visibility=visibility,
            created_at=now,
        )

    @staticmethod
    def _statement(source: str, kind: str, target: str, since: datetime, visibility: Visibility) -> RememberItem:
        """The memory stating a relation ("Priya Patel works at Acme"), dated from when it holds."""
        fields = {"content": f"{source} {kind.replace('_', ' ')} {target}", "kind": Kind.FACT}
        extra = {"entities": [source, target], "metadata": {"relation": kind}, "occurred_at": since}
        return parsed(RememberItem, {**fields, **extra, "visibility": visibility})

    @staticmethod
    def _observation(name: str, text: str, visibility: Visibility) -> RememberItem:
        # The entity's name is indexed with the observation ("Priya Patel: speaks Hindi"), as a speaker is.
        fields = {"content": text, "kind": Kind.FACT, "entities": [name], "metadata": {"subject": name}}
        return parsed(RememberItem, {**fields, "visibility": visibility})

    async def _remember(
        self, user_id: str, items: list[RememberItem], agent_id: str | None, change: GraphChange
    ) -> list[str]:
        """Store the items as memories (in batches), tally them in `change`, and return their ids in order."""
        ids: list[str] = []
        size = self._ctx.policy.max_batch
        for start in range(0, len(items), size):
            results = await self._writer.remember_many(user_id, items[start : start + size], agent_id=agent_id)
            ids += [r.id for r in results]
            change.memories_created += sum(r.created for r in results)
        change.memory_ids = list(dict.fromkeys([*change.memory_ids, *ids]))
        return ids

    async def _recall(self, user_id: str, query: str, agent_id: str | None) -> list[list[str]]:
        """The entity names of the memories that best match `query`."""
        from engram.core.retrieval import MemoryReader

        result = await MemoryReader(self._ctx).recall(user_id, query, agent_id=agent_id, top_k=10, scope="memories")
        return [hit.memory.entities for hit in result.memories]

    async def _subgraph(self, key: UserKey, viewer: MemoryFilters, entities: list[Entity]) -> KnowledgeGraph:
        keys = sorted({k for e in entities for k in e.keys})
        relations = await self._ctx.run(partial(self._graph.relations, key, viewer, keys, MAX_GRAPH_READ))
        return KnowledgeGraph(
            entities=await self._nodes(key, viewer, entities), relations=[_edge(r) for r in relations]
        )

    async def _nodes(self, key: UserKey, viewer: MemoryFilters, entities: Sequence[Entity]) -> list[GraphNode]:
        """The entities with their current observations: the memories naming them, newest first."""
        ctx = self._ctx
        now = ctx.clock()
        nodes: list[GraphNode] = []
        for entity in entities:
            seen: dict[str, str] = {}
            for name in entity.names:
                filters = viewer.model_copy(update={"entity": name, "open_at": now})
                found = await ctx.run(partial(ctx.long_term.list_memories, key, filters, OBSERVATIONS_PER_NODE))
                for memory in found:
                    if "relation" not in memory.metadata:  # a relation's statement is shown as the relation
                        seen.setdefault(memory.id, memory.content)
            nodes.append(
                GraphNode(
                    name=entity.name,
                    entityType=entity.entity_type,
                    observations=list(seen.values())[:OBSERVATIONS_PER_NODE],
                    aliases=entity.aliases,
                )
            )
        return nodes

    @staticmethod
    def _renamed(relation: Relation, moved: set[str], name: str) -> Relation:
        """`relation` with its ends among `moved` renamed to `name`, under the id its new ends give it."""
        source = name if entity_key(relation.source) in moved else relation.source
        target = name if entity_key(relation.target) in moved else relation.target
        owner = relation.agent_id if relation.visibility is Visibility.PRIVATE else ""
        new_id = relation_id(relation.user_id, relation.visibility.value, owner, source, relation.relation_type, target)
        return relation.model_copy(update={"id": new_id, "source": source, "target": target})


def _edge(relation: Relation) -> GraphEdge:
    return GraphEdge.model_validate(
        {
            "from": relation.source,
            "to": relation.target,
            "relationType": relation.relation_type,
            "valid_from": relation.valid_from,
            "valid_until": relation.valid_until,
            "memory_ids": relation.memory_ids,
        }
    )
