"""Reading the official MCP memory server's graph file (memory.jsonl, formerly memory.json) into a user's graph.

The file holds one JSON object per line: `{"type": "entity", "name", "entityType", "observations": [...]}` or
`{"type": "relation", "from", "to", "relationType"}` (as @modelcontextprotocol/server-memory writes it). Importing
is idempotent: entities and relations are keyed by name, observations are content-addressed memories.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from pydantic import BaseModel, ValidationError

from engram.core.errors import InvalidInput
from engram.core.graph import GraphKeeper
from engram.core.graph_models import MAX_GRAPH_ITEMS, EntityIn, RelationIn


class MemoryJsonImport(BaseModel):
    """Outcome of an import: what the file held and what was new."""

    entities: int
    relations: int
    observations: int
    entities_created: int
    relations_created: int
    memories_created: int


def parse_memory_json(lines: Iterable[str]) -> tuple[list[EntityIn], list[RelationIn]]:
    """The entities and relations of a memory-server file, checked; the first bad line is named in the error."""
    entities: list[EntityIn] = []
    relations: list[RelationIn] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            kind = item.get("type") if isinstance(item, dict) else None
            if kind == "entity":
                entities.append(EntityIn.model_validate({k: v for k, v in item.items() if k != "type"}))
            elif kind == "relation":
                relations.append(RelationIn.model_validate({k: v for k, v in item.items() if k != "type"}))
            else:
                raise ValueError("'type' must be 'entity' or 'relation'")
        except (ValueError, ValidationError) as exc:
            reason = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc).splitlines()[0]
            raise InvalidInput(
                f"line {number}",
                f"is not an entity or relation of the memory server's file ({reason}); each line must be "
                '{"type":"entity","name","entityType","observations":[...]} or '
                '{"type":"relation","from","to","relationType"}.',
            ) from None
    return entities, relations


async def import_memory_json(graph: GraphKeeper, user_id: str, lines: Iterable[str]) -> MemoryJsonImport:
    """Add a memory-server file's entities, observations and relations to the user's graph (again: no change)."""
    entities, relations = parse_memory_json(lines)
    created_entities = created_relations = created_memories = 0
    for start in range(0, len(entities), MAX_GRAPH_ITEMS):
        change = await graph.create_entities(user_id, entities[start : start + MAX_GRAPH_ITEMS])
        created_entities += len(change.entities_created)
        created_memories += change.memories_created
    for start in range(0, len(relations), MAX_GRAPH_ITEMS):
        change = await graph.create_relations(user_id, relations[start : start + MAX_GRAPH_ITEMS])
        created_entities += len(change.entities_created)
        created_relations += change.relations_created
        created_memories += change.memories_created
    return MemoryJsonImport(
        entities=len(entities),
        relations=len(relations),
        observations=sum(len(e.observations) for e in entities),
        entities_created=created_entities,
        relations_created=created_relations,
        memories_created=created_memories,
    )
