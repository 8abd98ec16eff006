"""Embedding models behind the core's `Embedder` port.

Nothing heavy is imported here (not even numpy): `engram.embeddings.threads` must be importable before the native
libraries load.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from engram.core.errors import BackendUnavailable

if TYPE_CHECKING:
    from engram.core.ports import Embedder

#: The name that selects the fast deterministic embedder (no semantic understanding).
HASH_MODEL = "hash"

#: How a sentence-transformers model is run: torch, or an ONNX export of it in fp32 or int8 (no torch at serving).
EmbeddingBackend = Literal["torch", "onnx", "onnx-int8"]


def load_embedder(
    name: str,
    *,
    device: str = "cpu",
    threads: int = 1,
    backend: EmbeddingBackend = "torch",
    cache_dir: Path | None = None,
) -> Embedder:
    """Return the embedder configured by `name` (`hash`, or a sentence-transformers name or local path) and `backend`.

    The ONNX backends read the export from `cache_dir` (the models directory); if it is missing or damaged they
    export the model there first, in a child process (the only place torch is imported for them).
    """
    if name == HASH_MODEL:
        from engram.embeddings.hashing import HashEmbedder

        return HashEmbedder()
    if backend == "torch":
        # Imported here: sentence-transformers pulls in torch, which takes seconds.
        from engram.embeddings.sentence_transformer import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder(name, device=device, threads=threads)
    if device != "cpu":
        raise BackendUnavailable(
            f"The {backend} embedding backend runs on the CPU only; device '{device}' needs "
            "ENGRAM_EMBEDDING_BACKEND=torch."
        )
    if cache_dir is None:
        raise ValueError(f"the {backend} embedding backend needs a cache_dir for the exported model")
    from engram.embeddings.onnx import load_onnx_embedder

    return load_onnx_embedder(
        name, models_dir=cache_dir, precision="int8" if backend == "onnx-int8" else "fp32", threads=threads
    )
