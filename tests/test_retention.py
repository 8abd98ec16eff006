"""Retention: memories past their age limit are purged (by an injected clock, not by sleeping)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import anyio.to_thread
import pytest
from click.testing import CliRunner
from mcp import Client

from engram.cli import cli
from engram.config import Settings
from engram.core.errors import InvalidInput
from engram.core.service import MemoryService
from engram.embeddings.hashing import HashEmbedder
from engram.runtime import open_memory
from engram.server.app import Lifecycle, build_server
from tests.helpers import TEST_NOW, ok, stepping_clock

pytestmark = pytest.mark.anyio

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def retained(tmp_path: Path, clock: Clock) -> Iterator[MemoryService]:
    settings = Settings(
        data_dir=tmp_path, embedding_model="hash", retention_days=30, retention_days_by_category={"chitchat": 2}
    )
    service = open_memory(settings, HashEmbedder(), clock=clock)
    yield service
    service.close()


async def test_memories_older_than_the_limit_are_purged(retained: MemoryService, clock: Clock) -> None:
    old = await retained.remember("alice", "old fact about the garden")
    clock.now = START + timedelta(days=20)
    recent = await retained.remember("alice", "recent fact about the garden")
    await retained.remember("bob", "bob's old fact", occurred_at=START - timedelta(days=1))
    clock.now = START + timedelta(days=31)

    report = await retained.purge()
    assert report.long_term == 2  # alice's old fact and bob's backdated one
    ids = {h.memory.id for h in (await retained.recall("alice", "garden fact", top_k=10)).memories}
    assert ids == {recent.id} and old.id not in ids
    assert (await retained.recall("bob", "fact")).memories == []
    assert (await retained.purge()).long_term == 0


async def test_a_category_can_have_its_own_limit(retained: MemoryService, clock: Clock) -> None:
    await retained.remember("alice", "nice weather today", category="chitchat")
    kept = await retained.remember("alice", "allergic to penicillin", category="health")
    clock.now = START + timedelta(days=3)
    assert (await retained.purge()).long_term == 1
    remaining = (await retained.recall("alice", "weather penicillin", top_k=10)).memories
    assert [h.memory.id for h in remaining] == [kept.id]


async def test_without_a_limit_nothing_is_purged(service: MemoryService) -> None:
    await service.remember("alice", "kept forever", occurred_at=datetime(2001, 1, 1, tzinfo=UTC))
    assert (await service.purge()).long_term == 0


def test_a_bad_category_limit_is_refused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, embedding_model="hash", retention_days_by_category={"x": 0})
    with pytest.raises(InvalidInput, match="ENGRAM_RETENTION_DAYS_BY_CATEGORY"):
        open_memory(settings, HashEmbedder(), clock=stepping_clock)


def test_engram_purge_from_the_command_line(tmp_path: Path) -> None:
    env = {"ENGRAM_DATA_DIR": str(tmp_path), "ENGRAM_EMBEDDING_MODEL": "hash", "ENGRAM_RETENTION_DAYS": "1"}
    runner = CliRunner()
    assert runner.invoke(cli, ["remember", "alice", "fresh"], env=env).exit_code == 0
    result = runner.invoke(cli, ["purge"], env=env)
    assert result.exit_code == 0 and '"long_term": 0' in result.stdout


async def test_a_starting_server_applies_retention(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, embedding_model="hash", retention_days=7)
    seed = open_memory(settings, HashEmbedder(), clock=stepping_clock)
    await seed.remember("alice", "an old note", occurred_at=TEST_NOW - timedelta(days=8))
    await seed.remember("alice", "a new note")
    seed.close()
    lifecycle = Lifecycle(settings, HashEmbedder(), clock=stepping_clock)
    async with Client(build_server(settings, lifecycle=lifecycle), raise_exceptions=True) as client:
        # The first purge runs in the background as the server starts: wait for it (an event, not a poll).
        with anyio.fail_after(60):  # only a hang guard
            await anyio.to_thread.run_sync(lifecycle.purged.wait)
        found = ok(
            await client.call_tool("recall", {"detail": "full", "user_id": "alice", "query": "note", "top_k": 10})
        )
        assert [hit["memory"]["content"] for hit in found["memories"]] == ["a new note"]
