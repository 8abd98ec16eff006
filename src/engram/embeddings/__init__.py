"""Embedding models behind the core's `Embedder` port."""

from __future__ import annotations

from engram.core.ports import Embedder
from engram.embeddings.hashing import HashEmbedder

#: The name that selects the fast deterministic embedder (no semantic understanding).
HASH_MODEL = "hash"


def load_embedder(name: str, *, device: str = "cpu", threads: int = 1) -> Embedder:
    """Return the embedder configured by `name`: `hash`, or a sentence-transformers name or local path."""
    if name == HASH_MODEL:
        return HashEmbedder()
    # Imported here: sentence-transformers pulls in torch, which takes seconds.
    from engram.embeddings.sentence_transformer import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(name, device=device, threads=threads)
