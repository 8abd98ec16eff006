"""Export and import: export -> erase -> import restores the same memories, sessions and knowledge, field by field,
once however often it runs; vectors travel only with the same model; claude.ai and ChatGPT exports come in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from click.testing import CliRunner

from engram.cli import cli
from engram.config import Settings
from engram.core.filters import MemoryFilters
from engram.core.graph_models import EntityIn, RelationIn
from engram.core.knowledge_models import DocumentFormat
from engram.core.models import Kind, Role, Sentiment, Visibility
from engram.core.service import MemoryService
from engram.embeddings.hashing import HashEmbedder
from engram.runtime import open_memory
from tests.helpers import TEST_NOW, stepping_clock

EXPORTS = Path(__file__).parent / "fixtures" / "exports"


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("ENGRAM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ENGRAM_EMBEDDING_MODEL", "hash")
    monkeypatch.setenv("ENGRAM_DEFAULT_USER", "alice")
    return Settings(data_dir=tmp_path / "data", embedding_model="hash")


def _with(settings: Settings, action: Any) -> Any:
    memory = open_memory(settings, HashEmbedder(), clock=stepping_clock)
    try:
        return anyio.run(action, memory)
    finally:
        memory.close()


async def _populate(memory: MemoryService) -> None:
    """Alice's memory with every kind of field set, a summarised session, a project and a knowledge source."""
    await memory.remember(
        "alice",
        "Prefers invoices in PDF, sent to the finance mailbox",
        tags=["billing", "preference"],
        category="preference",
        entities=["Acme Corp"],
        sentiment=Sentiment.NEUTRAL,
        importance=0.8,
        resolved=False,
        metadata={"source": "call", "speaker": "Alice", "minutes": 12, "vip": True},
        occurred_at=TEST_NOW,
    )
    await memory.remember("alice", "Private note for the ide agent", agent_id="ide", visibility=Visibility.PRIVATE)
    await memory.remember("alice", "Webshop orders live in PostgreSQL", project="webshop", tags=["db"])
    for i, (role, text) in enumerate(
        [
            (Role.USER, "Can we move the call to Friday?"),
            (Role.ASSISTANT, "Friday at 10 works for the team."),
            (Role.USER, "Great, book the small room."),
            (Role.ASSISTANT, "Booked room 2 for Friday 10:00."),
        ]
    ):
        await memory.remember("alice", text, session_id="call-planning", role=role, agent_id="desk" if i else None)
    await memory.summarize_session("alice", "call-planning", keep_recent=2, summary="Call moved to Friday 10:00.")
    assert memory.knowledge is not None
    await memory.knowledge.ingest_text(
        "alice",
        "runbook.md",
        "# Runbook\n\n## Deploys\n\nDeploy on weekdays only.",
        DocumentFormat.MARKDOWN,
    )
    await memory.remember("bob", "Bob's memory stays out of Alice's export")


async def _snapshot(memory: MemoryService, user: str = "alice") -> dict[str, Any]:
    """Everything stored for the user: memories with index text and vector, sessions, knowledge chunks."""
    key = memory.user_key(user)
    stored = memory.long_term.stored_memories(key)
    sessions = {}
    for info in memory.sessions.sessions(key):
        sessions[info.session_id] = {
            "info": info.model_dump(exclude={"last_active_at"}),
            "transcript": [t.model_dump() for t in memory.sessions.transcript(key, info.session_id) or []],
            "working": [t.model_dump() for t in memory.sessions.working(key, info.session_id)],
        }
    assert memory.knowledge is not None
    chunks = memory.knowledge.store.chunks_of(key)
    return {
        "memories": {s.memory.id: (s.memory.model_dump(), s.index_text, s.vector.tolist()) for s in stored},
        "sessions": sessions,
        "knowledge": {c.chunk.id: (c.chunk, c.vector.tolist()) for c in chunks},
    }


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def test_export_erase_import_restores_the_same_memories_sessions_and_knowledge(
    settings: Settings, tmp_path: Path
) -> None:
    _with(settings, _populate)
    before = _with(settings, _snapshot)
    assert len(before["memories"]) == 8 and len(before["knowledge"]) >= 1
    assert any(m[0]["kind"] == Kind.SUMMARY and m[0]["links"] for m in before["memories"].values())
    assert any(t["is_summary"] for t in before["sessions"]["call-planning"]["working"])

    exported = tmp_path / "alice.jsonl"
    _invoke("export", "--user", "alice", str(exported))
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    assert lines[0]["type"] == "engram-export" and lines[0]["model"] == HashEmbedder().model_id
    assert [r["type"] for r in lines[1:]].count("memory") == 8
    assert all("vector" not in r for r in lines[1:])
    assert "Bob" not in exported.read_text()
    assert exported.stat().st_mode & 0o077 == 0

    _invoke("forget-user", "alice", "--yes")
    assert _with(settings, _snapshot)["memories"] == {}

    restored = json.loads(_invoke("import", str(exported)))
    assert restored["memories_new"] == 8 and restored["knowledge_sources"] == 1
    after = _with(settings, _snapshot)
    assert after["memories"].keys() == before["memories"].keys()
    for memory_id, (fields, index_text, vector) in before["memories"].items():
        again, again_text, again_vector = after["memories"][memory_id]
        for name, value in fields.items():
            assert again[name] == value, (memory_id, name)
        assert again_text == index_text
        assert np.allclose(again_vector, vector)
    assert after["sessions"] == before["sessions"]
    assert after["knowledge"].keys() == before["knowledge"].keys()
    for chunk_id, (chunk, vector) in before["knowledge"].items():
        assert after["knowledge"][chunk_id][0] == chunk
        assert np.allclose(after["knowledge"][chunk_id][1], vector)

    # Importing again changes nothing.
    repeated = json.loads(_invoke("import", str(exported)))
    assert (repeated["memories_new"], repeated["turns_new"]) == (0, 0)
    assert _with(settings, _snapshot)["sessions"] == before["sessions"]
    assert _with(settings, _snapshot)["memories"].keys() == before["memories"].keys()


def test_vectors_travel_with_the_same_model_only(settings: Settings, tmp_path: Path) -> None:
    _with(settings, lambda m: m.remember("alice", "The router is in the hall cupboard"))
    exported = tmp_path / "with.jsonl"
    _invoke("export", "--with-vectors", str(exported))
    header, record = (json.loads(line) for line in exported.read_text().splitlines())
    assert len(record["vector"]) == HashEmbedder().dimensions
    # A vector the file carries is used as it is when the model is the same...
    record["vector"] = [0.0] * len(record["vector"])
    exported.write_text(json.dumps(header) + "\n" + json.dumps(record) + "\n")
    _invoke("forget-user", "alice", "--yes")
    _invoke("import", str(exported))
    kept = _with(settings, lambda m: _vectors(m))
    assert kept == [[0.0] * len(record["vector"])]
    # ...and re-embedded when the file was made with another model.
    exported.write_text(json.dumps(header | {"model": "some-other-model"}) + "\n" + json.dumps(record) + "\n")
    _invoke("forget-user", "alice", "--yes")
    _invoke("import", str(exported))
    embedded = _with(settings, lambda m: _vectors(m))
    assert np.allclose(embedded[0], HashEmbedder().embed([record["index_text"]])[0])


async def _vectors(memory: MemoryService) -> list[list[float]]:
    return [s.vector.tolist() for s in memory.long_term.stored_memories(memory.user_key("alice"))]


def test_a_project_export_holds_that_project_only(settings: Settings, tmp_path: Path) -> None:
    _with(settings, _populate)
    exported = tmp_path / "webshop.jsonl"
    _invoke("export", "--project", "webshop", str(exported))
    records = [json.loads(line) for line in exported.read_text().splitlines()[1:]]
    assert [(r["type"], r["memory"]["content"]) for r in records] == [("memory", "Webshop orders live in PostgreSQL")]


def test_a_file_that_is_not_an_export_is_refused_in_one_line(settings: Settings, tmp_path: Path) -> None:
    wrong = tmp_path / "notes.jsonl"
    wrong.write_text(json.dumps({"hello": "world"}) + "\n")
    result = CliRunner().invoke(cli, ["import", str(wrong)])
    assert result.exit_code == 1 and "not an Engram export" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_claude_ai_conversations_are_imported_once(settings: Settings) -> None:
    source = EXPORTS / "claude_conversations.json"
    first = json.loads(_invoke("import", str(source)))
    assert (first["format"], first["conversations"], first["stored"]) == ("claude", 2, 2)
    assert json.loads(_invoke("import", str(source)))["stored"] == 0
    page = _with(settings, lambda m: m.list_memories("alice", filters=MemoryFilters(projects="any")))
    turns = sorted(page.memories, key=lambda m: m.created_at)
    assert [(t.role, t.session_id, t.agent_id) for t in turns] == [
        (Role.USER, "0b6f4a52-8d1e-4c2a-9f3b-7e5d1c2a4b60", "claude.ai"),
        (Role.ASSISTANT, "0b6f4a52-8d1e-4c2a-9f3b-7e5d1c2a4b60", "claude.ai"),
    ]
    assert turns[0].content.startswith("My starter peaks about 6 hours")
    assert turns[0].created_at.isoformat() == "2026-03-02T18:04:11.812345+00:00"


def test_chatgpt_conversations_follow_the_branch_last_shown(settings: Settings) -> None:
    source = EXPORTS / "chatgpt_conversations.json"
    first = json.loads(_invoke("import", str(source), "--project", "cycling"))
    assert (first["format"], first["stored"]) == ("chatgpt", 2)
    page = _with(settings, lambda m: m.list_memories("alice", filters=MemoryFilters(project="cycling")))
    turns = sorted(page.memories, key=lambda m: m.created_at)
    assert [(t.role, t.content) for t in turns] == [
        (Role.USER, "I commute 14 km by bike; which tyre width is best for wet cobblestones?"),
        (Role.ASSISTANT, "For wet cobblestones, 32-35 mm tyres at lower pressure grip best."),
    ]
    assert {t.session_id for t in turns} == {"6f1d2e3c-4b5a-4978-8a6b-5c4d3e2f1a0b"}
    assert turns[0].created_at.isoformat() == "2025-03-06T09:00:01.200000+00:00"
    assert json.loads(_invoke("import", str(source), "--project", "cycling"))["stored"] == 0


async def _populate_graph(memory: MemoryService) -> None:
    """Alice's graph: shared entities and a relation, and a private one of the `ide` agent; Bob's stays apart."""
    assert memory.graph is not None
    await memory.graph.create_entities(
        "alice",
        [
            EntityIn.model_validate(
                {"name": "Priya Patel", "entityType": "person", "observations": ["Leads the data team"]}
            ),
            EntityIn.model_validate({"name": "Acme", "entityType": "organization", "aliases": ["Acme Corp"]}),
        ],
    )
    await memory.graph.create_relations(
        "alice", [RelationIn.model_validate({"from": "Priya Patel", "to": "Acme", "relationType": "works_at"})]
    )
    await memory.graph.create_relations(
        "alice",
        [RelationIn.model_validate({"from": "Priya Patel", "to": "Chess club", "relationType": "member_of"})],
        agent_id="ide",
        visibility=Visibility.PRIVATE,
    )
    await memory.graph.create_entities("bob", [EntityIn.model_validate({"name": "Bob's dentist"})])


async def _graph_snapshot(memory: MemoryService) -> dict[str, Any]:
    """Every entity and relation of Alice, as the shared view and the `ide` agent's view see them."""
    graph, key = memory.graph_store, memory.user_key("alice")
    assert graph is not None
    seen: dict[str, Any] = {}
    for agent in (None, "ide"):
        view = MemoryFilters().seen_by(agent)
        seen.update({e.id: e.model_dump() for e in graph.entities(key, view, None, 1000)})
        seen.update({r.id: r.model_dump() for r in graph.relations(key, view, None, 1000)})
    return seen


def test_the_graph_travels_with_the_export_private_items_included(settings: Settings, tmp_path: Path) -> None:
    _with(settings, _populate_graph)
    before = _with(settings, _graph_snapshot)
    assert len(before) == 5  # Priya, Acme, works_at; the ide agent's private Chess club and member_of

    exported = tmp_path / "alice.jsonl"
    _invoke("export", "--user", "alice", str(exported))
    kinds = [json.loads(line)["type"] for line in exported.read_text().splitlines()]
    assert (kinds.count("entity"), kinds.count("relation")) == (3, 2)
    assert "dentist" not in exported.read_text()

    _invoke("forget-user", "alice", "--yes")
    assert _with(settings, _graph_snapshot) == {}
    _invoke("import", str(exported))
    assert _with(settings, _graph_snapshot) == before
    again = json.loads(_invoke("import", str(exported)))
    assert again["relations_new"] == 0 and _with(settings, _graph_snapshot) == before
