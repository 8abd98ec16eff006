"""The `list_memories` tool: browse a user's memories by metadata, without a search query."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import Field

from engram.core.limits import MAX_OFFSET, MAX_PAGE
from engram.core.models import MemoryPage
from engram.tools._fields import UserIdArg, ViewerAgentArg
from engram.tools._filters import FiltersArg
from engram.tools.state import AppState, caller, domain_errors, memory_of


async def list_memories(
    ctx: Context[AppState],
    user_id: UserIdArg = None,
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE)] = 20,
    offset: Annotated[int, Field(ge=0, le=MAX_OFFSET, description="The previous page's next_offset.")] = 0,
    agent_id: ViewerAgentArg = None,
    filters: FiltersArg = None,
) -> MemoryPage:
    """List the user's memories matching metadata filters, newest first, a page at a time: to review or audit what is
    stored. Use recall to search by meaning.
    """
    with domain_errors():
        who = caller(user_id, agent_id, access="read")
    memory = await memory_of(ctx)
    with domain_errors():
        return await memory.list_memories(
            who.user_id, filters=filters, limit=limit, offset=offset, agent_id=who.agent_id
        )
