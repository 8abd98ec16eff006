"""The CLI stays cheap: a command imports neither the model's libraries nor the stores unless it needs them.

Checked by the modules present in a fresh interpreter after the command (not by timing).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

MODEL = ("torch", "sentence_transformers", "transformers", "onnxruntime", "tokenizers", "onnx")
STORES = ("lancedb", "pyarrow", "lance", "diskcache")
OTHERS = ("numpy", "mcp", "yake", "vaderSentiment", "uvicorn", "starlette")

_RUN = """
import json, sys
from engram.cli import cli
try:
    cli(sys.argv[1:], standalone_mode=False)
except SystemExit:
    pass
watched = {watched!r}
print(json.dumps(sorted(m for m in watched if m in sys.modules)))
"""


def _imported(tmp_path: Path, *args: str) -> list[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ENGRAM_")}
    env["ENGRAM_DATA_DIR"] = str(tmp_path / "data")
    code = _RUN.format(watched=MODEL + STORES + OTHERS)
    result = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300, check=True
    )
    loaded: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


@pytest.mark.parametrize(
    "args", [["--version"], ["token", "list"], ["token", "create", "--scope", "read", "--user", "ana"]]
)
def test_version_and_token_commands_import_nothing_heavy(tmp_path: Path, args: list[str]) -> None:
    assert _imported(tmp_path, *args) == []


def test_stats_opens_the_stores_but_never_the_model(tmp_path: Path) -> None:
    loaded = _imported(tmp_path, "stats")
    assert "lancedb" in loaded  # it does count the stores...
    assert [m for m in loaded if m in MODEL] == []  # ...with the model's id and size read from its config
