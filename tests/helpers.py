"""Small helpers for tests: the fixed clock, an in-process client, and reading MCP results."""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from mcp import Client
from mcp.types import CallToolResult, TextContent

from engram.config import Settings
from engram.core.models import HitScores, Memory, MemoryHit
from engram.embeddings.hashing import HashEmbedder
from engram.server.app import build_server

#: The time every test's memory starts at: what a test checks must never depend on the day it runs (the date is part
#: of the indexed text, so with the hash embedder it moves rankings). ENGRAM_TEST_NOW moves it, to check exactly that.
TEST_NOW = datetime.fromisoformat(os.environ.get("ENGRAM_TEST_NOW", "2025-03-14T09:26:53+00:00"))


class SteppingClock:
    """A clock for tests: TEST_NOW, moved on by one millisecond at each reading.

    Never today's date, and yet writes made one after another are ordered in time, as "newest first" needs.
    """

    def __init__(self, start: datetime = TEST_NOW, step: timedelta = timedelta(milliseconds=1)) -> None:
        self._next = start
        self._step = step
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            now, self._next = self._next, self._next + self._step
        return now


#: The clock every test's memory runs on (the fixtures pass it; so must a test that opens memory itself).
stepping_clock = SteppingClock()


class SlowToLoad(HashEmbedder):
    """A real hash embedder whose loading (the first look at its dimensions) waits for a signal."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded = threading.Event()

    @property
    def dimensions(self) -> int:
        self.loaded.wait(60)  # only a hang guard: the test sets it
        return super().dimensions


def text(result: CallToolResult) -> str:
    """The text of a tool result's first content block."""
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


def ok(result: CallToolResult) -> dict[str, Any]:
    """The structured content of a successful tool result (fails the test on a tool error)."""
    assert not result.is_error, text(result)
    assert result.structured_content is not None
    return result.structured_content


def error(result: CallToolResult) -> str:
    """The message of a failed tool result (fails the test if the call succeeded)."""
    assert result.is_error, f"expected a tool error, got {result.structured_content}"
    return text(result)


@asynccontextmanager
async def connected(settings: Settings) -> AsyncIterator[Client]:
    """An in-process MCP client of a server on `settings` with the hash embedder, on the test clock."""
    async with Client(
        build_server(settings, embedder=HashEmbedder(), clock=stepping_clock), raise_exceptions=True
    ) as client:
        yield client


def session_hit(memory_id: str, score: float, session: str | None, when: datetime = TEST_NOW) -> MemoryHit:
    """A ranked hit of a memory in `session` (None: in none) stored at `when`, for tests of re-ranking stages."""
    memory = Memory(id=memory_id, user_id="u", content=memory_id, session_id=session, created_at=when)
    scores = HitScores(
        similarity=0.5, keyword=None, vector_rank=None, keyword_rank=None, neighbor_boost=0.0, fused=score
    )
    return MemoryHit(score=score, scores=scores, memory=memory)


def hit_ids(hits: list[MemoryHit]) -> list[str]:
    """The memory ids of `hits`, in order."""
    return [h.memory.id for h in hits]
