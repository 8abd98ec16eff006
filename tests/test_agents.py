"""Memory shared between agents: visibility per memory and the agent filters of `recall`, through MCP."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp import Client
from mcp.types import TextResourceContents

from tests.helpers import error, ok

pytestmark = pytest.mark.anyio

QUERY = "notes about the customer"


async def _remember(client: Client, content: str, **arguments: Any) -> str:
    result = ok(await client.call_tool("remember", {"user_id": "alice", "content": content, **arguments}))
    return str(result["id"])


async def _recalled(client: Client, agent_id: str | None = None, **filters: Any) -> set[str]:
    arguments = {
        "detail": "full",
        "user_id": "alice",
        "query": QUERY,
        "top_k": 50,
        "agent_id": agent_id,
        "filters": filters,
    }
    result = ok(await client.call_tool("recall", arguments))
    return {hit["memory"]["content"] for hit in result["memories"]}


@pytest.fixture
async def team(client: Client) -> Client:
    """Three agents of one user: each writes a shared note and a private one; one note has no agent."""
    for agent in ("desk", "ide", "mail"):
        await _remember(client, f"{agent} shared note about the customer", agent_id=agent)
        await _remember(client, f"{agent} private note about the customer", agent_id=agent, visibility="private")
    await _remember(client, "agentless note about the customer")
    return client


SHARED = {"desk shared note about the customer", "ide shared note about the customer"}
SHARED |= {"mail shared note about the customer", "agentless note about the customer"}


async def test_every_memory_records_the_agent_that_wrote_it(team: Client) -> None:
    result = ok(
        await team.call_tool(
            "recall", {"detail": "full", "user_id": "alice", "query": QUERY, "top_k": 50, "agent_id": "ide"}
        )
    )
    writers = {hit["memory"]["content"].split()[0]: hit["memory"]["agent_id"] for hit in result["memories"]}
    assert writers == {"desk": "desk", "ide": "ide", "mail": "mail", "agentless": None}
    visibility = {hit["memory"]["content"]: hit["memory"]["visibility"] for hit in result["memories"]}
    assert visibility["ide private note about the customer"] == "private"
    assert visibility["desk shared note about the customer"] == "shared"


async def test_an_agent_sees_shared_memories_and_only_its_own_private_ones(team: Client) -> None:
    assert await _recalled(team, agent_id="ide") == SHARED | {"ide private note about the customer"}
    assert await _recalled(team, agent_id="desk") == SHARED | {"desk private note about the customer"}
    # Without saying who asks, no private memory at all.
    assert await _recalled(team) == SHARED


async def test_include_exclude_and_shared_only(team: Client) -> None:
    assert await _recalled(team, agent_id="ide", from_agents=["ide"]) == {
        "ide shared note about the customer",
        "ide private note about the customer",
    }
    # Including another agent never reveals its private memories.
    assert await _recalled(team, agent_id="ide", from_agents=["desk", "mail"]) == {
        "desk shared note about the customer",
        "mail shared note about the customer",
    }
    assert await _recalled(team, agent_id="ide", exclude_agents=["desk"]) == {
        "ide shared note about the customer",
        "ide private note about the customer",
        "mail shared note about the customer",
        "agentless note about the customer",
    }
    assert await _recalled(team, agent_id="ide", shared_only=True) == SHARED
    assert await _recalled(team, agent_id="ide", shared_only=True, exclude_agents=["ide", "mail"]) == {
        "desk shared note about the customer",
        "agentless note about the customer",
    }


async def test_private_memories_of_another_agent_are_never_returned(team: Client) -> None:
    for arguments in (
        {"agent_id": "mail"},
        {"agent_id": "mail", "from_agents": ["ide"]},
        {"agent_id": "mail", "kind": "fact"},
        {},
    ):
        assert "ide private note about the customer" not in await _recalled(team, **arguments)
    listed = ok(await team.call_tool("list_memories", {"user_id": "alice", "agent_id": "mail", "limit": 100}))
    assert {m["content"] for m in listed["memories"]} == SHARED | {"mail private note about the customer"}


async def test_private_session_turns_stay_out_of_other_agents_working_memory(client: Client) -> None:
    await _remember(client, "ide says hello", agent_id="ide", session_id="s1")
    await _remember(client, "ide thinks privately", agent_id="ide", session_id="s1", visibility="private")
    for agent, expected in (("ide", ["ide says hello", "ide thinks privately"]), ("desk", ["ide says hello"])):
        result = ok(
            await client.call_tool(
                "recall",
                {"detail": "full", "user_id": "alice", "query": "hello", "session_id": "s1", "agent_id": agent},
            )
        )
        assert [t["content"] for t in result["working"]] == expected


async def test_another_agents_private_memory_cannot_be_forgotten_or_updated(team: Client) -> None:
    memory_id = await _remember(team, "ide private note about the customer", agent_id="ide", visibility="private")
    for agent in ("desk", None):
        who = {"agent_id": agent} if agent else {}
        message = error(await team.call_tool("forget_memory", {"user_id": "alice", "memory_id": memory_id, **who}))
        assert "no memory" in message
        message = error(
            await team.call_tool("update_memory", {"user_id": "alice", "memory_id": memory_id, "resolved": True, **who})
        )
        assert "no memory" in message
    ok(await team.call_tool("forget_memory", {"user_id": "alice", "memory_id": memory_id, "agent_id": "ide"}))
    assert "ide private note about the customer" not in await _recalled(team, agent_id="ide")


async def test_private_needs_an_agent(client: Client) -> None:
    message = error(
        await client.call_tool("remember", {"user_id": "alice", "content": "secret", "visibility": "private"})
    )
    assert "visibility" in message and "agent_id" in message


async def test_the_agents_resource_counts_what_the_asker_may_see(team: Client) -> None:
    contents = (await team.read_resource("engram://users/alice/agents")).contents[0]
    assert isinstance(contents, TextResourceContents)
    agents = {a["agent_id"]: (a["shared"], a["private"]) for a in json.loads(contents.text)}
    # Read without an agent identity (stdio): private memories are not counted for anyone.
    assert agents == {"desk": (1, 0), "ide": (1, 0), "mail": (1, 0), None: (1, 0)}
    await _remember(team, "only private from this one", agent_id="ghost", visibility="private")
    contents = (await team.read_resource("engram://users/alice/agents")).contents[0]
    assert isinstance(contents, TextResourceContents)
    assert "ghost" not in {a["agent_id"] for a in json.loads(contents.text)}
    other = (await team.read_resource("engram://users/bob/agents")).contents[0]
    assert isinstance(other, TextResourceContents) and json.loads(other.text) == []


async def test_summaries_of_private_turns_stay_private(client: Client) -> None:
    for i in range(8):
        await _remember(
            client, f"private turn number {i} about plans", agent_id="ide", session_id="s9", visibility="private"
        )
    summary = ok(
        await client.call_tool(
            "summarize_session", {"user_id": "alice", "session_id": "s9", "agent_id": "ide", "keep_recent": 2}
        )
    )
    listed = ok(
        await client.call_tool(
            "list_memories", {"user_id": "alice", "agent_id": "desk", "filters": {"kind": "summary"}}
        )
    )
    assert listed["memories"] == []
    mine = ok(
        await client.call_tool("list_memories", {"user_id": "alice", "agent_id": "ide", "filters": {"kind": "summary"}})
    )
    assert [m["id"] for m in mine["memories"]] == [summary["summary_id"]]
    assert mine["memories"][0]["visibility"] == "private"


async def test_only_the_writing_agent_may_change_a_memorys_visibility(team: Client) -> None:
    shared = await _remember(team, "ide shared note about the customer", agent_id="ide")
    agentless = await _remember(team, "agentless note about the customer")
    for memory_id, asker in ((shared, "desk"), (shared, None), (agentless, "desk"), (agentless, None)):
        who = {"agent_id": asker} if asker else {}
        refused = error(
            await team.call_tool(
                "update_memory", {"user_id": "alice", "memory_id": memory_id, "visibility": "private", **who}
            )
        )
        assert "visibility" in refused and "only the agent that wrote" in refused
    # Nothing changed: every agent still sees both notes.
    assert {"ide shared note about the customer", "agentless note about the customer"} <= await _recalled(
        team, agent_id="desk"
    )
    ok(
        await team.call_tool(
            "update_memory", {"user_id": "alice", "memory_id": shared, "visibility": "private", "agent_id": "ide"}
        )
    )
    assert "ide shared note about the customer" not in await _recalled(team, agent_id="desk")


async def test_the_transcript_resource_hides_private_turns_from_a_reader_without_that_agent(client: Client) -> None:
    await _remember(client, "ide says hello", agent_id="ide", session_id="s1")
    await _remember(client, "ide thinks privately", agent_id="ide", session_id="s1", visibility="private")
    await _remember(client, "desk answers", agent_id="desk", session_id="s1")
    contents = (await client.read_resource("engram://users/alice/sessions/s1")).contents[0]
    assert isinstance(contents, TextResourceContents)
    # Stdio and in-process readers carry no agent identity: they see shared turns only.
    assert [t["content"] for t in json.loads(contents.text)["turns"]] == ["ide says hello", "desk answers"]
