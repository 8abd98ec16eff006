"""An embedder wrapper that reports each call's size and duration to the service's metrics."""

from __future__ import annotations

import time
from collections.abc import Sequence

from engram.core.ports import Embedder, MemoryMetrics, Vectors


class MeasuredEmbedder:
    """Delegates to `inner` and times every `embed` call; same model id and dimensions as `inner`."""

    def __init__(self, inner: Embedder, metrics: MemoryMetrics) -> None:
        self.inner = inner
        self._metrics = metrics

    @property
    def model_id(self) -> str:
        """The wrapped model's identity."""
        return self.inner.model_id

    @property
    def dimensions(self) -> int:
        """The wrapped model's vector length."""
        return self.inner.dimensions

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Embed with the wrapped model and report how long it took."""
        started = time.perf_counter()
        vectors = self.inner.embed(texts)
        self._metrics.observe_embedding(len(texts), time.perf_counter() - started)
        return vectors
