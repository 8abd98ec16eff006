"""The `remember_many` tool: store a batch of memories in one call, e.g. when importing past conversations."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import BaseModel, ConfigDict, Field

from engram.config import MAX_BATCH as MAX_ITEMS
from engram.core.models import (
    MAX_METADATA_KEYS,
    Kind,
    RememberItem,
    RememberResult,
    Role,
    Sentiment,
    Visibility,
)
from engram.tools._fields import MAX_CONTENT_CHARS, AgentIdArg, Id, Label, LabelsArg, Metadata, UserIdArg
from engram.tools.state import AppState, caller, domain_errors, memory_of


class BatchItem(BaseModel):
    """One memory of the batch, with the bounds the schema publishes (the core's RememberItem, checked here)."""

    model_config = ConfigDict(extra="forbid")

    content: Annotated[str, Field(max_length=MAX_CONTENT_CHARS)]
    session_id: Id | None = None
    project: Id | None = None
    role: Role | None = None
    kind: Kind | None = None
    tags: LabelsArg = None
    category: Label | None = None
    entities: LabelsArg = None
    sentiment: Sentiment | None = None
    resolved: bool | None = None
    visibility: Visibility = Visibility.SHARED
    metadata: Annotated[Metadata | None, Field(max_length=MAX_METADATA_KEYS)] = None
    importance: Annotated[float | None, Field(ge=0.0, le=1.0)] = None
    occurred_at: datetime | None = None

    def core(self) -> RememberItem:
        """The core's item (the service checks the values)."""
        given = {name: value for name, value in self.model_dump().items() if value is not None}
        return RememberItem.model_validate(given)


class RememberManyResult(BaseModel):
    """Outcome of `remember_many`, one result per item in order."""

    results: list[RememberResult]
    created: int = Field(description="How many items were new.")


async def remember_many(
    items: Annotated[
        list[BatchItem],
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
        results = await memory.remember_many(who.user_id, [item.core() for item in items], agent_id=who.agent_id)
    return RememberManyResult(results=results, created=sum(r.created for r in results))
