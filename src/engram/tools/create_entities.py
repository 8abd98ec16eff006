"""The `create_entities` tool: add people, organisations, places, products or projects to the user's graph."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import Field

from engram.core.graph_models import MAX_GRAPH_ITEMS, EntityIn, GraphChange
from engram.core.models import Visibility
from engram.tools._fields import AgentIdArg, UserIdArg
from engram.tools._graph import GraphVisibilityArg, graph_of
from engram.tools.state import AppState, caller, domain_errors, memory_of


async def create_entities(
    entities: Annotated[list[EntityIn], Field(min_length=1, max_length=MAX_GRAPH_ITEMS)],
    ctx: Context[AppState],
    user_id: UserIdArg = None,
    agent_id: AgentIdArg = None,
    visibility: GraphVisibilityArg = Visibility.SHARED,
) -> GraphChange:
    """Add entities to the user's knowledge graph (name, entityType, observations, aliases); observations become
    memories that recall finds. An existing name (or alias) is kept and gains the new aliases.
    """
    with domain_errors():
        who = caller(user_id, agent_id, access="write")
    memory = await memory_of(ctx)
    with domain_errors():
        return await graph_of(memory).create_entities(
            who.user_id, entities, agent_id=who.agent_id, visibility=visibility
        )
