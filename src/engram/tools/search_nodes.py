"""The `search_nodes` tool: find entities of the user's graph by name, type or what is known about them."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import Field

from engram.core.graph_models import KnowledgeGraph
from engram.core.models import MAX_QUERY_CHARS
from engram.tools._fields import UserIdArg, ViewerAgentArg
from engram.tools._graph import graph_of
from engram.tools.state import AppState, caller, domain_errors, memory_of


async def search_nodes(
    query: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS)],
    ctx: Context[AppState],
    user_id: UserIdArg = None,
    agent_id: ViewerAgentArg = None,
) -> KnowledgeGraph:
    """Find entities whose name, alias or type contains the query, or whose observations match it by meaning, with
    their observations and relations.
    """
    with domain_errors():
        who = caller(user_id, agent_id, access="read")
    memory = await memory_of(ctx)
    with domain_errors():
        return await graph_of(memory).search_nodes(who.user_id, query, agent_id=who.agent_id)
