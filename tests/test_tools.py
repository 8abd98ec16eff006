"""The MCP surface through a real in-process client: tools, errors, resources and the prompt."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer
from mcp.types import ElicitRequestParams, ElicitResult, TextResourceContents

from engram.config import Settings
from engram.server.app import build_server
from engram.tools.state import AppState
from tests.helpers import SlowToLoad, error, ok, stepping_clock

pytestmark = pytest.mark.anyio


async def test_the_tools_are_listed_with_schemas_and_hints(client: Client) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == {
        "remember",
        "remember_many",
        "recall",
        "list_memories",
        "update_memory",
        "summarize_session",
        "forget_user",
        "forget_memory",
        "ingest_text",
        "forget_source",
    }
    # ingest_files is listed only where ENGRAM_KNOWLEDGE_ROOTS lets it work (test_surface).
    for tool in tools.values():
        assert tool.description and tool.output_schema is not None
    assert tools["recall"].annotations is not None and tools["recall"].annotations.read_only_hint
    assert tools["forget_user"].annotations is not None and tools["forget_user"].annotations.destructive_hint
    assert tools["forget_memory"].annotations is not None and tools["forget_memory"].annotations.destructive_hint
    assert tools["remember"].annotations is not None and tools["remember"].annotations.idempotent_hint
    assert {"user_id", "session_id", "agent_id", "content"} <= set(tools["remember"].input_schema["properties"])
    assert {"query", "top_k"} <= set(tools["recall"].input_schema["properties"])
    assert {"keep_recent", "summary"} <= set(tools["summarize_session"].input_schema["properties"])
    assert set(tools["forget_user"].input_schema["properties"]) == {"user_id", "confirm"}


async def test_remember_and_recall_return_structured_results(client: Client) -> None:
    stored = ok(
        await client.call_tool("remember", {"user_id": "alice", "content": "owns a red bicycle", "session_id": "s1"})
    )
    assert stored["created"] is True and stored["session_turns"] == 1
    again = ok(await client.call_tool("remember", {"user_id": "alice", "content": "owns a red bicycle"}))
    assert again == {"id": stored["id"], "created": False, "session_turns": None, "redacted": {}}

    recalled = ok(
        await client.call_tool(
            "recall", {"detail": "full", "user_id": "alice", "query": "red bicycle", "session_id": "s1"}
        )
    )
    assert [t["tier"] for t in recalled["working"]] == ["working"]
    assert recalled["memories"][0]["tier"] == "long_term"
    assert recalled["memories"][0]["memory"]["content"] == "owns a red bicycle"
    assert recalled["dropped_below_min_score"] == 0


@pytest.mark.parametrize(
    ("tool", "arguments", "field", "accepted"),
    [
        ("remember", {"user_id": "alice", "content": ""}, "content", "at least 1 character"),
        ("remember", {"user_id": "alice", "content": "  \n "}, "content", "only whitespace"),
        ("remember", {"user_id": "alice", "content": "x" * 100_001}, "content", "at most 100000 characters"),
        ("remember", {"user_id": "x' OR '1'='1", "content": "hi"}, "user_id", "expected 1-128 characters"),
        ("remember", {"user_id": "alice", "content": "hi", "role": "robot"}, "role", "'user', 'assistant'"),
        ("remember", {"user_id": "alice", "content": "hi", "importance": 3}, "importance", "less than or equal to 1"),
        ("remember", {"user_id": "alice", "content": "hi", "tags": "billing"}, "tags", "valid list"),
        ("recall", {"user_id": "alice", "query": "tea", "top_k": 500}, "top_k", "less than or equal to 50"),
        ("recall", {"user_id": "alice", "query": "tea", "top_k": "many"}, "top_k", "valid integer"),
        ("recall", {"user_id": "alice", "query": "tea", "filters": {"since": "last week"}}, "since", "valid datetime"),
        (
            "recall",
            {
                "user_id": "alice",
                "query": "tea",
                "filters": {"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
            },
            "since",
            "earlier than 'until'",
        ),
        ("recall", {"user_id": "alice"}, "'query' is required", ""),
        ("summarize_session", {"user_id": "alice", "session_id": "nope"}, "session_id", "unknown or expired"),
        ("summarize_session", {"user_id": "alice", "session_id": "s1", "keep_recent": -2}, "keep_recent", "greater"),
        ("forget_user", {"user_id": "alice"}, "confirm=true", "cannot be undone"),
    ],
)
async def test_bad_input_is_a_tool_error_naming_the_field(
    client: Client, tool: str, arguments: dict[str, Any], field: str, accepted: str
) -> None:
    message = error(await client.call_tool(tool, arguments))
    assert field in message and accepted in message, message
    # The server keeps serving.
    ok(await client.call_tool("remember", {"user_id": "alice", "content": "still here"}))


async def test_a_hostile_user_id_cannot_read_or_erase_others(client: Client) -> None:
    ok(await client.call_tool("remember", {"user_id": "alice", "content": "alice's diary"}))
    error(await client.call_tool("recall", {"detail": "full", "user_id": "x' OR '1'='1", "query": "diary"}))
    error(await client.call_tool("forget_user", {"user_id": "x' OR '1'='1", "confirm": True}))
    hits = ok(await client.call_tool("recall", {"detail": "full", "user_id": "alice", "query": "diary"}))["memories"]
    assert [h["memory"]["content"] for h in hits] == ["alice's diary"]


async def test_forget_user_erases_every_tier_and_leaves_others(client: Client) -> None:
    for user in ("alice", "bob"):
        ok(await client.call_tool("remember", {"user_id": user, "content": f"{user} likes jazz", "session_id": "s1"}))
    receipt = ok(await client.call_tool("forget_user", {"user_id": "alice", "confirm": True}))
    assert (receipt["erased"], receipt["long_term"], receipt["working"], receipt["short_term"]) == (True, 1, 1, 1)
    assert ok(
        await client.call_tool("recall", {"detail": "full", "user_id": "alice", "query": "jazz", "session_id": "s1"})
    ) == {
        "hits": [],
        "working": [],
        "memories": [],
        "dropped_below_min_score": 0,
        "knowledge": [],
        "unavailable": [],
    }
    bob = ok(
        await client.call_tool("recall", {"detail": "full", "user_id": "bob", "query": "jazz", "session_id": "s1"})
    )
    assert len(bob["working"]) == 1 and bob["memories"][0]["memory"]["content"] == "bob likes jazz"


@pytest.mark.parametrize(("action", "erased"), [("accept", True), ("decline", False)])
async def test_forget_user_asks_clients_that_can_show_a_form(
    server: MCPServer[AppState], action: str, erased: bool
) -> None:
    asked: list[str] = []

    async def answer(context: Any, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action=action, content={"erase": True} if action == "accept" else None)

    async with Client(server, raise_exceptions=True, elicitation_callback=answer) as client:
        ok(await client.call_tool("remember", {"user_id": "alice", "content": "to be forgotten"}))
        result = await client.call_tool("forget_user", {"user_id": "alice"})
        assert asked and "alice" in asked[0]
        if erased:
            assert ok(result)["long_term"] == 1
        else:
            assert "confirm" not in error(result)
        remaining = ok(await client.call_tool("recall", {"detail": "full", "user_id": "alice", "query": "forgotten"}))[
            "memories"
        ]
        assert len(remaining) == (0 if erased else 1)


@pytest.mark.parametrize("answer_given", ["decline", "cancel", "accept-unticked"])
async def test_only_the_person_approves_an_erasure_when_the_client_can_ask(
    server: MCPServer[AppState], answer_given: str
) -> None:
    """The model's confirm=true does not stand in for the person's answer, and a refusal does not invite a retry."""
    asked: list[str] = []

    async def answer(context: Any, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        if answer_given == "accept-unticked":
            return ElicitResult(action="accept", content={"erase": False})
        return ElicitResult(action="decline" if answer_given == "decline" else "cancel")

    async with Client(server, raise_exceptions=True, elicitation_callback=answer) as client:
        ok(await client.call_tool("remember", {"user_id": "alice", "content": "to be kept"}))
        for arguments in ({"user_id": "alice"}, {"user_id": "alice", "confirm": True}):
            message = error(await client.call_tool("forget_user", arguments))
            assert "did not approve" in message and "nothing was erased" in message, message
            assert "confirm" not in message, message
        assert len(asked) == 2
        remaining = ok(await client.call_tool("recall", {"detail": "full", "user_id": "alice", "query": "kept"}))[
            "memories"
        ]
        assert len(remaining) == 1


async def test_without_a_form_the_model_confirms_an_erasure(client: Client) -> None:
    ok(await client.call_tool("remember", {"user_id": "alice", "content": "to be forgotten"}))
    assert "confirm=true" in error(await client.call_tool("forget_user", {"user_id": "alice"}))
    assert ok(await client.call_tool("forget_user", {"user_id": "alice", "confirm": True}))["long_term"] == 1


async def test_summarize_session_reports_progress(client: Client) -> None:
    for i in range(10):
        ok(await client.call_tool("remember", {"user_id": "alice", "content": f"step {i} done", "session_id": "s1"}))
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    result = ok(
        await client.call_tool(
            "summarize_session",
            {"user_id": "alice", "session_id": "s1", "keep_recent": 4},
            progress_callback=on_progress,
        )
    )
    assert (result["summarized_turns"], result["kept_turns"], result["method"]) == (6, 4, "extractive")
    assert progress and progress[-1][0] == progress[-1][1]
    assert [p[0] for p in progress] == sorted(p[0] for p in progress)


async def _read(client: Client, uri: str) -> Any:
    contents = (await client.read_resource(uri)).contents[0]
    assert isinstance(contents, TextResourceContents)
    return json.loads(contents.text)


async def test_resources_show_sessions_memories_and_stats(client: Client) -> None:
    resources = {str(r.uri) for r in (await client.list_resources()).resources}
    templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
    assert resources == {"engram://stats"}
    assert templates == {
        "engram://users/{user_id}/sessions/{session_id}",
        "engram://users/{user_id}/sessions",
        "engram://users/{user_id}/memories",
        "engram://users/{user_id}/agents",
        "engram://users/{user_id}/knowledge",
        "engram://users/{user_id}/graph",
    }
    ok(await client.call_tool("remember", {"user_id": "alice", "content": "hello there", "session_id": "s1"}))
    ok(await client.call_tool("remember", {"user_id": "alice", "content": "a standalone fact"}))

    transcript = await _read(client, "engram://users/alice/sessions/s1")
    assert transcript["tier"] == "working" and [t["content"] for t in transcript["turns"]] == ["hello there"]
    sessions = await _read(client, "engram://users/alice/sessions")
    assert [(s["session_id"], s["turns"]) for s in sessions] == [("s1", 1)]
    memories = await _read(client, "engram://users/alice/memories")
    assert [m["content"] for m in memories] == ["a standalone fact", "hello there"]
    assert await _read(client, "engram://users/bob/memories") == []

    stats = await _read(client, "engram://stats")
    assert stats["status"] == "ready" and stats["embedding_model"] == "hash-256"
    assert stats["long_term"]["items"] == 2 and stats["long_term"]["bytes_on_disk"] > 0


async def test_resource_errors_say_what_is_wrong(client: Client) -> None:
    with pytest.raises(MCPError, match="unknown or expired"):
        await client.read_resource("engram://users/alice/sessions/nope")
    with pytest.raises(MCPError, match="user_id"):
        await client.read_resource("engram://users/bad%20id/memories")


async def test_layered_context_prompt_assembles_every_layer(client: Client) -> None:
    ok(await client.call_tool("remember", {"user_id": "alice", "content": "Alice is vegetarian"}))
    ok(
        await client.call_tool(
            "remember", {"user_id": "alice", "content": "Can you suggest dinner?", "session_id": "s1"}
        )
    )
    prompt = await client.get_prompt(
        "layered_context", {"user_id": "alice", "message": "Something vegetarian please", "session_id": "s1"}
    )
    text = prompt.messages[0].content.text  # type: ignore[union-attr]
    assert prompt.messages[0].role == "user"
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections == [
        "## System",
        "## Relevant long-term memories",
        "## This session so far (working memory)",
        "## New message",
    ]
    assert "Alice is vegetarian" in text and "user: Can you suggest dinner?" in text
    assert text.rstrip().endswith("Something vegetarian please")


async def test_remember_many_over_mcp(client: Client) -> None:
    items = [{"content": f"imported fact {i}", "occurred_at": f"2024-01-0{i + 1}T09:00:00Z"} for i in range(3)]
    result = ok(await client.call_tool("remember_many", {"user_id": "alice", "items": items}))
    assert result["created"] == 3 and len(result["results"]) == 3
    memories = ok(
        await client.call_tool("recall", {"detail": "full", "user_id": "alice", "query": "imported fact", "top_k": 5})
    )
    assert sorted(m["memory"]["created_at"][:10] for m in memories["memories"]) == [
        "2024-01-01",
        "2024-01-02",
        "2024-01-03",
    ]
    message = error(
        await client.call_tool("remember_many", {"user_id": "alice", "items": [{"content": "ok"}, {"content": " "}]})
    )
    assert "items[1].content" in message
    assert "at least 1 item" in error(await client.call_tool("remember_many", {"user_id": "alice", "items": []}))


async def test_remember_reports_what_it_redacted(client: Client) -> None:
    content = "Reach me at ana.lima@example.org, card 4111 1111 1111 1111."
    stored = ok(await client.call_tool("remember", {"user_id": "alice", "content": content, "session_id": "s1"}))
    assert stored["redacted"] == {"email": 1, "card": 1}
    recalled = ok(
        await client.call_tool(
            "recall", {"detail": "full", "user_id": "alice", "query": "reach me", "session_id": "s1"}
        )
    )
    assert recalled["memories"][0]["memory"]["content"] == "Reach me at [EMAIL], card [CARD]."
    assert recalled["working"][0]["content"] == "Reach me at [EMAIL], card [CARD]."


async def test_the_server_answers_before_the_model_has_loaded(settings: Settings) -> None:
    embedder = SlowToLoad()
    async with Client(build_server(settings, embedder=embedder, clock=stepping_clock), raise_exceptions=True) as client:
        assert len((await client.list_tools()).tools) == 10
        stored: list[dict[str, Any]] = []

        async def remember() -> None:
            stored.append(ok(await client.call_tool("remember", {"user_id": "alice", "content": "waited"})))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(remember)
            await anyio.wait_all_tasks_blocked()
            # A call that needs the model waits for it instead of failing.
            assert stored == []
            embedder.loaded.set()
        assert stored[0]["created"] is True
        assert (await _read(client, "engram://stats"))["status"] == "ready"
