"""The `read_graph` tool: the user's whole knowledge graph."""

from __future__ import annotations

from mcp.server.mcpserver import Context

from engram.core.graph_models import KnowledgeGraph
from engram.tools._fields import UserIdArg, ViewerAgentArg
from engram.tools._graph import graph_of
from engram.tools.state import AppState, caller, domain_errors, memory_of


async def read_graph(
    ctx: Context[AppState],
    user_id: UserIdArg = None,
    agent_id: ViewerAgentArg = None,
) -> KnowledgeGraph:
    """Read the user's whole knowledge graph: entities with their observations, and relations (with validity)."""
    with domain_errors():
        who = caller(user_id, agent_id, access="read")
    memory = await memory_of(ctx)
    with domain_errors():
        return await graph_of(memory).read_graph(who.user_id, agent_id=who.agent_id)
