"""Shared fixtures: real LanceDB and diskcache in a temp dir; a fake or the real embedder; an MCP client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
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
from tests.engines import redis_engine, s3_bucket, s3_engine  # noqa: F401  (fixtures of the real engines)
from tests.helpers import stepping_clock

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Every tool listed (ENGRAM_TOOLS=all): the tests exercise them all; test_surface checks the default profile."""
    return Settings(data_dir=tmp_path / "data", embedding_model="hash", tools="all")


@pytest.fixture
def embedder() -> HashEmbedder:
    return HashEmbedder()


@pytest.fixture(scope="session")
def real_embedder() -> Embedder:
    """The bundled all-MiniLM-L6-v2, loaded once per test session (a few seconds)."""
    from engram.embeddings.sentence_transformer import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder("all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def shared_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test session's one models directory (ONNX exports); empty until something exports into it."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session", autouse=True)
def _one_models_dir_per_session(shared_models_dir: Path) -> Iterator[None]:
    """Point ENGRAM_MODELS_DIR at the shared directory, so a test that builds Settings with the default (ONNX)
    backend, such as an in-process `engram eval`, reuses the session's export instead of exporting into its own
    fresh data directory."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ENGRAM_MODELS_DIR", str(shared_models_dir))
        yield


@pytest.fixture(scope="session")
def onnx_models_dir(shared_models_dir: Path) -> Path:
    """The shared models directory holding the bundled model's ONNX export (fp32 and int8), made once per session.

    Made the way a server makes it: by the exporter in a child process (seconds), unless a test already caused
    that lazily. Stdio servers get it as ENGRAM_MODELS_DIR too.
    """
    from engram.embeddings.onnx_cache import run_export

    run_export("all-MiniLM-L6-v2", shared_models_dir)
    return shared_models_dir


@pytest.fixture
def service(settings: Settings, embedder: HashEmbedder) -> Iterator[MemoryService]:
    memory = open_memory(settings, embedder, clock=stepping_clock)
    yield memory
    memory.close()


@pytest.fixture
def server(settings: Settings, embedder: HashEmbedder) -> MCPServer[AppState]:
    return build_server(settings, embedder=embedder, clock=stepping_clock)


@pytest.fixture
async def client(server: MCPServer[AppState]) -> AsyncIterator[Client]:
    async with Client(server, raise_exceptions=True) as connected:
        yield connected
