"""The `open_nodes` tool: read named entities of the user's graph with their observations and relations."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import Field

from engram.core.graph_models import MAX_GRAPH_ITEMS, KnowledgeGraph
from engram.tools._fields import UserIdArg, ViewerAgentArg
from engram.tools._graph import Name, graph_of
from engram.tools.state import AppState, caller, domain_errors, memory_of


async def open_nodes(
    names: Annotated[list[Name], Field(min_length=1, max_length=MAX_GRAPH_ITEMS)],
    ctx: Context[AppState],
    user_id: UserIdArg = None,
    agent_id: ViewerAgentArg = None,
) -> KnowledgeGraph:
    """Read entities by name or alias: their current observations and every relation from or to them."""
    with domain_errors():
        who = caller(user_id, agent_id, access="read")
    memory = await memory_of(ctx)
    with domain_errors():
        return await graph_of(memory).open_nodes(who.user_id, names, agent_id=who.agent_id)
