"""The `remember` tool: store something worth keeping about a user."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import Field

from engram.core.models import (
    MAX_METADATA_KEYS,
    MAX_TAGS,
    Kind,
    MetadataValue,
    RememberResult,
    Role,
    Sentiment,
    Visibility,
)
from engram.tools._fields import AgentIdArg, OptionalSessionIdArg, UserIdArg
from engram.tools.state import AppState, caller, domain_errors, memory_of


async def remember(
    content: Annotated[
        str,
        Field(
            min_length=1,
            description="The text to remember, verbatim: a fact, a preference, or one turn of the conversation. "
            "Limit: 8,000 characters unless the server raised ENGRAM_MAX_CONTENT_CHARS.",
        ),
    ],
    ctx: Context[AppState],
    user_id: UserIdArg = None,
    session_id: OptionalSessionIdArg = None,
    agent_id: AgentIdArg = None,
    role: Annotated[
        Role | None, Field(description="Who said it, for a conversation turn. Defaults to 'user' with a session.")
    ] = None,
    kind: Annotated[
        Kind | None, Field(description="'fact' (default without a session) or 'turn' (default with one).")
    ] = None,
    tags: Annotated[
        list[str] | None, Field(max_length=MAX_TAGS, description="Short labels to filter by later, e.g. 'billing'.")
    ] = None,
    category: Annotated[str | None, Field(max_length=64, description="One category label, e.g. 'preference'.")] = None,
    metadata: Annotated[
        dict[str, MetadataValue] | None,
        Field(
            max_length=MAX_METADATA_KEYS,
            description="Extra key/value pairs (strings, numbers, booleans). A 'speaker' entry names who said it.",
        ),
    ] = None,
    importance: Annotated[float | None, Field(ge=0.0, le=1.0, description="How much this matters, 0 to 1.")] = None,
    occurred_at: Annotated[
        datetime | None,
        Field(description="When it happened (ISO 8601), for importing past conversations. Default: now."),
    ] = None,
    entities: Annotated[
        list[str] | None,
        Field(max_length=MAX_TAGS, description="People, organisations, products, places it mentions (optional)."),
    ] = None,
    sentiment: Annotated[Sentiment | None, Field(description="Its sentiment, if you know it (optional).")] = None,
    resolved: Annotated[
        bool | None, Field(description="For an issue or request: whether it is resolved (update later).")
    ] = None,
    visibility: Annotated[
        Visibility,
        Field(
            description="'shared' (default): every agent of this user may recall it; 'private': only the agent "
            "given as agent_id."
        ),
    ] = Visibility.SHARED,
) -> RememberResult:
    """Save something about the user so it can be recalled in later conversations.

    Call this when the user shares a lasting fact, preference, decision, or commitment, or to log each turn of
    a conversation (pass session_id and role). Storing the same content twice for a user is harmless: it is
    kept once and `created` is false.
    """
    with domain_errors():
        who = caller(user_id, agent_id, access="write")
    memory = await memory_of(ctx)
    with domain_errors():
        return await memory.remember(
            who.user_id,
            content,
            session_id=session_id,
            agent_id=who.agent_id,
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
        )
