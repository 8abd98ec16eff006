"""The `forget_source` tool: remove one ingested document from knowledge memory."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import Field

from engram.core.knowledge_models import SourceRemoved
from engram.tools._fields import UserIdArg
from engram.tools.ingest import ScopeArg, knowledge_of, whose
from engram.tools.state import AppState, caller, domain_errors, memory_of


async def forget_source(
    source: Annotated[
        str,
        Field(
            min_length=1,
            max_length=4096,
            description="The source to remove, exactly as listed by the engram://users/{user_id}/knowledge "
            "resource (a file path or the name given to ingest_text).",
        ),
    ],
    ctx: Context[AppState],
    user_id: UserIdArg = None,
    scope: ScopeArg = "user",
) -> SourceRemoved:
    """Remove an ingested document from knowledge memory (every chunk of it); the file itself is not touched.

    Global sources need administrator access.
    """
    with domain_errors():
        who = caller(user_id, access="admin" if scope == "global" else "write")
    memory = await memory_of(ctx)
    knowledge = knowledge_of(memory)
    with domain_errors():
        return await knowledge.remove_source(whose(who, scope), source)
