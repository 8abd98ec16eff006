"""What recall takes from a user's graph: the entities a question names and their one-hop neighbours."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import partial

from engram.core.context import MemoryContext
from engram.core.filters import MemoryFilters
from engram.core.graph_models import Entity, entity_key
from engram.core.identity import UserKey
from engram.core.ports import GraphStore

#: Recall looks at this many of the user's entities for names in a question, and follows this many relations.
SCAN_ENTITIES = 5_000
_SCAN_RELATIONS = 200


@dataclass(frozen=True)
class GraphLinks:
    """The entities a question names and their one-hop neighbours, as the names memories carry."""

    direct: list[str] = field(default_factory=list)
    neighbours: list[str] = field(default_factory=list)


def _words(text: str) -> str:
    """`text` as space-separated words in the compared form, padded, for whole-name matching."""
    return " " + " ".join(re.findall(r"\w+", entity_key(text))) + " "


async def links(ctx: MemoryContext, graph: GraphStore, key: UserKey, query: str, viewer: MemoryFilters) -> GraphLinks:
    """The entities `query` names (by name or alias, as whole words) and their one-hop neighbours."""
    everyone = await ctx.run(partial(graph.entities, key, viewer, None, SCAN_ENTITIES))
    if not everyone:
        return GraphLinks()
    words = _words(query)
    named = [e for e in everyone if any(f" {k} " in words for k in (_words(n).strip() for n in e.names) if k)]
    if not named:
        return GraphLinks()
    named_keys = {k for e in named for k in e.keys}
    edges = await ctx.run(partial(graph.relations, key, viewer, sorted(named_keys), _SCAN_RELATIONS))
    by_key = {k: e for e in everyone for k in e.keys}
    neighbours: dict[str, Entity] = {}
    for edge in edges:
        for end in (edge.source, edge.target):
            other = by_key.get(entity_key(end))
            if other is not None and not (set(other.keys) & named_keys):
                neighbours.setdefault(other.id, other)
    return GraphLinks(
        direct=list(dict.fromkeys(n for e in named for n in e.names)),
        neighbours=list(dict.fromkeys(n for e in neighbours.values() for n in e.names)),
    )
