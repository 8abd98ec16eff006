"""The `create_relations` tool: link two entities of the user's graph by a typed relation."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import Field

from engram.core.graph_models import MAX_GRAPH_ITEMS, GraphChange, RelationIn
from engram.core.models import Visibility
from engram.tools._fields import AgentIdArg, UserIdArg
from engram.tools._graph import GraphVisibilityArg, graph_of
from engram.tools.state import AppState, caller, domain_errors, memory_of


async def create_relations(
    relations: Annotated[list[RelationIn], Field(min_length=1, max_length=MAX_GRAPH_ITEMS)],
    ctx: Context[AppState],
    user_id: UserIdArg = None,
    agent_id: AgentIdArg = None,
    visibility: GraphVisibilityArg = Visibility.SHARED,
) -> GraphChange:
    """Add relations between entities (from, to, relationType in the active voice, e.g. works_at); missing entities
    are created. Each relation is also remembered as a fact, so recall can follow it.
    """
    with domain_errors():
        who = caller(user_id, agent_id, access="write")
    memory = await memory_of(ctx)
    with domain_errors():
        return await graph_of(memory).create_relations(
            who.user_id, relations, agent_id=who.agent_id, visibility=visibility
        )
