"""An embedder that knows its model id and dimensions from config files and loads the model only when it embeds.

For commands that open the stores (which check the model id and vector size) but may never embed, such as
`engram stats`: they then start without onnxruntime, tokenizers or torch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engram.core.ports import Embedder, Vectors


class LazyEmbedder:
    """Answers `model_id` and `dimensions` at once; builds the real embedder on the first `embed`."""

    def __init__(self, model_id: str, dimensions: int, load: Callable[[], Embedder]) -> None:
        self._model_id = model_id
        self._dimensions = dimensions
        self._load = load
        self._loaded: Embedder | None = None
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        """Identity recorded with stored vectors."""
        return self._model_id

    @property
    def dimensions(self) -> int:
        """Length of every vector."""
        return self._dimensions

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Load the model if this is the first call, then embed with it."""
        with self._lock:
            if self._loaded is None:
                self._loaded = self._load()
        return self._loaded.embed(texts)


def lazy_embedder(name: str, *, backend: str, load: Callable[[], Embedder]) -> Embedder | None:
    """A LazyEmbedder for model `name` if its id and dimensions can be read without loading it, else None."""
    from engram.core.errors import BackendUnavailable
    from engram.embeddings import HASH_MODEL
    from engram.embeddings.pipeline import base_model_id, local_model_dir, read_pipeline

    if name == HASH_MODEL:
        return None  # the hash embedder is instant anyway
    try:
        if backend == "onnx-int8" and name in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
            from engram.embeddings.bundled import BUNDLE_DIR

            pipeline = read_pipeline(BUNDLE_DIR if (BUNDLE_DIR / "modules.json").is_file() else local_model_dir(name))
        else:
            pipeline = read_pipeline(local_model_dir(name))
    except BackendUnavailable:
        return None  # a hub name or an unusual model: let the real loader decide (and explain)
    return LazyEmbedder(base_model_id(name), pipeline.dimensions, load)
