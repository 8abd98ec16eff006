"""The `remember` tool: store something worth keeping about a user."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import Field

from engram.core.models import Kind, RememberItem, RememberResult, Role, Sentiment, Visibility
from engram.core.values import Entities, Label, MemoryIds, Metadata, Tags, Unit, UtcDate
from engram.tools._fields import MAX_CONTENT_CHARS, AgentIdArg, OptionalSessionIdArg, ProjectArg, UserIdArg
from engram.tools.state import AppState, caller, domain_errors, memory_of


async def remember(
    content: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MAX_CONTENT_CHARS,
            description="The text to remember, verbatim.",
        ),
    ],
    ctx: Context[AppState],
    user_id: UserIdArg = None,
    session_id: OptionalSessionIdArg = None,
    agent_id: AgentIdArg = None,
    project: ProjectArg = None,
    role: Annotated[Role | None, Field(description="Who said it (a turn; default 'user').")] = None,
    kind: Annotated[Kind | None, Field(description="Default: 'turn' with a session, else 'fact'.")] = None,
    tags: Annotated[Tags, Field(description="Labels to filter by later, e.g. 'billing'.")] = None,
    category: Annotated[Label | None, Field(description="One category label, e.g. 'preference'.")] = None,
    metadata: Annotated[Metadata, Field(description="Extra key/values; 'speaker' names who said it.")] = None,
    importance: Annotated[Unit, Field(description="How much it matters.")] = None,
    occurred_at: Annotated[UtcDate | None, Field(description="When it happened (default: now).")] = None,
    entities: Annotated[Entities, Field(description="People, organisations, products, places it mentions.")] = None,
    sentiment: Annotated[Sentiment | None, Field(description="Its sentiment, if known.")] = None,
    resolved: Annotated[bool | None, Field(description="For an issue: whether it is resolved.")] = None,
    visibility: Annotated[
        Visibility, Field(description="'private': only agent_id may recall it; 'shared': every agent.")
    ] = Visibility.SHARED,
    supersedes: Annotated[
        MemoryIds, Field(description="Ids of older memories this replaces (supersede_candidates).")
    ] = None,
) -> RememberResult:
    """Save something lasting about the user (a fact, preference, decision, commitment) or log a conversation turn
    (with session_id and role), to recall in later conversations. Saving the same content twice is harmless
    (`created` is false).
    """
    with domain_errors():
        who = caller(user_id, agent_id, access="write")
    memory = await memory_of(ctx)
    # The arguments were parsed by the types of RememberItem's fields; gathering them parses nothing new.
    item = RememberItem(
        content=content,
        session_id=session_id,
        project=project,
        role=role,
        kind=kind,
        tags=tags,
        category=category,
        metadata=metadata,
        importance=importance,
        occurred_at=occurred_at,
        visibility=visibility,
        entities=entities,
        sentiment=sentiment,
        resolved=resolved,
        supersedes=supersedes,
    )
    with domain_errors():
        return await memory.remember_item(who.user_id, item, agent_id=who.agent_id)
