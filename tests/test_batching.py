"""Micro-batched embedding: concurrent callers share model calls and each gets its own vectors."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from engram.core.ports import Vectors
from engram.embeddings.batching import BatchingEmbedder
from engram.embeddings.hashing import HashEmbedder


class SlowEmbedder(HashEmbedder):
    """The hash embedder, slowed down so that callers pile up while it works; records each call's size."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.sizes.append(len(texts))
        time.sleep(0.05)
        return super().embed(texts)


def test_concurrent_callers_share_model_calls_and_get_their_own_vectors() -> None:
    inner = SlowEmbedder()
    batching = BatchingEmbedder(inner)
    reference = HashEmbedder()
    results: dict[int, Vectors] = {}

    def call(i: int) -> None:
        results[i] = batching.embed([f"text {i}", f"other {i}"])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(inner.sizes) == 32 and len(inner.sizes) < 16  # some calls were batched together
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
