"""Micro-batched embedding: concurrent callers share model calls and each gets its own vectors."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import pytest

from engram.core.ports import Vectors
from engram.embeddings.batching import BatchingEmbedder
from engram.embeddings.hashing import HashEmbedder


class GatedEmbedder(HashEmbedder):
    """The hash embedder, whose first call holds the model until the test opens the gate; records each call's size."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []
        self.busy = threading.Event()
        self.gate = threading.Event()

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.sizes.append(len(texts))
        self.busy.set()
        self.gate.wait(60)  # only a hang guard: the test opens it
        return super().embed(texts)


def _queued(batching: BatchingEmbedder) -> int:
    with batching._free:
        return len(batching._queue)


def test_concurrent_callers_share_model_calls_and_get_their_own_vectors() -> None:
    inner = GatedEmbedder()
    batching = BatchingEmbedder(inner)
    reference = HashEmbedder()
    results: dict[int, Vectors] = {}

    def call(i: int) -> None:
        results[i] = batching.embed([f"text {i}", f"other {i}"])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
    threads[0].start()
    assert inner.busy.wait(60)  # the first caller holds the model
    for thread in threads[1:]:
        thread.start()
    # The other fifteen queue up while the model is busy (a condition, checked until it holds; no timing).
    while _queued(batching) < 15:
        assert all(t.is_alive() for t in threads[1:]), "a caller finished while the model was busy"
        threading.Event().wait(0.001)
    inner.gate.set()
    for thread in threads:
        thread.join()
    assert inner.sizes == [2, 30]  # the first call alone, then every waiting caller in one batch
    for i in range(16):
        np.testing.assert_allclose(results[i], reference.embed([f"text {i}", f"other {i}"]), rtol=1e-6)


def test_a_lone_caller_runs_at_once_and_errors_reach_the_caller() -> None:
    batching = BatchingEmbedder(HashEmbedder())
    assert batching.embed(["alone"]).shape == (1, batching.dimensions)

    class Broken(HashEmbedder):
        def embed(self, texts: Sequence[str]) -> Vectors:
            raise RuntimeError("model failed")

    broken = BatchingEmbedder(Broken())
    for _ in range(2):  # the second call raises too, rather than hang on a model left marked busy
        with pytest.raises(RuntimeError, match="model failed"):
            broken.embed(["x"])
