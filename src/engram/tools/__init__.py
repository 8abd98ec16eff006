"""MCP tools: one thin module per tool, each delegating to the core MemoryService."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver.tools import Tool
from mcp.types import ToolAnnotations

from engram.config import Settings
from engram.tools.add_observations import add_observations
from engram.tools.arguments import forbid_unknown
from engram.tools.create_entities import create_entities
from engram.tools.create_relations import create_relations
from engram.tools.forget_memory import forget_memory
from engram.tools.forget_source import forget_source
from engram.tools.forget_user import forget_user
from engram.tools.ingest import ingest_files, ingest_text
from engram.tools.list_memories import list_memories
from engram.tools.merge_entities import merge_entities
from engram.tools.open_nodes import open_nodes
from engram.tools.read_graph import read_graph
from engram.tools.recall import recall
from engram.tools.remember import remember
from engram.tools.remember_many import remember_many
from engram.tools.schema import compact_input, compact_output, description
from engram.tools.search_nodes import search_nodes
from engram.tools.summarize_session import summarize_session
from engram.tools.update_memory import update_memory

#: The everyday memory tools a model needs in any conversation: the `core` profile (ENGRAM_TOOLS).
CORE_TOOLS = frozenset(
    {"remember", "recall", "list_memories", "update_memory", "forget_memory", "summarize_session", "forget_user"}
)


def _tool(fn: Callable[..., Any], *, title: str, annotations: ToolAnnotations) -> Tool:
    """One tool as the SDK builds it, refusing arguments it does not declare, with compact schemas."""
    tool = Tool.from_function(fn, title=title, annotations=annotations)
    strict = forbid_unknown(tool.fn_metadata.arg_model)
    tool.fn_metadata.arg_model = strict
    tool.parameters = compact_input(strict.model_json_schema(by_alias=True))
    tool.description = description(tool.description)
    if tool.fn_metadata.output_schema is not None:
        # Published only: results are still validated against the output model itself.
        tool.fn_metadata.output_schema = compact_output(tool.fn_metadata.output_schema)
    return tool


#: The knowledge-graph tools, in the official MCP memory server's terms: the `graph` profile, with the core ones.
#: Not in `all`: together they would cost a model more context than the two profiles' budgets allow.
GRAPH_TOOLS = frozenset(
    {
        "create_entities",
        "create_relations",
        "add_observations",
        "merge_entities",
        "search_nodes",
        "open_nodes",
        "read_graph",
    }
)


def listed(name: str, settings: Settings) -> bool:
    """Whether the tool `name` is listed under `settings`: in the chosen profile, and able to work there."""
    if settings.tools == "core":
        return name in CORE_TOOLS
    if settings.tools == "graph":
        return name in CORE_TOOLS | GRAPH_TOOLS
    if name in GRAPH_TOOLS:
        return False
    # ingest_files refuses every path until the operator names the folders it may read.
    return name != "ingest_files" or bool(settings.knowledge_roots)


def engram_tools(settings: Settings) -> list[Tool]:
    """The tools `settings` lists, with hints that let clients decide what needs the user's approval.

    Only the listed ones are built: each costs its argument and output models and JSON schemas (~20 ms of CPU at
    every start), and the default profile lists 7 of the 18."""
    return [
        _tool(fn, title=title, annotations=annotations)
        for fn, title, annotations in _all_tools()
        if listed(fn.__name__, settings)
    ]


def _reads() -> ToolAnnotations:
    return ToolAnnotations(read_only_hint=True, open_world_hint=False)


def _writes(*, destructive: bool, idempotent: bool) -> ToolAnnotations:
    return ToolAnnotations(
        read_only_hint=False, destructive_hint=destructive, idempotent_hint=idempotent, open_world_hint=False
    )


def _all_tools() -> tuple[tuple[Callable[..., Any], str, ToolAnnotations], ...]:
    """Every tool's function (named as the tool), title and hints."""
    return (
        (remember, "Remember", _writes(destructive=False, idempotent=True)),
        (remember_many, "Remember many", _writes(destructive=False, idempotent=True)),
        (recall, "Recall", _reads()),
        (list_memories, "List memories", _reads()),
        (update_memory, "Update memory", _writes(destructive=True, idempotent=True)),
        (summarize_session, "Summarize session", _writes(destructive=False, idempotent=False)),
        (forget_memory, "Forget memory", _writes(destructive=True, idempotent=False)),
        (forget_user, "Forget user", _writes(destructive=True, idempotent=True)),
        (ingest_files, "Ingest files", _writes(destructive=False, idempotent=True)),
        (ingest_text, "Ingest text", _writes(destructive=False, idempotent=True)),
        (forget_source, "Forget knowledge source", _writes(destructive=True, idempotent=False)),
        (create_entities, "Create entities", _writes(destructive=False, idempotent=True)),
        (create_relations, "Create relations", _writes(destructive=False, idempotent=True)),
        (add_observations, "Add observations", _writes(destructive=False, idempotent=True)),
        (merge_entities, "Merge entities", _writes(destructive=True, idempotent=True)),
        (search_nodes, "Search nodes", _reads()),
        (open_nodes, "Open nodes", _reads()),
        (read_graph, "Read graph", _reads()),
    )
