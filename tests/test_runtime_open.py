"""Opening the stack: a store that fails to open leaves nothing open behind it."""

from __future__ import annotations

import shutil
import threading

import pytest

from engram.config import Settings
from engram.core.errors import EmbeddingModelMismatch
from engram.embeddings.hashing import HashEmbedder
from engram.runtime import open_memory
from engram.storage.knowledge import LanceKnowledgeStore
from tests.helpers import stepping_clock


def _engram_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("engram-")}


def test_a_failed_later_store_closes_every_store_opened_before(settings: Settings) -> None:
    open_memory(settings, HashEmbedder(), clock=stepping_clock).close()
    # Knowledge memory rewritten with another model: it is opened last, after sessions and long-term memory.
    shutil.rmtree(settings.knowledge_dir)
    LanceKnowledgeStore(settings.knowledge_dir, dimensions=32, model_id="hash-32").close()
    before = _engram_threads()
    with pytest.raises(EmbeddingModelMismatch):
        open_memory(settings, HashEmbedder(), clock=stepping_clock)
    # The long-term store's journal flusher and upkeep threads were stopped: it was closed, not left running.
    assert _engram_threads() == before
    # Once the knowledge files are fixed, the same directory opens again.
    shutil.rmtree(settings.knowledge_dir)
    open_memory(settings, HashEmbedder(), clock=stepping_clock).close()
