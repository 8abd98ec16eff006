"""Read-only MCP resources: session transcripts, recent sessions and memories, knowledge sources, a user's graph,
server stats."""

from __future__ import annotations

from collections.abc import Callable, Generator
from contextlib import contextmanager
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from pydantic import TypeAdapter

from engram import __version__
from engram.core.errors import AccessDenied, InvalidInput
from engram.core.knowledge_models import KnowledgeSource
from engram.core.models import AgentActivity, Memory, ServerStats, SessionInfo
from engram.tools.state import AppState, authorize, caller

_SESSIONS = TypeAdapter(list[SessionInfo])
_MEMORIES = TypeAdapter(list[Memory])
_AGENTS = TypeAdapter(list[AgentActivity])
_SOURCES = TypeAdapter(list[KnowledgeSource])
RECENT_MEMORIES = 20
#: How long a stats read made during start waits for the stores before it answers "loading" (the model and the
#: stores open in seconds; this only bounds a stuck load).
STATS_WAIT_SECONDS = 60.0


@contextmanager
def resource_errors() -> Generator[None, None, None]:
    """The one translation point of resource reads: the caller's mistakes get the spec's invalid-params code.

    A URI naming a malformed id, an unknown session or a user the request may not read is the caller's to fix:
    the SDK answers ResourceNotFoundError with JSON-RPC -32602 and the URI. Anything else Engram refuses (stores
    damaged or unavailable) is the server's failure and stays an internal error.
    """
    try:
        yield
    except (InvalidInput, AccessDenied) as exc:
        raise ResourceNotFoundError(str(exc)) from exc


async def session_transcript(user_id: str, session_id: str, ctx: Context[AppState]) -> str:
    """A session's transcript: its working memory, or its short-term record once working memory expired."""
    with resource_errors():
        who = caller(user_id, access="read")
        memory = await ctx.request_context.lifespan_context.memory.get()
        transcript = await memory.transcript(who.user_id, session_id, agent_id=who.agent_id)
        return transcript.model_dump_json(indent=2)


async def recent_sessions(user_id: str, ctx: Context[AppState]) -> str:
    """The user's sessions still in short-term memory, most recently active first."""
    with resource_errors():
        user_id = caller(user_id, access="read").user_id
        memory = await ctx.request_context.lifespan_context.memory.get()
        return _SESSIONS.dump_json(await memory.sessions_of(user_id), indent=2).decode()


async def recent_memories(user_id: str, ctx: Context[AppState]) -> str:
    """The user's most recently stored long-term memories, newest first."""
    with resource_errors():
        who = caller(user_id, access="read")
        memory = await ctx.request_context.lifespan_context.memory.get()
        recent = await memory.recent_memories(who.user_id, RECENT_MEMORIES, agent_id=who.agent_id)
        return _MEMORIES.dump_json(recent, indent=2).decode()


async def memory_agents(user_id: str, ctx: Context[AppState]) -> str:
    """The agents that wrote the user's memories, with shared and private counts (own private ones only)."""
    with resource_errors():
        who = caller(user_id, access="read")
        memory = await ctx.request_context.lifespan_context.memory.get()
        return _AGENTS.dump_json(await memory.agents_of(who.user_id, agent_id=who.agent_id), indent=2).decode()


async def knowledge_sources(user_id: str, ctx: Context[AppState]) -> str:
    """The knowledge sources the user's recall searches (global and the user's own), with chunk counts."""
    with resource_errors():
        user_id = caller(user_id, access="read").user_id
        memory = await ctx.request_context.lifespan_context.memory.get()
        if memory.knowledge is None:
            raise ResourceError("Knowledge memory is not available on this server.")
        return _SOURCES.dump_json(await memory.knowledge.sources(user_id), indent=2).decode()


async def user_graph(user_id: str, ctx: Context[AppState]) -> str:
    """The user's knowledge graph: entities with their current observations, and relations with their validity."""
    with resource_errors():
        who = caller(user_id, access="read")
        memory = await ctx.request_context.lifespan_context.memory.get()
        if memory.graph is None:
            raise ResourceError("The graph is not available on this server.")
        return (await memory.graph.read_graph(who.user_id, agent_id=who.agent_id)).model_dump_json(indent=2)


def stats_resource(current: Callable[[], AppState | None]) -> Callable[[], Any]:
    """Build the server-stats resource; static resources get no Context, so it reads the live state."""

    async def server_stats() -> str:
        """Counts and sizes per tier, the embedding model, and the data directory."""
        with resource_errors():
            authorize("read")
        state = current()
        if state is None:
            raise ResourceError("The server is not running.")
        stats = ServerStats(
            version=__version__,
            status="loading",
            data_dir=str(state.settings.data_dir),
            embedding_model=state.settings.embedding_model,
        )
        # A read right after start waits (bounded) for the stores rather than answering with nulls.
        await state.memory.settled(STATS_WAIT_SECONDS)
        if state.memory.error is not None:
            stats = stats.model_copy(update={"status": "failed", "error": str(state.memory.error)})
        elif state.memory.ready:
            memory = await state.memory.get()
            tiers = await memory.tier_stats()
            damaged = {tier: str(error) for tier, error in memory.health.damaged().items()}
            stats = stats.model_copy(
                update={
                    "status": "degraded" if damaged else "ready",
                    "damaged": damaged,
                    "embedding_model": memory.embedder.model_id,
                    "embedding_dimensions": memory.embedder.dimensions,
                    "long_term": tiers["long_term"],
                    "sessions": tiers["sessions"],
                    "knowledge": tiers.get("knowledge"),
                    "graph": tiers.get("graph"),
                }
            )
        return stats.model_dump_json(indent=2)

    return server_stats


def register_resources(server: MCPServer[AppState], current: Callable[[], AppState | None]) -> None:
    """Add Engram's resources to `server`."""
    server.resource(
        "engram://users/{user_id}/sessions/{session_id}",
        name="session_transcript",
        title="Session transcript",
        mime_type="application/json",
    )(session_transcript)
    server.resource(
        "engram://users/{user_id}/sessions",
        name="recent_sessions",
        title="Recent sessions",
        mime_type="application/json",
    )(recent_sessions)
    server.resource(
        "engram://users/{user_id}/memories",
        name="recent_memories",
        title="Recent long-term memories",
        mime_type="application/json",
    )(recent_memories)
    server.resource(
        "engram://users/{user_id}/agents",
        name="memory_agents",
        title="Agents that wrote memories",
        mime_type="application/json",
    )(memory_agents)
    server.resource(
        "engram://users/{user_id}/knowledge",
        name="knowledge_sources",
        title="Knowledge sources",
        mime_type="application/json",
    )(knowledge_sources)
    server.resource(
        "engram://users/{user_id}/graph",
        name="user_graph",
        title="Knowledge graph",
        mime_type="application/json",
    )(user_graph)
    server.resource("engram://stats", name="stats", title="Server stats", mime_type="application/json")(
        stats_resource(current)
    )
