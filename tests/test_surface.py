"""What the model and the client see: argument errors, unknown arguments, resource error codes, the tool surface."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError
from mcp.types import INVALID_PARAMS, TextResourceContents

from engram.config import Settings
from engram.embeddings.hashing import HashEmbedder
from engram.server.app import build_server
from tests.helpers import SlowToLoad, error, ok, stepping_clock

pytestmark = pytest.mark.anyio


def _one_line_for_a_model(message: str) -> None:
    """An argument error a model can act on: one line, no library dump, no help link."""
    assert "\n" not in message, message
    assert "pydantic" not in message and "validation error for" not in message, message
    assert "Arguments" not in message, message  # the SDK's generated model name (recallArguments)


async def test_an_out_of_range_argument_names_the_field_the_value_and_the_range(client: Client) -> None:
    message = error(await client.call_tool("recall", {"user_id": "alice", "query": "tea", "top_k": 0}))
    _one_line_for_a_model(message)
    assert "'top_k' 0" in message and "greater than or equal to 1" in message


async def test_a_malformed_id_says_what_an_id_may_contain(client: Client) -> None:
    message = error(await client.call_tool("recall", {"user_id": "not ok", "query": "tea"}))
    _one_line_for_a_model(message)
    assert "'user_id' 'not ok' is not valid; expected 1-128 characters: letters, digits" in message


async def test_a_long_bad_value_is_quoted_short(client: Client) -> None:
    message = error(await client.call_tool("recall", {"user_id": "alice", "query": "q", "top_k": "x" * 5000}))
    _one_line_for_a_model(message)
    assert "5,000 characters" in message and len(message) < 300


async def test_a_missing_argument_is_named(client: Client) -> None:
    message = error(await client.call_tool("recall", {"user_id": "alice"}))
    _one_line_for_a_model(message)
    assert "'query' is required" in message


async def test_an_unknown_argument_is_refused_by_name(client: Client) -> None:
    message = error(await client.call_tool("recall", {"user_id": "alice", "query": "tea", "colour": "red"}))
    _one_line_for_a_model(message)
    assert "unknown argument 'colour'; accepted: query, " in message


async def test_every_input_schema_refuses_unknown_properties(client: Client) -> None:
    for tool in (await client.list_tools()).tools:
        assert tool.input_schema.get("additionalProperties") is False, tool.name


async def test_a_refused_resource_read_is_invalid_params_not_internal_error(client: Client) -> None:
    with pytest.raises(MCPError, match="unknown or expired") as unknown:
        await client.read_resource("engram://users/alice/sessions/nope")
    assert unknown.value.error.code == INVALID_PARAMS
    with pytest.raises(MCPError, match="user_id") as malformed:
        await client.read_resource("engram://users/bad%20id/memories")
    assert malformed.value.error.code == INVALID_PARAMS


async def _stats(client: Client) -> dict[str, Any]:
    contents = (await client.read_resource("engram://stats")).contents[0]
    assert isinstance(contents, TextResourceContents)
    result: dict[str, Any] = json.loads(contents.text)
    return result


async def test_stats_read_during_start_waits_for_the_stores(settings: Settings) -> None:
    embedder = SlowToLoad()
    async with Client(build_server(settings, embedder=embedder, clock=stepping_clock), raise_exceptions=True) as client:
        read: list[dict[str, Any]] = []

        async def stats() -> None:
            read.append(await _stats(client))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(stats)
            await anyio.wait_all_tasks_blocked()
            assert read == []  # still waiting for the stores, not answering "loading" with nulls
            embedder.loaded.set()
        assert read[0]["status"] == "ready" and read[0]["long_term"] is not None
        ok(await client.call_tool("remember", {"user_id": "alice", "content": "after start"}))


#: `tools/list` was ~59.6 KB (JSON of every tool) before the surface was trimmed. The default profile must stay
#: under 27% of that and the full one under half. Merging #19 (recall's `as_of`, remember's `supersedes`,
#: update_memory's `valid_until`/`superseded_by`) into main with #14/#20 (15,889 bytes) made it 16,620.
CORE_BUDGET_BYTES = 16_700
ALL_BUDGET_BYTES = 29_000
CORE_TOOLS = {
    "remember",
    "recall",
    "list_memories",
    "update_memory",
    "forget_memory",
    "summarize_session",
    "forget_user",
}


async def _tools(settings: Settings) -> list[Any]:
    async with Client(build_server(settings, clock=stepping_clock), raise_exceptions=True) as client:
        return list((await client.list_tools()).tools)


def _size(tools: list[Any]) -> int:
    return sum(len(json.dumps(t.model_dump(by_alias=True, mode="json", exclude_none=True))) for t in tools)


async def test_the_default_profile_lists_the_everyday_tools_within_budget(tmp_path: Any) -> None:
    tools = await _tools(Settings(data_dir=tmp_path / "data", embedding_model="hash"))
    assert {t.name for t in tools} == CORE_TOOLS
    assert _size(tools) < CORE_BUDGET_BYTES


async def test_the_full_profile_lists_ingest_files_only_where_it_can_work(tmp_path: Any) -> None:
    without_roots = await _tools(Settings(data_dir=tmp_path / "a", embedding_model="hash", tools="all"))
    assert {t.name for t in without_roots} == CORE_TOOLS | {"remember_many", "ingest_text", "forget_source"}
    with_roots = await _tools(
        Settings(data_dir=tmp_path / "b", embedding_model="hash", tools="all", knowledge_roots=[tmp_path])
    )
    assert "ingest_files" in {t.name for t in with_roots}
    assert _size(with_roots) < ALL_BUDGET_BYTES


GRAPH_TOOLS = {
    "create_entities",
    "create_relations",
    "add_observations",
    "merge_entities",
    "search_nodes",
    "open_nodes",
    "read_graph",
}


async def test_the_graph_profile_adds_the_official_memory_servers_tools_within_budget(tmp_path: Any) -> None:
    tools = await _tools(Settings(data_dir=tmp_path / "data", embedding_model="hash", tools="graph"))
    assert {t.name for t in tools} == CORE_TOOLS | GRAPH_TOOLS
    assert _size(tools) < ALL_BUDGET_BYTES


def _unbounded(schema: Any, where: str) -> list[str]:
    """Every string without a length bound or closed set, and every list or map without a size bound, in `schema`."""
    found: list[str] = []
    if isinstance(schema, dict):
        kinds = schema.get("type")
        kinds = kinds if isinstance(kinds, list) else [kinds]
        # Our patterns are anchored with bounded repeats, so they bound the length too.
        closed = any(key in schema for key in ("enum", "const", "format", "pattern"))
        if "string" in kinds and not closed and "maxLength" not in schema:
            found.append(where)
        if "array" in kinds and "maxItems" not in schema:
            found.append(where)
        open_map = "object" in kinds and schema.get("additionalProperties", False) is not False
        if open_map and "maxProperties" not in schema:
            found.append(where)
        for key, value in schema.items():
            if key == "properties":
                for name, sub in value.items():
                    found += _unbounded(sub, f"{where}.{name}")
            elif key in ("items", "additionalProperties", "anyOf", "oneOf", "$defs"):
                found += _unbounded(value, f"{where}.{key}")
    elif isinstance(schema, list):
        for item in schema:
            found += _unbounded(item, where)
    return found


async def test_schemas_are_tight_and_descriptions_short(tmp_path: Any) -> None:
    tools = await _tools(
        Settings(data_dir=tmp_path / "data", embedding_model="hash", tools="all", knowledge_roots=[tmp_path])
    )
    tools += await _tools(Settings(data_dir=tmp_path / "graph", embedding_model="hash", tools="graph"))
    for tool in tools:
        assert tool.description is not None and "\n " not in tool.description, tool.name
        assert len(tool.description) <= 400, (tool.name, len(tool.description))
        assert _unbounded(tool.input_schema, tool.name) == []
        assert '"title":"' not in json.dumps(tool.input_schema, separators=(",", ":")), tool.name  # no schema titles


async def test_recall_and_list_memories_share_one_filters_object(client: Client) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    for name in ("recall", "list_memories"):
        properties = tools[name].input_schema["properties"]
        assert "filters" in properties and "tags_all" not in properties and "since" not in properties, name
    ok(await client.call_tool("remember", {"user_id": "alice", "content": "tea at noon", "tags": ["drink"]}))
    ok(await client.call_tool("remember", {"user_id": "alice", "content": "tea with lemon"}))
    listed = ok(await client.call_tool("list_memories", {"user_id": "alice", "filters": {"tags": ["drink"]}}))
    assert [m["content"] for m in listed["memories"]] == ["tea at noon"]
    message = error(await client.call_tool("list_memories", {"user_id": "alice", "filters": {"tag": ["drink"]}}))
    assert "unknown argument 'tag' in 'filters'" in message


async def test_a_default_recall_is_compact_and_its_text_is_the_same_json(client: Client) -> None:
    for n in range(8):
        content = (
            f"Alice note {n}: she prefers green tea in the afternoon and takes it without sugar, said on call {n}."
        )
        ok(await client.call_tool("remember", {"user_id": "alice", "content": content, "tags": ["tea"]}))
    result = await client.call_tool("recall", {"user_id": "alice", "query": "what tea does alice like"})
    reply = ok(result)
    assert len(reply["hits"]) == 5
    for hit in reply["hits"]:
        assert set(hit) == {"tier", "id", "when", "score", "content"}, hit
        assert hit["tier"] == "long_term" and isinstance(hit["score"], float)
    text = result.content[0]
    assert len(result.content) == 1 and text.type == "text"
    assert text.text == json.dumps(reply, separators=(",", ":"), ensure_ascii=False)
    assert len(text.text.encode()) <= 2048


async def test_recall_gives_scores_and_metadata_on_request(client: Client) -> None:
    ok(await client.call_tool("remember", {"user_id": "alice", "content": "Alice drinks green tea", "tags": ["tea"]}))
    reply = ok(await client.call_tool("recall", {"user_id": "alice", "query": "tea", "detail": "full"}))
    assert reply["hits"][0]["content"] == "Alice drinks green tea"
    full = reply["memories"][0]
    assert full["memory"]["tags"] == ["tea"] and "similarity" in full["scores"]


async def test_every_structured_reply_has_the_same_compact_json_as_text(client: Client) -> None:
    result = await client.call_tool("remember", {"user_id": "alice", "content": "Alice likes tea"})
    assert result.content[0].text == json.dumps(ok(result), separators=(",", ":"), ensure_ascii=False)


async def test_capabilities_are_the_same_in_both_protocol_eras(settings: Settings) -> None:
    seen = []
    for mode in ("auto", "legacy"):
        server = build_server(settings, embedder=HashEmbedder(), clock=stepping_clock)
        async with Client(server, mode=mode) as client:
            seen.append(client.server_capabilities.model_dump(exclude_none=True))
    assert seen[0] == seen[1]
    # Engram's tools, prompts and resources never change while it runs: no change notifications are promised.
    assert seen[0]["tools"]["list_changed"] is False and seen[0]["resources"]["subscribe"] is False
