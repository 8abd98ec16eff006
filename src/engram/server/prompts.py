"""MCP prompts: the layered context of the design, assembled for a new user message."""

from __future__ import annotations

from mcp import MCPError
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import INVALID_PARAMS

from engram.core.errors import EngramError
from engram.core.models import Citation, RecallResult
from engram.tools.state import AppState, caller

SYSTEM_TEXT = (
    "You are an assistant with persistent memory (Engram). Use the memories below when they are relevant, "
    "do not invent memories, and prefer the most recent information when memories disagree. When the user "
    "shares something lasting (a fact, preference or decision), save it with the `remember` tool."
)
PROMPT_MEMORIES = 5


def _cite(citation: Citation) -> str:
    """A short citation: title, heading path, source, and page or chunk position."""
    where = " > ".join([citation.title, *[h for h in citation.heading_path if h != citation.title]])
    place = f"p. {citation.page}" if citation.page else f"chunk {citation.position + 1}/{citation.chunks}"
    return f"{where} ({citation.source}, {place})"


def render_layered_context(message: str, recalled: RecallResult) -> str:
    """Lay out system text, long-term memories, the session's working memory and the new message."""
    sections = [f"## System\n{SYSTEM_TEXT}"]
    if recalled.memories:
        lines = [f"- ({hit.memory.created_at:%Y-%m-%d}) {hit.memory.content}" for hit in recalled.memories]
        sections.append("## Relevant long-term memories\n" + "\n".join(lines))
    else:
        sections.append("## Relevant long-term memories\n(none yet)")
    if recalled.knowledge:
        lines = [f"- [{_cite(hit.citation)}] {hit.content}" for hit in recalled.knowledge]
        sections.append("## Relevant knowledge (cite the source in brackets when you use it)\n" + "\n".join(lines))
    if recalled.working:
        lines = [
            f"- [summary of earlier turns] {t.content}" if t.is_summary else f"- {t.role or 'user'}: {t.content}"
            for t in recalled.working
        ]
        sections.append("## This session so far (working memory)\n" + "\n".join(lines))
    sections.append(f"## New message\n{message}")
    return "\n\n".join(sections)


async def layered_context(user_id: str, message: str, ctx: Context[AppState], session_id: str | None = None) -> str:
    """Build the context for answering `message`: system text, relevant memories, the session so far."""
    try:
        user_id = caller(user_id, access="read").user_id
        memory = await ctx.request_context.lifespan_context.memory.get()
        recalled = await memory.recall(user_id, message, session_id=session_id or None, top_k=PROMPT_MEMORIES)
    except EngramError as exc:
        # Only an MCPError's message survives prompt rendering; anything else is replaced by a generic one.
        raise MCPError(code=INVALID_PARAMS, message=str(exc)) from exc
    return render_layered_context(message, recalled)


def register_prompts(server: MCPServer[AppState]) -> None:
    """Add Engram's prompts to `server`."""
    server.prompt(name="layered_context", title="Answer with memory")(layered_context)
