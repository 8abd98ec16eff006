"""The `update_memory` tool: correct or annotate a stored memory."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import Field

from engram.core.models import MAX_TAGS, MemoryUpdated, Visibility
from engram.tools._fields import MemoryIdArg, UserIdArg, ViewerAgentArg
from engram.tools.state import AppState, caller, domain_errors, memory_of


async def update_memory(
    memory_id: MemoryIdArg,
    ctx: Context[AppState],
    user_id: UserIdArg = None,
    agent_id: ViewerAgentArg = None,
    resolved: Annotated[bool | None, Field(description="Mark the issue or request resolved (true) or open.")] = None,
    tags: Annotated[
        list[str] | None, Field(max_length=MAX_TAGS, description="The new tags (replace the old; [] clears them).")
    ] = None,
    category: Annotated[str | None, Field(max_length=64, description="The new category label.")] = None,
    importance: Annotated[float | None, Field(ge=0.0, le=1.0, description="The new importance, 0 to 1.")] = None,
    content: Annotated[
        str | None,
        Field(
            min_length=1,
            description="Corrected text. It is re-embedded and re-indexed and gets a new id (returned); "
            "created_at is kept.",
        ),
    ] = None,
    visibility: Annotated[
        Visibility | None,
        Field(description="'shared' or 'private'; only the agent that wrote the memory may change it."),
    ] = None,
) -> MemoryUpdated:
    """Change a stored memory: mark it resolved, retag or recategorise it, adjust importance, or correct its text.

    Call this when an issue the user raised is settled (resolved=true), when a remembered fact changed and
    should be corrected rather than duplicated, or to organise memories. Only the given fields change;
    updated_at is set. To delete a memory use forget_memory.
    """
    with domain_errors():
        who = caller(user_id, agent_id, access="write")
    memory = await memory_of(ctx)
    with domain_errors():
        return await memory.update_memory(
            who.user_id,
            memory_id,
            agent_id=who.agent_id,
            content=content,
            tags=tags,
            category=category,
            importance=importance,
            resolved=resolved,
            visibility=visibility,
        )
