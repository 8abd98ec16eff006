"""The `list_memories` tool: browse a user's memories by metadata, without a search query."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import Field

from engram.core.models import MAX_OFFSET, MAX_PAGE, MemoryPage
from engram.tools._fields import UserIdArg, ViewerAgentArg
from engram.tools._filters import (
    CategoryArg,
    EntityArg,
    ExcludeAgentsArg,
    FromAgentsArg,
    FromSessionArg,
    KindArg,
    MinImportanceArg,
    ResolvedArg,
    SentimentArg,
    SharedOnlyArg,
    SinceArg,
    TagsAllArg,
    TagsAnyArg,
    UntilArg,
    build_filters,
)
from engram.tools.state import AppState, caller, domain_errors, memory_of


async def list_memories(
    ctx: Context[AppState],
    user_id: UserIdArg = None,
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE, description=f"Memories per page (1 to {MAX_PAGE}).")] = 20,
    offset: Annotated[
        int, Field(ge=0, le=MAX_OFFSET, description="How many to skip: the `next_offset` of the previous page.")
    ] = 0,
    agent_id: ViewerAgentArg = None,
    from_agents: FromAgentsArg = None,
    exclude_agents: ExcludeAgentsArg = None,
    shared_only: SharedOnlyArg = False,
    from_session: FromSessionArg = None,
    tags: TagsAnyArg = None,
    tags_all: TagsAllArg = None,
    entity: EntityArg = None,
    sentiment: SentimentArg = None,
    category: CategoryArg = None,
    kind: KindArg = None,
    resolved: ResolvedArg = None,
    min_importance: MinImportanceArg = None,
    since: SinceArg = None,
    until: UntilArg = None,
) -> MemoryPage:
    """List the user's memories that match metadata filters, newest first, a page at a time.

    Use it to review or audit what is stored ("open billing issues", "everything tagged 'travel' this month",
    "what the support agent wrote") when there is no question to search by; use recall to search by meaning.
    """
    with domain_errors():
        who = caller(user_id, agent_id, access="read")
    filters = build_filters(
        from_agents=from_agents,
        exclude_agents=exclude_agents,
        shared_only=shared_only,
        from_session=from_session,
        tags=tags,
        tags_all=tags_all,
        entity=entity,
        sentiment=sentiment,
        category=category,
        kind=kind,
        resolved=resolved,
        min_importance=min_importance,
        since=since,
        until=until,
    )
    memory = await memory_of(ctx)
    with domain_errors():
        return await memory.list_memories(
            who.user_id, filters=filters, limit=limit, offset=offset, agent_id=who.agent_id
        )
