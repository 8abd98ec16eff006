"""Remote Engram end to end: real `engram serve` processes over streamable HTTP and SSE, real MCP clients, tokens.

Each server process costs a few seconds to start on this machine, so one server per transport is shared by the
tests of this file (module-scoped), each test acting for its own users so that none depends on another.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from mcp import Client, MCPError
from prometheus_client.parser import text_string_to_metric_families

from engram.auth.tokens import TokenFile
from tests.helpers import error, ok
from tests.http_server import RunningServer, connect, issue_token, spawn

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ALL_TOOLS = sorted(
    [
        "remember",
        "remember_many",
        "recall",
        "list_memories",
        "update_memory",
        "summarize_session",
        "forget_memory",
        "forget_user",
        "ingest_text",
        "forget_source",
    ]
)
ALL_TEMPLATES = sorted(
    [
        "engram://users/{user_id}/sessions/{session_id}",
        "engram://users/{user_id}/sessions",
        "engram://users/{user_id}/memories",
        "engram://users/{user_id}/agents",
        "engram://users/{user_id}/knowledge",
        "engram://users/{user_id}/graph",
    ]
)


@pytest.fixture(scope="module")
def streamable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = spawn(tmp_path_factory.mktemp("streamable") / "data", "streamable-http")
    yield server
    assert server.stop() == 0, server.log()
    assert "stores closed" in server.log()


@pytest.fixture(scope="module")
def sse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = spawn(tmp_path_factory.mktemp("sse") / "data", "sse")
    yield server
    assert server.stop() == 0, server.log()
    assert "stores closed" in server.log()


def token(
    server: RunningServer, *users: str, scopes: tuple[str, ...] = ("read", "write"), agent: str | None = None
) -> str:
    return issue_token(server.data_dir, users, scopes, agent)


async def resource_json(client: Client, uri: str) -> Any:
    return json.loads((await client.read_resource(uri)).contents[0].text)  # type: ignore[union-attr]


async def exercise_everything(client: Client, user: str) -> None:
    """Every tool, every resource and the prompt, acting for `user` (mostly without naming them)."""
    assert sorted(t.name for t in (await client.list_tools()).tools) == ALL_TOOLS
    assert [str(r.uri) for r in (await client.list_resources()).resources] == ["engram://stats"]
    templates = (await client.list_resource_templates()).resource_templates
    assert sorted(t.uri_template for t in templates) == ALL_TEMPLATES

    # No user_id: the token's user. An explicit user_id the token may act for works too.
    first = ok(await client.call_tool("remember", {"content": "Dana keeps bees on her roof.", "session_id": "s1"}))
    assert first["created"] is True
    ok(await client.call_tool("remember", {"user_id": user, "content": "The bees made honey.", "session_id": "s1"}))
    batch = ok(
        await client.call_tool(
            "remember_many",
            {
                "items": [
                    {"content": "Dana sells honey at the market.", "session_id": "s1"},
                    {"content": "Dana likes tea."},
                ]
            },
        )
    )
    assert batch["created"] == 2

    recalled = ok(
        await client.call_tool("recall", {"detail": "full", "query": "bees roof", "session_id": "s1", "top_k": 3})
    )
    assert recalled["memories"][0]["memory"]["content"] == "Dana keeps bees on her roof."
    assert recalled["memories"][0]["memory"]["user_id"] == user
    assert len(recalled["working"]) == 3

    summary = ok(
        await client.call_tool(
            "summarize_session", {"session_id": "s1", "keep_recent": 1, "summary": "Dana keeps bees; they made honey."}
        )
    )
    assert summary["summarized_turns"] == 2

    transcript = await resource_json(client, f"engram://users/{user}/sessions/s1")
    assert transcript["session_id"] == "s1"
    sessions = await resource_json(client, f"engram://users/{user}/sessions")
    assert [s["session_id"] for s in sessions] == ["s1"]
    memories = await resource_json(client, f"engram://users/{user}/memories")
    assert "Dana likes tea." in [m["content"] for m in memories]
    agents = await resource_json(client, f"engram://users/{user}/agents")
    assert sum(a["shared"] for a in agents) >= 5
    listed = ok(await client.call_tool("list_memories", {"filters": {"kind": "fact"}}))
    tea = next(m for m in listed["memories"] if m["content"] == "Dana likes tea.")
    updated = ok(await client.call_tool("update_memory", {"memory_id": tea["id"], "resolved": True}))
    assert updated["memory"]["resolved"] is True
    assert [
        m["content"] for m in ok(await client.call_tool("list_memories", {"filters": {"resolved": True}}))["memories"]
    ] == ["Dana likes tea."]
    stats = await resource_json(client, "engram://stats")
    assert stats["status"] == "ready"
    assert stats["long_term"]["items"] >= 5

    prompt = await client.get_prompt("layered_context", {"user_id": user, "message": "Tell me about the bees"})
    assert "Dana keeps bees on her roof." in prompt.messages[0].content.text  # type: ignore[union-attr]

    forgotten = ok(await client.call_tool("forget_memory", {"memory_id": first["id"]}))
    assert forgotten["long_term"] == 1
    receipt = ok(await client.call_tool("forget_user", {"confirm": True}))
    assert receipt["erased"] is True
    assert receipt["user_id"] == user
    assert ok(await client.call_tool("recall", {"detail": "full", "query": "bees"}))["memories"] == []


# Acceptance 1: both HTTP transports serve every tool and resource to an authenticated client.


async def test_streamable_http_serves_every_tool_and_resource(streamable: RunningServer) -> None:
    async with connect(streamable, token(streamable, "dana")) as client:
        await exercise_everything(client, "dana")


async def test_sse_serves_every_tool_and_resource(sse: RunningServer) -> None:
    async with connect(sse, token(sse, "dana")) as client:
        await exercise_everything(client, "dana")


# Acceptance 2: 401 without a valid token, refusals for missing scopes and for other users' memories.


@pytest.mark.parametrize(
    "authorization", [None, "Bearer egm_not-a-token", "Bearer abc.def.ghi", "Basic dXNlcjpwYXNz", "Bearer x"]
)
def test_missing_or_wrong_token_gets_401_with_www_authenticate(
    streamable: RunningServer, authorization: str | None
) -> None:
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if authorization is not None:
        headers["Authorization"] = authorization
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    response = httpx2.post(streamable.endpoint, json=body, headers=headers)
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    # No identity provider is configured: the client is told what is wrong, not sent to a made-up OAuth server.
    assert "invalid or missing bearer token" in challenge and "resource_metadata" not in challenge
    assert "engram token create" in response.json()["error_description"]
    assert httpx2.get(f"{streamable.base}/.well-known/oauth-protected-resource/mcp").status_code == 404


def test_sse_without_token_gets_401(sse: RunningServer) -> None:
    response = httpx2.get(sse.endpoint)
    assert response.status_code == 401
    assert "invalid or missing bearer token" in response.headers["www-authenticate"]
    forged = httpx2.get(sse.endpoint, headers={"Authorization": "Bearer egm_forged"})
    assert forged.status_code == 401


async def test_wrong_token_cannot_open_an_mcp_session(streamable: RunningServer) -> None:
    # The client surfaces the 401 as an MCPError from its transport's task group (not a refused connection or a
    # timeout, which would also fail to open a session).
    refused = pytest.RaisesGroup(
        pytest.RaisesExc(MCPError, match="Server returned an error response"), flatten_subgroups=True
    )
    with refused:
        async with connect(streamable, "egm_wrong"):
            pass


async def test_read_only_token_cannot_remember(streamable: RunningServer) -> None:
    writer = token(streamable, "erin")
    async with connect(streamable, writer) as client:
        ok(await client.call_tool("remember", {"content": "Erin plays the cello."}))
    async with connect(streamable, token(streamable, "erin", scopes=("read",))) as client:
        refused = error(await client.call_tool("remember", {"content": "Erin hates the cello."}))
        assert "'write' scope" in refused
        refused = error(await client.call_tool("forget_user", {"confirm": True}))
        assert "'write' scope" in refused
        recalled = ok(await client.call_tool("recall", {"detail": "full", "query": "cello"}))
        assert [hit["memory"]["content"] for hit in recalled["memories"]] == ["Erin plays the cello."]


async def test_token_for_one_user_cannot_touch_another(streamable: RunningServer) -> None:
    async with connect(streamable, token(streamable, "bea")) as client:
        stored = ok(await client.call_tool("remember", {"content": "Bea's door code is 4711.", "session_id": "b1"}))
    async with connect(streamable, token(streamable, "al")) as client:
        for name, arguments in [
            ("recall", {"user_id": "bea", "query": "door code"}),
            ("remember", {"user_id": "bea", "content": "Bea's door code changed to 0000."}),
            ("forget_user", {"user_id": "bea", "confirm": True}),
            ("forget_memory", {"user_id": "bea", "memory_id": stored["id"]}),
            ("summarize_session", {"user_id": "bea", "session_id": "b1", "keep_recent": 0}),
        ]:
            refused = error(await client.call_tool(name, arguments))
            assert "may not act for the user_id given" in refused, name
            assert "bea" not in refused  # refusals never echo a user id (they reach the server log)
        for uri in ["engram://users/bea/memories", "engram://users/bea/sessions", "engram://users/bea/sessions/b1"]:
            with pytest.raises(MCPError, match="may not act for the user_id given"):
                await client.read_resource(uri)
        with pytest.raises(MCPError, match="may not act for the user_id given"):
            await client.get_prompt("layered_context", {"user_id": "bea", "message": "door code?"})
        # The token's own memory does not contain Bea's, whatever the query.
        assert ok(await client.call_tool("recall", {"detail": "full", "query": "door code"}))["memories"] == []
    async with connect(streamable, token(streamable, "bea")) as client:
        recalled = ok(await client.call_tool("recall", {"detail": "full", "query": "door code"}))
        assert [hit["memory"]["content"] for hit in recalled["memories"]] == ["Bea's door code is 4711."]
        assert len((await resource_json(client, "engram://users/bea/sessions/b1"))["turns"]) == 1


async def test_token_for_several_users_must_name_one(streamable: RunningServer) -> None:
    async with connect(streamable, token(streamable, "cy", "cy-work")) as client:
        refused = error(await client.call_tool("remember", {"content": "Cy commutes by bike."}))
        assert "'user_id' is required" in refused
        ok(await client.call_tool("remember", {"user_id": "cy-work", "content": "Cy's team ships on Fridays."}))
        recalled = ok(await client.call_tool("recall", {"detail": "full", "user_id": "cy-work", "query": "ships"}))
        assert recalled["memories"][0]["memory"]["user_id"] == "cy-work"
        assert (
            ok(await client.call_tool("recall", {"detail": "full", "user_id": "cy", "query": "ships"}))["memories"]
            == []
        )


async def test_agent_bound_token_writes_as_its_agent(streamable: RunningServer) -> None:
    async with connect(streamable, token(streamable, "fay", agent="planner")) as client:
        ok(await client.call_tool("remember", {"content": "Fay's trip is in May."}))
        refused = error(await client.call_tool("remember", {"content": "Fay's trip moved.", "agent_id": "mailer"}))
        assert "own agent" in refused
        ok(await client.call_tool("remember", {"content": "Fay packs light.", "agent_id": "planner"}))
        recalled = ok(await client.call_tool("recall", {"detail": "full", "query": "Fay", "top_k": 5}))
        assert {hit["memory"]["agent_id"] for hit in recalled["memories"]} == {"planner"}
        assert len(recalled["memories"]) == 2
        ok(
            await client.call_tool(
                "remember", {"content": "Fay's passport number is private.", "visibility": "private"}
            )
        )
    # Another agent of the same user, and a token with no agent, never see the planner's private memory.
    for other in (token(streamable, "fay", agent="mailer"), token(streamable, "fay")):
        async with connect(streamable, other) as client:
            recalled = ok(await client.call_tool("recall", {"detail": "full", "query": "Fay passport", "top_k": 10}))
            contents = {hit["memory"]["content"] for hit in recalled["memories"]}
            assert contents == {"Fay's trip is in May.", "Fay packs light."}
    # An agent-bound token cannot pose as the planner to read its private memories.
    async with connect(streamable, token(streamable, "fay", agent="mailer")) as client:
        assert "own agent" in error(
            await client.call_tool("recall", {"detail": "full", "query": "Fay", "agent_id": "planner"})
        )


async def test_admin_token_acts_for_any_named_user(streamable: RunningServer) -> None:
    async with connect(streamable, token(streamable, "gus")) as client:
        ok(await client.call_tool("remember", {"content": "Gus collects stamps."}))
    async with connect(streamable, token(streamable, scopes=("admin",))) as client:
        assert "'user_id' is required" in error(await client.call_tool("recall", {"detail": "full", "query": "stamps"}))
        recalled = ok(await client.call_tool("recall", {"detail": "full", "user_id": "gus", "query": "stamps"}))
        assert recalled["memories"][0]["memory"]["content"] == "Gus collects stamps."


def test_token_without_memory_scopes_gets_403_on_mcp(streamable: RunningServer) -> None:
    metrics_only = token(streamable, scopes=("metrics",))
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    response = httpx2.post(
        streamable.endpoint,
        json=body,
        headers={"Authorization": f"Bearer {metrics_only}", "Accept": "application/json, text/event-stream"},
    )
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


async def test_revoked_token_is_refused_at_once(streamable: RunningServer) -> None:
    tokens = TokenFile(streamable.data_dir / "tokens.json")
    record, secret = tokens.create(users=["hal"], scopes=["read"])
    async with connect(streamable, secret) as client:
        ok(await client.call_tool("recall", {"detail": "full", "query": "anything"}))
    assert tokens.revoke(record.id)
    response = httpx2.get(f"{streamable.base}/metrics", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 401
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    response = httpx2.post(streamable.endpoint, json=body, headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 401


async def test_sse_isolates_users_too(sse: RunningServer) -> None:
    async with connect(sse, token(sse, "ivy")) as client:
        ok(await client.call_tool("remember", {"content": "Ivy's PIN is 1234."}))
    async with connect(sse, token(sse, "jon", scopes=("read",))) as client:
        assert "may not act for" in error(
            await client.call_tool("recall", {"detail": "full", "user_id": "ivy", "query": "PIN"})
        )
        assert "'write' scope" in error(await client.call_tool("remember", {"content": "Jon was here."}))
        with pytest.raises(MCPError, match="may not act for"):
            await client.read_resource("engram://users/ivy/memories")
    async with connect(sse, token(sse, "ivy")) as client:
        assert len(ok(await client.call_tool("recall", {"detail": "full", "query": "PIN"}))["memories"]) == 1


# Acceptance 4: /metrics parses with prometheus-client's parser and moves after calls; /healthz.


def scrape(server: RunningServer, bearer: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx2.get(f"{server.base}/metrics", headers={"Authorization": f"Bearer {bearer}"})
    assert response.status_code == 200, response.text
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def test_metrics_parse_and_move_after_calls(streamable: RunningServer) -> None:
    scraper = token(streamable, scopes=("metrics",))
    before = scrape(streamable, scraper)
    async with connect(streamable, token(streamable, "kim")) as client:
        ok(await client.call_tool("remember", {"content": "Kim runs marathons.", "session_id": "k1"}))
        ok(await client.call_tool("remember", {"content": "Kim eats pasta before a race.", "session_id": "k1"}))
        ok(await client.call_tool("recall", {"detail": "full", "query": "marathons", "session_id": "k1"}))
        ok(await client.call_tool("recall", {"detail": "full", "query": "marathons", "min_score": 0.99}))
        error(await client.call_tool("recall", {"detail": "full", "query": "   "}))
    after = scrape(streamable, scraper)

    def moved(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert moved("engram_tool_calls_total", tool="remember") == 2
    assert moved("engram_tool_calls_total", tool="recall") == 3
    assert moved("engram_tool_errors_total", tool="recall") == 1
    assert moved("engram_tool_errors_total", tool="remember") == 0
    assert moved("engram_tool_call_seconds_count", tool="recall") == 3
    assert moved("engram_recall_seconds_count", tier="long_term") == 2
    assert moved("engram_recall_seconds_count", tier="working") == 1
    assert moved("engram_embedding_seconds_count") >= 3  # two writes and at least one query (the repeat is cached)
    assert moved("engram_embedded_texts_total") >= 3
    assert moved("engram_recall_result_score_count") >= 1
    assert moved("engram_recall_dropped_total") >= 1  # the unrelated memory is below 0.99 similarity
    assert moved("engram_memories_written_total") == 2
    assert after[("engram_tier_items", (("tier", "long_term"),))] >= 2
    assert after[("engram_tier_bytes", (("tier", "long_term"),))] > 0
    assert after[("engram_ready", ())] == 1
    # Per-user series are off by default, and no user id appears anywhere in the exposition.
    text = httpx2.get(f"{streamable.base}/metrics", headers={"Authorization": f"Bearer {scraper}"}).text
    assert "engram_user_" not in text
    assert "kim" not in text


def test_metrics_need_a_metrics_or_admin_token(streamable: RunningServer) -> None:
    anonymous = httpx2.get(f"{streamable.base}/metrics")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer ")
    reader = httpx2.get(f"{streamable.base}/metrics", headers={"Authorization": f"Bearer {token(streamable, 'lou')}"})
    assert reader.status_code == 403
    assert 'error="insufficient_scope"' in reader.headers["www-authenticate"]
    admin = token(streamable, scopes=("admin",))
    assert httpx2.get(f"{streamable.base}/metrics", headers={"Authorization": f"Bearer {admin}"}).status_code == 200


def test_healthz_reports_model_and_stores(streamable: RunningServer, sse: RunningServer) -> None:
    for server in (streamable, sse):
        health = httpx2.get(f"{server.base}/healthz")
        assert health.status_code == 200
        assert health.json() | {"version": "x"} == {
            "status": "ready",
            "model_loaded": True,
            "stores_open": True,
            "version": "x",
        }


def test_server_log_carries_no_user_ids_or_secrets(streamable: RunningServer) -> None:
    log = streamable.log()
    secret = token(streamable, "zed")
    assert "egm_" not in log
    assert secret not in log
    for user in ("bea", "kim", "erin"):
        assert f"'{user}'" not in log and f"/{user}/" not in log
