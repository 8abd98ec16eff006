"""Storage details the service relies on: indexes, the query cache, and id-conditional inserts."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from engram.core.models import Memory
from engram.core.service import MemoryService
from engram.embeddings.hashing import HashEmbedder

pytestmark = pytest.mark.anyio


def test_the_table_has_id_user_agent_tag_and_keyword_indexes(service: MemoryService) -> None:
    table = service.long_term._table  # type: ignore[attr-defined]
    indexed = {(tuple(index.columns), index.index_type) for index in table.list_indices()}
    assert indexed == {
        (("id",), "BTree"),
        (("user_id",), "Bitmap"),
        (("agent_id",), "Bitmap"),
        (("tags",), "LabelList"),
        (("index_text",), "FTS"),
    }


def test_an_insert_is_conditional_on_the_id(service: MemoryService) -> None:
    memory = Memory(id="0" * 32, user_id="alice", content="once", created_at=datetime.now(UTC))
    vector = np.ones(service.embedder.dimensions, dtype=np.float32) / np.sqrt(service.embedder.dimensions)
    assert service.long_term.add(memory, "once", vector) is True
    assert service.long_term.add(memory, "once", vector) is False
    assert service.long_term.count() == 1


async def test_a_repeated_query_skips_the_model(service: MemoryService, embedder: HashEmbedder) -> None:
    await service.remember("alice", "the cache keeps query vectors")
    calls = embedder.calls
    first = await service.recall("alice", "query vectors")
    assert embedder.calls == calls + 1
    second = await service.recall("alice", "query vectors")
    assert embedder.calls == calls + 1  # served from the cache
    assert [h.memory.id for h in first.memories] == [h.memory.id for h in second.memories]
    await service.recall("alice", "a different query")
    assert embedder.calls == calls + 2
