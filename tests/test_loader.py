"""The background opener: calls wait for the model, failures are explained, shutdown never waits for a load."""

from __future__ import annotations

import threading

import anyio
import pytest

from engram.config import Settings
from engram.core.errors import BackendUnavailable, EmbeddingModelMismatch
from engram.core.loader import BackgroundService
from engram.core.service import MemoryService
from engram.embeddings.hashing import HashEmbedder
from engram.runtime import open_memory
from tests.helpers import stepping_clock

pytestmark = pytest.mark.anyio


class ClosingSpy(MemoryService):
    """A real MemoryService that records whether it was closed."""

    closed = False

    def close(self) -> None:
        self.closed = True
        super().close()


def _slow_opener(settings: Settings, release: threading.Event, opened: list[ClosingSpy]):  # type: ignore[no-untyped-def]
    def open_() -> MemoryService:
        release.wait(60)  # only a hang guard: each test releases it
        real = open_memory(settings, HashEmbedder(), clock=stepping_clock)
        spy = ClosingSpy(embedder=real.embedder, long_term=real.long_term, sessions=real.sessions, policy=real.policy)
        opened.append(spy)
        return spy

    return open_


async def test_calls_wait_for_the_service_while_it_loads(settings: Settings) -> None:
    release, opened = threading.Event(), []
    loader = BackgroundService(_slow_opener(settings, release, opened))
    loader.start()
    assert not loader.ready
    got: list[MemoryService] = []

    async def call() -> None:
        got.append(await loader.get())

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(call)
        await anyio.wait_all_tasks_blocked()  # the call is waiting for the load
        assert got == [] and not loader.ready
        release.set()
    assert loader.ready and got == [opened[0]]
    loader.close()
    assert opened[0].closed


async def test_close_during_a_load_returns_at_once_and_the_load_cleans_up(settings: Settings) -> None:
    release, opened = threading.Event(), []
    loader = BackgroundService(_slow_opener(settings, release, opened))
    loader.start()
    loader.close()
    # close() returned while the load still waits for `release`: it did not wait for the load.
    assert not release.is_set() and opened == []
    release.set()
    with pytest.raises(BackendUnavailable, match="shutting down"):
        await loader.get()
    assert opened and opened[0].closed and not loader.ready


async def test_a_failed_open_is_reported_to_every_caller(settings: Settings) -> None:
    open_memory(settings, HashEmbedder(256), clock=stepping_clock).close()
    loader = BackgroundService(lambda: open_memory(settings, HashEmbedder(64), clock=stepping_clock))
    for _ in range(2):
        with pytest.raises(EmbeddingModelMismatch):
            await loader.get()
    assert isinstance(loader.error, EmbeddingModelMismatch)


@pytest.mark.slow
async def test_an_unknown_model_name_fails_with_an_actionable_message(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=tmp_path, embedding_model=str(tmp_path / "no-such-model"))
    loader = BackgroundService(lambda: open_memory(settings))
    with pytest.raises(BackendUnavailable, match="ENGRAM_EMBEDDING_MODEL"):
        await loader.get()
