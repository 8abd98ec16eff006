"""Knowledge ingest tools: `ingest_files` (paths under the operator's roots) and `ingest_text` (a document as text)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from engram.core.knowledge_models import (
    MAX_SOURCE_NAME_CHARS,
    MAX_TEXT_CHARS,
    DocumentFormat,
    IngestReport,
    Scope,
)
from engram.tools._fields import UserIdArg
from engram.tools.progress import progress_of
from engram.tools.state import AppState, Caller, caller, domain_errors, memory_of

if TYPE_CHECKING:
    from engram.core.knowledge import KnowledgeService
    from engram.core.service import MemoryService

ScopeArg = Annotated[
    Scope,
    Field(
        description="'user' (default): knowledge only this user sees; 'global': knowledge every user of this "
        "server sees (needs administrator access)."
    ),
]


_Globs = Annotated[list[Annotated[str, Field(max_length=300)]] | None, Field(max_length=32)]


def knowledge_of(memory: MemoryService) -> KnowledgeService:
    """The knowledge service, or a tool error when this server runs without knowledge memory."""
    if memory.knowledge is None:
        raise ToolError("Knowledge memory is not available on this server.")
    return memory.knowledge


def whose(who: Caller, scope: Scope) -> str | None:
    """Whose knowledge a call acts on: the caller's user id, or None for global knowledge (core resolves the key)."""
    return None if scope == "global" else who.user_id


async def ingest_files(
    paths: Annotated[
        list[Annotated[str, Field(max_length=4096)]],
        Field(
            min_length=1,
            max_length=100,
            description="Files or folders on the server to ingest (folders recursively). They must lie under a "
            "folder the operator allowed (ENGRAM_KNOWLEDGE_ROOTS).",
        ),
    ],
    ctx: Context[AppState],
    user_id: UserIdArg = None,
    scope: ScopeArg = "user",
    include: Annotated[
        _Globs, Field(description="Only files matching one of these globs (e.g. '*.md', 'policies/*').")
    ] = None,
    exclude: Annotated[_Globs, Field(description="Leave out files matching one of these globs.")] = None,
) -> IngestReport:
    """Add documents (Markdown, text, HTML, PDF) under the server's allowed folders to knowledge memory; unchanged
    files are skipped, changed ones replaced, deleted ones removed. Unreadable files are listed in `failed`. Reports
    progress.
    """
    with domain_errors():
        who = caller(user_id, access="admin" if scope == "global" else "write")
    memory = await memory_of(ctx)
    knowledge = knowledge_of(memory)

    with domain_errors():
        return await knowledge.ingest_paths(
            whose(who, scope),
            paths,
            include=include or [],
            exclude=exclude or [],
            confined=True,
            progress=progress_of(ctx),
        )


async def ingest_text(
    source: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MAX_SOURCE_NAME_CHARS,
            description="A stable name for the document (e.g. 'handbook/leave-policy.md'); ingesting the same "
            "name again replaces its earlier version.",
        ),
    ],
    text: Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS, description="The document's full text.")],
    ctx: Context[AppState],
    user_id: UserIdArg = None,
    scope: ScopeArg = "user",
    format: Annotated[
        DocumentFormat,
        Field(description="How to read `text`: 'markdown' (default), 'text' or 'html' (PDF only as a file)."),
    ] = DocumentFormat.MARKDOWN,
    title: Annotated[
        str | None, Field(max_length=300, description="The document's title (default: its first heading).")
    ] = None,
) -> IngestReport:
    """Add one document, sent as text, to knowledge memory so recall can cite it.

    Sending the same `source` again replaces the earlier version.
    """
    with domain_errors():
        who = caller(user_id, access="admin" if scope == "global" else "write")
    memory = await memory_of(ctx)
    knowledge = knowledge_of(memory)
    with domain_errors():
        return await knowledge.ingest_text(whose(who, scope), source, text, format, title)
