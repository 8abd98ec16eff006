"""The `remember_many` tool: store a batch of memories in one call, e.g. when importing past conversations."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from engram.core.limits import MAX_BATCH as MAX_ITEMS
from engram.core.models import RememberItem, RememberResult
from engram.tools._fields import AgentIdArg, UserIdArg
from engram.tools.state import AppState, caller, domain_errors, memory_of


class RememberManyResult(BaseModel):
    """Outcome of `remember_many`, one result per item in order."""

    results: list[RememberResult]
    created: int = Field(description="How many items were new.")


async def remember_many(
    items: Annotated[
        list[RememberItem],
        Field(min_length=1, max_length=MAX_ITEMS, description="Memories stored in order (fields as in remember)."),
    ],
    ctx: Context[AppState],
    user_id: UserIdArg = None,
    agent_id: AgentIdArg = None,
) -> RememberManyResult:
    """Save many memories of one user in one call (e.g.

    importing past conversations with session_id, role and occurred_at). If any item is invalid, nothing is stored
    and the error names the item.
    """
    with domain_errors():
        who = caller(user_id, agent_id, access="write")
    memory = await memory_of(ctx)
    with domain_errors():
        results = await memory.remember_many(who.user_id, items, agent_id=who.agent_id)
    return RememberManyResult(results=results, created=sum(r.created for r in results))
