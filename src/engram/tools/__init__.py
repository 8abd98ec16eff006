"""MCP tools: one thin module per tool, each delegating to the core MemoryService."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

from engram.tools.forget_memory import forget_memory
from engram.tools.forget_source import forget_source
from engram.tools.forget_user import forget_user
from engram.tools.ingest import ingest_files, ingest_text
from engram.tools.list_memories import list_memories
from engram.tools.recall import recall
from engram.tools.remember import remember
from engram.tools.remember_many import remember_many
from engram.tools.summarize_session import summarize_session
from engram.tools.update_memory import update_memory


def register_tools(server: MCPServer[Any]) -> None:
    """Add Engram's tools to `server`, with hints that let clients decide what needs the user's approval."""
    server.add_tool(
        remember,
        title="Remember",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
        ),
    )
    server.add_tool(
        remember_many,
        title="Remember many",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
        ),
    )
    server.add_tool(
        recall,
        title="Recall",
        annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
    )
    server.add_tool(
        list_memories,
        title="List memories",
        annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
    )
    server.add_tool(
        update_memory,
        title="Update memory",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
        ),
    )
    server.add_tool(
        summarize_session,
        title="Summarize session",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
        ),
    )
    server.add_tool(
        forget_memory,
        title="Forget memory",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False
        ),
    )
    server.add_tool(
        forget_user,
        title="Forget user",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
        ),
    )
    server.add_tool(
        ingest_files,
        title="Ingest files",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
        ),
    )
    server.add_tool(
        ingest_text,
        title="Ingest text",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
        ),
    )
    server.add_tool(
        forget_source,
        title="Forget knowledge source",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False
        ),
    )
