"""Shared fixtures: real LanceDB and diskcache in a temp dir; a fake or the real embedder; an MCP client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer

from engram.config import Settings
from engram.core.ports import Embedder
from engram.core.service import MemoryService
from engram.embeddings.hashing import HashEmbedder
from engram.runtime import open_memory
from engram.server.app import build_server
from engram.tools.state import AppState

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", embedding_model="hash")


@pytest.fixture
def embedder() -> HashEmbedder:
    return HashEmbedder()


@pytest.fixture(scope="session")
def real_embedder() -> Embedder:
    """The bundled all-MiniLM-L6-v2, loaded once per test session (a few seconds)."""
    from engram.embeddings.sentence_transformer import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder("all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def onnx_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models directory holding the bundled model's ONNX export (fp32 and int8), made once per test session.

    Made the way a server makes it: by the exporter in a child process (~20-40 s). Tests and stdio servers that use
    an ONNX backend point ENGRAM_MODELS_DIR (Settings.models_dir) here instead of exporting again.
    """
    from engram.embeddings.onnx_cache import run_export

    models = tmp_path_factory.mktemp("models")
    report = run_export("all-MiniLM-L6-v2", models)
    assert report["exported"] is True
    return models


@pytest.fixture
def service(settings: Settings, embedder: HashEmbedder) -> MemoryService:
    memory = open_memory(settings, embedder)
    yield memory
    memory.close()


@pytest.fixture
def server(settings: Settings, embedder: HashEmbedder) -> MCPServer[AppState]:
    return build_server(settings, embedder=embedder)


@pytest.fixture
async def client(server: MCPServer[AppState]) -> AsyncIterator[Client]:
    async with Client(server, raise_exceptions=True) as connected:
        yield connected
