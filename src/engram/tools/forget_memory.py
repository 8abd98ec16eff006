"""The `forget_memory` tool: delete one memory that is wrong or that the user wants gone."""

from __future__ import annotations

from mcp.server.mcpserver import Context

from engram.core.models import MemoryForgotten
from engram.tools._fields import MemoryIdArg, UserIdArg, ViewerAgentArg
from engram.tools.state import AppState, caller, domain_errors, memory_of


async def forget_memory(
    memory_id: MemoryIdArg,
    ctx: Context[AppState],
    user_id: UserIdArg = None,
    agent_id: ViewerAgentArg = None,
) -> MemoryForgotten:
    """Delete one memory that is wrong or that the user wants gone (from long-term memory and session transcripts).

    To erase everything about a user, use forget_user.
    """
    with domain_errors():
        who = caller(user_id, agent_id, access="write")
    memory = await memory_of(ctx)
    with domain_errors():
        return await memory.forget_memory(who.user_id, memory_id, agent_id=who.agent_id)
