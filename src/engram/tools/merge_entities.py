"""The `merge_entities` tool: record that several names of the user's graph are one entity."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import Field

from engram.core.graph_models import MAX_ALIASES, GraphNode
from engram.tools._fields import AgentIdArg, UserIdArg
from engram.tools._graph import Name, graph_of
from engram.tools.state import AppState, caller, domain_errors, memory_of


async def merge_entities(
    keep: Name,
    merge: Annotated[list[Name], Field(min_length=1, max_length=MAX_ALIASES)],
    ctx: Context[AppState],
    user_id: UserIdArg = None,
    agent_id: AgentIdArg = None,
) -> GraphNode:
    """When the user says two names are one ("Dr. Patel" is "Priya Patel"): `merge` become aliases of `keep` and
    their relations move to it.
    """
    with domain_errors():
        who = caller(user_id, agent_id, access="write")
    memory = await memory_of(ctx)
    with domain_errors():
        return await graph_of(memory).merge_entities(who.user_id, keep, merge, agent_id=who.agent_id)
