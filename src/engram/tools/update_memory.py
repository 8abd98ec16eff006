"""The `update_memory` tool: correct or annotate a stored memory."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import Field

from engram.core.models import MEMORY_ID_PATTERN, MemoryUpdated, Visibility
from engram.tools._fields import MAX_CONTENT_CHARS, Label, LabelsArg, MemoryIdArg, UserIdArg, ViewerAgentArg
from engram.tools.state import AppState, caller, domain_errors, memory_of


async def update_memory(
    memory_id: MemoryIdArg,
    ctx: Context[AppState],
    user_id: UserIdArg = None,
    agent_id: ViewerAgentArg = None,
    resolved: Annotated[bool | None, Field(description="Resolved (true) or open.")] = None,
    tags: Annotated[LabelsArg, Field(description="Replace the tags ([] clears them).")] = None,
    category: Label | None = None,
    importance: Annotated[float | None, Field(ge=0.0, le=1.0)] = None,
    content: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=MAX_CONTENT_CHARS,
            description="Corrected text; it gets a new id (returned), created_at is kept.",
        ),
    ] = None,
    visibility: Annotated[
        Visibility | None,
        Field(description="Only the writing agent may change it."),
    ] = None,
    valid_until: Annotated[datetime | None, Field(description="It no longer holds from then (ISO 8601).")] = None,
    superseded_by: Annotated[
        str | None, Field(pattern=MEMORY_ID_PATTERN, description="Id of the newer memory that replaces it.")
    ] = None,
) -> MemoryUpdated:
    """Change a stored memory: mark it resolved, retag, recategorise, reweigh, or correct its text (new id returned).

    Only the given fields change. Prefer this to storing a duplicate.
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
            valid_until=valid_until,
            superseded_by=superseded_by,
        )
