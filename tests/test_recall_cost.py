"""Work recall does not do: no scan of an empty graph, no LanceDB search while the in-memory index answers."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
import pytest

from engram.core.graph_models import EntityIn
from engram.core.knowledge_models import DocumentFormat
from engram.core.service import MemoryService
from engram.storage.graph import LanceGraphStore
from engram.storage.long_term import LanceLongTermStore

pytestmark = pytest.mark.anyio


def _inner(store: Any) -> Any:
    """The engine store behind the service's guard and journal decorators."""
    while hasattr(store, "inner") or hasattr(store, "store"):
        store = getattr(store, "inner", None) or store.store
    return store


async def test_a_recall_with_no_graph_stored_reads_no_graph(
    service: MemoryService, monkeypatch: pytest.MonkeyPatch
) -> None:
    graph = _inner(service.graph_store)
    assert isinstance(graph, LanceGraphStore)
    reads: list[str] = []
    real = graph._read
    monkeypatch.setattr(graph, "_read", lambda *a: reads.append("read") or real(*a))
    await service.remember("alice", "Priya Patel works at Acme in Rotterdam")
    assert (await service.recall("alice", "Where does Priya Patel work?")).memories
    assert reads == []  # an empty graph is not scanned at all

    assert service.graph is not None
    await service.graph.create_entities("alice", [EntityIn(name="Priya Patel", entity_type="person")])
    await service.recall("alice", "Where does Priya Patel work?")
    assert reads  # once the user has a graph, recall follows it


async def test_a_recall_of_a_user_without_knowledge_or_graph_runs_its_work_in_one_worker_hop(
    service: MemoryService, monkeypatch: pytest.MonkeyPatch
) -> None:
    await service.remember("alice", "The spare key is under the blue flowerpot")
    hops: list[str] = []
    real = anyio.to_thread.run_sync

    async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(getattr(fn, "__qualname__", repr(fn)))
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    assert (await service.recall("alice", "where is the spare key?")).memories
    # The embedding and both searches: the empty knowledge table and graph are passed over without a hop each.
    assert len(hops) == 1, hops

    assert service.graph is not None and service.knowledge is not None
    await service.graph.create_entities("alice", [EntityIn(name="Priya Patel", entity_type="person")])
    await service.knowledge.ingest_text(
        "alice", "keys.md", "# Keys\n\nThe spare key is under the flowerpot.", DocumentFormat.MARKDOWN
    )
    hops.clear()
    found = await service.recall("alice", "where is the spare key?")
    assert found.knowledge and len(hops) > 1  # once they hold rows, both are asked again


async def test_recalls_are_answered_without_a_lancedb_search(
    service: MemoryService, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = _inner(service.long_term)
    searched: list[str] = []
    for name in ("vector_search", "keyword_search"):
        real = getattr(LanceLongTermStore, name)
        monkeypatch.setattr(LanceLongTermStore, name, lambda *a, _r=real, _n=name: searched.append(_n) or _r(*a))
    await service.remember("alice", "The spare key is under the blue flowerpot")
    for query in ("spare key", "flowerpot", "where is the key?"):
        found = await service.recall("alice", query)
        assert [h.memory.content for h in found.memories] == ["The spare key is under the blue flowerpot"]
    assert searched == [] and table.recall_index.get(service.user_key("alice")) is not None


async def test_a_recall_asks_lancedb_nothing_of_tables_that_hold_no_row(
    service: MemoryService, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert service.knowledge is not None and service.graph is not None
    tables = {
        "knowledge": _inner(service.knowledge.store)._table,
        "entities": _inner(service.graph_store)._entities,
        "passages": _inner(service.long_term)._passages._table,
    }
    asked: list[str] = []
    for name, table in tables.items():
        real = table.count_rows
        monkeypatch.setattr(table, "count_rows", lambda *a, _r=real, _n=name, **k: asked.append(_n) or _r(*a, **k))
    await service.remember("alice", "The spare key is under the blue flowerpot")
    for query in ("spare key", "where is the key?"):
        assert (await service.recall("alice", query)).memories
    assert asked == []  # three empty tables: not one LanceDB call about them

    # Once each table holds a row, recall asks about it again (and finds what it holds).
    await service.remember("alice", " ".join(f"word{i}" for i in range(400)) + " the long diary entry")
    await service.graph.create_entities("alice", [EntityIn(name="Priya Patel", entity_type="person")])
    await service.knowledge.ingest_text(
        "alice", "keys.md", "# Keys\n\nThe spare key is under the flowerpot.", DocumentFormat.MARKDOWN
    )
    asked.clear()
    found = await service.recall("alice", "where is the spare key?")
    assert found.knowledge and {"knowledge", "entities", "passages"} <= set(asked)
