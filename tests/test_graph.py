"""A graph per user: entities, relations and observations in the official memory server's terms, recall that
follows relations one hop, merging names, private items, import of the official server's file, and erasure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner
from mcp import Client

from engram.cli import cli
from engram.config import Settings
from engram.core.errors import InvalidInput
from engram.core.memory_json import parse_memory_json
from engram.core.service import MemoryService
from engram.embeddings.hashing import HashEmbedder
from engram.runtime import open_memory
from engram.server.app import build_server
from tests.helpers import error, ok, stepping_clock

pytestmark = pytest.mark.anyio

FIXTURE = Path(__file__).parent / "data" / "official-memory.jsonl"


@pytest.fixture
def graph_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", embedding_model="hash", tools="graph")


@pytest.fixture
async def graph_client(graph_settings: Settings) -> Any:
    async with Client(build_server(graph_settings, embedder=HashEmbedder(), clock=stepping_clock)) as client:
        yield client


async def _fill(client: Client, user: str = "uma") -> None:
    for i in range(25):
        ok(await client.call_tool("remember", {"user_id": user, "content": f"note {i} about the weather and tea"}))
    ok(
        await client.call_tool(
            "create_entities",
            {
                "user_id": user,
                "entities": [
                    {"name": "Priya Patel", "entityType": "person", "observations": ["Plays the cello on Sundays"]},
                    {
                        "name": "Acme Robotics",
                        "entityType": "organization",
                        "observations": ["Headquarters in Rotterdam"],
                    },
                ],
            },
        )
    )
    ok(
        await client.call_tool(
            "create_relations",
            {
                "user_id": user,
                "relations": [{"from": "Priya Patel", "to": "Acme Robotics", "relationType": "works_at"}],
            },
        )
    )


async def test_graph_tools_speak_the_official_servers_terms(graph_client: Client) -> None:
    await _fill(graph_client)
    opened = ok(await graph_client.call_tool("open_nodes", {"user_id": "uma", "names": ["priya patel"]}))
    (node,) = opened["entities"]
    assert node["name"] == "Priya Patel" and node["entityType"] == "person"
    assert node["observations"] == ["Plays the cello on Sundays"]
    (edge,) = opened["relations"]
    assert (edge["from"], edge["to"], edge["relationType"]) == ("Priya Patel", "Acme Robotics", "works_at")
    assert len(edge["memory_ids"]) == 1 and edge["valid_until"] is None

    added = ok(
        await graph_client.call_tool(
            "add_observations",
            {"user_id": "uma", "observations": [{"entityName": "Acme Robotics", "contents": ["Founded in 2009"]}]},
        )
    )
    assert added["memories_created"] == 1
    found = ok(await graph_client.call_tool("search_nodes", {"user_id": "uma", "query": "organization"}))
    assert [e["name"] for e in found["entities"]] == ["Acme Robotics"]
    assert set(found["entities"][0]["observations"]) == {"Headquarters in Rotterdam", "Founded in 2009"}
    whole = ok(await graph_client.call_tool("read_graph", {"user_id": "uma"}))
    assert {e["name"] for e in whole["entities"]} == {"Priya Patel", "Acme Robotics"} and len(whole["relations"]) == 1
    resource = await graph_client.read_resource("engram://users/uma/graph")
    assert json.loads(resource.contents[0].text)["relations"] == whole["relations"]  # type: ignore[union-attr]

    missing = error(
        await graph_client.call_tool(
            "add_observations", {"user_id": "uma", "observations": [{"entityName": "Nobody", "contents": ["x"]}]}
        )
    )
    assert "no entity 'Nobody'" in missing and "create_entities" in missing
    assert ok(await graph_client.call_tool("read_graph", {"user_id": "vic"})) == {
        "entities": [],
        "relations": [],
        "truncated": False,
    }


async def test_recall_follows_a_relation_one_hop(graph_client: Client) -> None:
    await _fill(graph_client)
    query = {"user_id": "uma", "query": "Where is Priya Patel's employer based?", "top_k": 3, "detail": "full"}
    reply = ok(await graph_client.call_tool("recall", query))
    contents = [h["content"] for h in reply["hits"]]
    # The answer names neither Priya nor her employer's name: only the relation leads to it.
    assert "Headquarters in Rotterdam" in contents
    boosted = {m["memory"]["content"]: m["scores"]["graph_boost"] for m in reply["memories"]}
    assert boosted["Headquarters in Rotterdam"] > 0


async def test_merging_names_makes_aliases_and_moves_relations(graph_client: Client) -> None:
    await _fill(graph_client)
    ok(
        await graph_client.call_tool(
            "create_relations",
            {
                "user_id": "uma",
                "relations": [{"from": "Dr. Patel", "to": "City Hospital", "relationType": "consults_at"}],
            },
        )
    )
    merged = ok(
        await graph_client.call_tool(
            "merge_entities", {"user_id": "uma", "keep": "Priya Patel", "merge": ["Dr. Patel"]}
        )
    )
    assert merged["name"] == "Priya Patel" and merged["aliases"] == ["Dr. Patel"]
    opened = ok(await graph_client.call_tool("open_nodes", {"user_id": "uma", "names": ["Dr. Patel"]}))
    assert [e["name"] for e in opened["entities"]] == ["Priya Patel"]
    assert {(r["from"], r["to"]) for r in opened["relations"]} == {
        ("Priya Patel", "Acme Robotics"),
        ("Priya Patel", "City Hospital"),
    }
    whole = ok(await graph_client.call_tool("read_graph", {"user_id": "uma"}))
    assert "Dr. Patel" not in {e["name"] for e in whole["entities"]}


async def test_private_graph_items_stay_with_their_agent(graph_client: Client) -> None:
    ok(
        await graph_client.call_tool(
            "create_entities",
            {
                "user_id": "wes",
                "agent_id": "a1",
                "visibility": "private",
                "entities": [{"name": "Project Falcon", "entityType": "project", "observations": ["Due in May"]}],
            },
        )
    )
    mine = ok(await graph_client.call_tool("read_graph", {"user_id": "wes", "agent_id": "a1"}))
    assert [e["observations"] for e in mine["entities"]] == [["Due in May"]]
    theirs = ok(await graph_client.call_tool("read_graph", {"user_id": "wes", "agent_id": "a2"}))
    assert theirs["entities"] == []
    assert (
        ok(await graph_client.call_tool("open_nodes", {"user_id": "wes", "names": ["Project Falcon"]}))["entities"]
        == []
    )
    refused = error(
        await graph_client.call_tool(
            "create_entities", {"user_id": "wes", "visibility": "private", "entities": [{"name": "X"}]}
        )
    )
    assert "agent_id" in refused


def test_bad_lines_of_a_memory_server_file_are_named() -> None:
    with pytest.raises(InvalidInput, match="line 2"):
        parse_memory_json(['{"type":"entity","name":"A","entityType":"person","observations":[]}', '{"type":"x"}'])
    with pytest.raises(InvalidInput, match="line 1"):
        parse_memory_json(["not json"])


def _cli(data_dir: Path, *args: str) -> tuple[int, str, str]:
    env = {"ENGRAM_DATA_DIR": str(data_dir), "ENGRAM_EMBEDDING_MODEL": "hash"}
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def _raw_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


def test_import_of_the_official_servers_file_answers_across_a_relation_and_erases_without_trace(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    code, out, err = _cli(data, "import", "memory-json", str(FIXTURE), "--user", "zoe")
    assert code == 0, err
    first = json.loads(out)
    assert first["entities"] == 3 and first["relations"] == 2 and first["memories_created"] == 6
    code, out, _ = _cli(data, "import", "memory-json", str(FIXTURE), "--user", "zoe")
    again = json.loads(out)
    assert (again["entities_created"], again["relations_created"], again["memories_created"]) == (0, 0, 0)
    code, out, _ = _cli(data, "doctor", "--json")
    checked = {c["component"]: c for c in json.loads(out)["components"]}
    assert code == 0 and checked["graph entities"]["items"] == 3 and checked["graph relations"]["items"] == 2

    settings = Settings(data_dir=data, embedding_model="hash", tools="graph")
    key = anyio.run(_ask_then_forget, settings)
    raw = _raw_bytes(data).lower()
    for trace in ("john_smith", "anthropic", "san francisco", key.lower()):
        assert trace.encode() not in raw, f"{trace!r} left in a file"


async def _ask_then_forget(settings: Settings) -> str:
    """Answer across one relation of the imported graph, then erase the user; return the user's key."""
    memory: MemoryService = open_memory(settings, HashEmbedder(), clock=stepping_clock)
    try:
        # John_Smith works at Anthropic; where Anthropic is comes from Anthropic's own observation.
        result = await memory.recall("zoe", "In which city is John Smith's employer?", top_k=3)
        assert "Based in San Francisco" in [h.memory.content for h in result.memories]
        graph = memory.graph
        assert graph is not None
        whole = await graph.read_graph("zoe")
        assert {e.name for e in whole.entities} == {"John_Smith", "Anthropic", "Jane_Doe"}
        key = memory.user_key("zoe")
        receipt = await memory.forget_user("zoe", confirm=True)
        assert receipt.graph == 5 and receipt.long_term == 6
        assert (await graph.read_graph("zoe")).entities == []
        return key
    finally:
        memory.close()


async def test_a_damaged_graph_leaves_recall_answering_and_is_reported(graph_settings: Settings) -> None:
    async with Client(build_server(graph_settings, embedder=HashEmbedder(), clock=stepping_clock)) as client:
        await _fill(client)
    for fragment in (graph_settings.graph_dir / "entities.lance" / "data").glob("*.lance"):
        fragment.unlink()
    async with Client(build_server(graph_settings, embedder=HashEmbedder(), clock=stepping_clock)) as client:
        reply = ok(await client.call_tool("recall", {"user_id": "uma", "query": "Where does Priya Patel work?"}))
        assert "Priya Patel works at Acme Robotics" in [h["content"] for h in reply["hits"]]
        damaged = error(await client.call_tool("read_graph", {"user_id": "uma"}))
        assert "graph" in damaged.lower()
        stats = json.loads((await client.read_resource("engram://stats")).contents[0].text)  # type: ignore[union-attr]
        assert stats["graph"]["status"] == "damaged"
