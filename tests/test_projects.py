"""Projects: a memory belongs to a user and optionally a project; recall stays inside the current project plus
the user's global memories unless asked; a project can be erased on its own; older tables gain the column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lancedb
import pyarrow as pa
import pytest
from click.testing import CliRunner
from mcp import Client

from engram.cli import cli
from engram.config import Settings
from engram.core.errors import ConfirmationRequired
from engram.core.filters import MemoryFilters
from engram.core.service import MemoryService
from engram.embeddings.hashing import HashEmbedder
from engram.runtime import open_memory
from tests.helpers import TEST_NOW, error, ok, stepping_clock

pytestmark = pytest.mark.anyio


async def _remember(client: Client, content: str, **arguments: Any) -> str:
    reply = ok(await client.call_tool("remember", {"user_id": "alice", "content": content, **arguments}))
    return str(reply["id"])


async def _recalled(client: Client, query: str, **arguments: Any) -> list[str]:
    reply = ok(await client.call_tool("recall", {"user_id": "alice", "query": query, "top_k": 20, **arguments}))
    return sorted(hit["content"] for hit in reply["hits"] if hit["tier"] == "long_term")


async def _three_places(client: Client) -> None:
    await _remember(client, "deploy with the blue pipeline", project="webshop")
    await _remember(client, "deploy with the red pipeline", project="firmware")
    await _remember(client, "deploy only on weekdays")


async def test_recall_searches_the_current_project_and_global_memories_only(client: Client) -> None:
    await _three_places(client)
    in_webshop = await _recalled(client, "deploy pipeline", filters={"project": "webshop"})
    assert in_webshop == ["deploy only on weekdays", "deploy with the blue pipeline"]
    # Without a project: the user's global memories, never a project's.
    assert await _recalled(client, "deploy pipeline") == ["deploy only on weekdays"]
    only = await _recalled(client, "deploy pipeline", filters={"project": "webshop", "projects": "only"})
    assert only == ["deploy with the blue pipeline"]
    everywhere = await _recalled(client, "deploy pipeline", filters={"projects": "any"})
    assert len(everywhere) == 3


async def test_the_same_words_in_two_projects_are_two_memories(client: Client) -> None:
    first = await _remember(client, "tabs, not spaces", project="webshop")
    second = await _remember(client, "tabs, not spaces", project="firmware")
    glob = await _remember(client, "tabs, not spaces")
    assert len({first, second, glob}) == 3
    listed = ok(await client.call_tool("list_memories", {"user_id": "alice", "filters": {"project": "firmware"}}))[
        "memories"
    ]
    assert sorted(m["project"] or "" for m in listed) == ["", "firmware"]


async def test_another_users_project_of_the_same_name_never_shows(client: Client) -> None:
    await client.call_tool(
        "remember", {"user_id": "bob", "content": "bob deploys from his laptop", "project": "webshop"}
    )
    assert await _recalled(client, "deploys laptop", filters={"project": "webshop", "projects": "any"}) == []


async def test_a_bad_project_name_is_refused_with_the_rule(client: Client) -> None:
    message = error(await client.call_tool("remember", {"user_id": "alice", "content": "x", "project": "a b"}))
    assert "project" in message
    message = error(
        await client.call_tool("recall", {"user_id": "alice", "query": "x", "filters": {"project": "../etc"}})
    )
    assert "project" in message


async def test_forget_project_erases_that_project_and_its_session_turns_only(service: MemoryService) -> None:
    await service.remember("alice", "webshop uses postgres", project="webshop", session_id="s1")
    await service.remember("alice", "webshop caches in redis", project="webshop")
    await service.remember("alice", "firmware uses C", project="firmware")
    await service.remember("alice", "alice likes green tea")
    await service.remember("bob", "bob's webshop runs on mysql", project="webshop")
    with pytest.raises(ConfirmationRequired):
        await service.forget_project("alice", "webshop", confirm=False)
    receipt = await service.forget_project("alice", "webshop", confirm=True)
    assert (receipt.long_term, receipt.session_turns) == (2, 1)
    left = await service.list_memories("alice", filters=MemoryFilters(projects="any"))
    assert sorted(m.content for m in left.memories) == ["alice likes green tea", "firmware uses C"]
    assert [t.content for t in service.sessions.working(service.user_key("alice"), "s1")] == []
    bob = await service.list_memories("bob", filters=MemoryFilters(projects="any"))
    assert [m.content for m in bob.memories] == ["bob's webshop runs on mysql"]


def test_forget_project_on_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGRAM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ENGRAM_EMBEDDING_MODEL", "hash")
    runner = CliRunner()
    assert runner.invoke(cli, ["remember", "alice", "kept globally"]).exit_code == 0
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash")
    memory = open_memory(settings, HashEmbedder(), clock=stepping_clock)
    try:
        import anyio

        anyio.run(lambda: memory.remember("alice", "only in webshop", project="webshop"))
    finally:
        memory.close()
    result = runner.invoke(cli, ["forget-project", "alice", "webshop", "--yes"])
    assert result.exit_code == 0, result.output
    assert '"long_term": 1' in result.output


def test_a_table_written_before_projects_gains_the_column_and_its_rows_are_global(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash")
    embedder = HashEmbedder()
    memory = open_memory(settings, embedder, clock=stepping_clock)
    alice = memory.user_key("alice")
    memory.close()
    db = lancedb.connect(str(settings.data_dir / "lancedb"))
    current = db.open_table("memories").schema
    # The table as main wrote it before projects: every column but `project`.
    before = pa.schema([f for f in current if f.name != "project"], current.metadata)
    row: dict[str, Any] = dict.fromkeys(before.names) | {
        "id": "0" * 32,
        "user_id": alice,
        "visibility": "shared",
        "kind": "fact",
        "content": "written before projects",
        "created_at": TEST_NOW,
        "index_text": "written before projects",
        "vector": embedder.embed(["written before projects"])[0].tolist(),
    }
    db.create_table("memories", schema=before, data=[row], mode="overwrite")
    upgraded = open_memory(settings, embedder, clock=stepping_clock)
    try:
        assert "project" in db.open_table("memories").schema.names
        in_project = upgraded.long_term.list_memories(alice, MemoryFilters(project="webshop"), 10)
        assert [(m.content, m.project) for m in in_project] == [("written before projects", None)]
        only = upgraded.long_term.list_memories(alice, MemoryFilters(project="webshop", projects="only"), 10)
        assert only == []
    finally:
        upgraded.close()


async def test_a_sessions_summary_stays_in_the_sessions_project(service: MemoryService) -> None:
    for text in ("the webshop deploy failed on step three", "we rolled the webshop deploy back", "retry tomorrow"):
        await service.remember("alice", text, project="webshop", session_id="incident")
    done = await service.summarize_session("alice", "incident", keep_recent=1, summary="Webshop deploy rolled back.")
    listed = await service.list_memories("alice", filters=MemoryFilters(projects="any"))
    (summary,) = [m for m in listed.memories if m.id == done.summary_id]
    assert summary.project == "webshop"
    elsewhere = await service.recall("alice", "webshop deploy rolled back", filters=MemoryFilters(project="firmware"))
    assert done.summary_id not in {hit.memory.id for hit in elsewhere.memories}
