"""The `add_observations` tool: record facts about existing entities of the user's graph."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import Field

from engram.core.graph_models import MAX_GRAPH_ITEMS, GraphChange, ObservationsIn
from engram.core.models import Visibility
from engram.tools._fields import AgentIdArg, UserIdArg
from engram.tools._graph import GraphVisibilityArg, graph_of
from engram.tools.state import AppState, caller, domain_errors, memory_of


async def add_observations(
    observations: Annotated[list[ObservationsIn], Field(min_length=1, max_length=MAX_GRAPH_ITEMS)],
    ctx: Context[AppState],
    user_id: UserIdArg = None,
    agent_id: AgentIdArg = None,
    visibility: GraphVisibilityArg = Visibility.SHARED,
) -> GraphChange:
    """Add observations (entityName, contents) to existing entities; each is stored as a memory naming the entity."""
    with domain_errors():
        who = caller(user_id, agent_id, access="write")
    memory = await memory_of(ctx)
    with domain_errors():
        return await graph_of(memory).add_observations(
            who.user_id, observations, agent_id=who.agent_id, visibility=visibility
        )
