"""Micro-batching: texts from concurrent callers are embedded together, in one model call."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from engram.core.ports import Embedder, Vectors


@dataclass
class _Request:
    texts: Sequence[str]
    done: threading.Event = field(default_factory=threading.Event)
    vectors: Vectors | None = None
    error: BaseException | None = None


class BatchingEmbedder:
    """An Embedder that gathers the calls arriving while the model is busy and runs them as one batch.

    A lone caller runs at once (no waiting for company); callers that arrive while a batch runs queue up, and the
    first of them embeds the whole queue when the model is free. On a small CPU a batch of 32 short texts costs far
    less than 32 single calls, so concurrent `remember` calls (several clients, HTTP) share the model's time.
    """

    def __init__(self, inner: Embedder, max_texts: int = 64) -> None:
        self._inner = inner
        self._max_texts = max_texts
        self._free = threading.Condition()
        self._queue: list[_Request] = []
        self._busy = False

    @property
    def model_id(self) -> str:
        """The wrapped model's identity."""
        return self._inner.model_id

    @property
    def dimensions(self) -> int:
        """The wrapped model's vector length."""
        return self._inner.dimensions

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Embed `texts`, together with whatever other callers are waiting for the model."""
        if len(texts) >= self._max_texts:
            return self._inner.embed(texts)  # a batch already (an import): it need not wait for, or hold up, others
        request = _Request(texts)
        with self._free:
            self._queue.append(request)
        while True:
            with self._free:
                self._free.wait_for(lambda: request.done.is_set() or not self._busy)
                if request.done.is_set():
                    break
                # The model is free and this request is still queued: run the queue's head as one batch.
                self._busy = True
                batch: list[_Request] = []
                size = 0
                while self._queue and (not batch or size + len(self._queue[0].texts) <= self._max_texts):
                    batch.append(self._queue.pop(0))
                    size += len(batch[-1].texts)
            try:
                vectors = self._inner.embed([text for queued in batch for text in queued.texts])
                start = 0
                for queued in batch:
                    queued.vectors = np.asarray(vectors[start : start + len(queued.texts)])
                    start += len(queued.texts)
            except BaseException as exc:  # every caller in the batch gets the error
                for queued in batch:
                    queued.error = exc
            with self._free:
                for queued in batch:
                    queued.done.set()
                self._busy = False
                self._free.notify_all()
        if request.vectors is None:
            raise request.error or RuntimeError("embedding batch ended without a result")
        return request.vectors
