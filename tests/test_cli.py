"""The `engram` command line, through click's runner on a real data directory."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from engram.cli import cli


def _run(tmp_path: Path, *args: str, input: str | None = None) -> tuple[int, str, str]:
    env = {"ENGRAM_DATA_DIR": str(tmp_path), "ENGRAM_EMBEDDING_MODEL": "hash"}
    result = CliRunner().invoke(cli, list(args), env=env, input=input)
    return result.exit_code, result.stdout, result.stderr


def test_remember_recall_stats_and_forget(tmp_path: Path) -> None:
    code, out, _ = _run(tmp_path, "remember", "alice", "keeps a sourdough starter", "--tag", "baking")
    assert code == 0 and json.loads(out)["created"] is True
    code, out, _ = _run(tmp_path, "recall", "alice", "sourdough starter")
    assert code == 0 and "keeps a sourdough starter" in out
    code, out, _ = _run(tmp_path, "stats")
    assert code == 0 and json.loads(out)["long_term"]["items"] == 1
    code, _, _ = _run(tmp_path, "forget-user", "alice", input="n\n")
    assert code == 1  # declined at the prompt: nothing erased
    code, out, _ = _run(tmp_path, "forget-user", "alice", "--yes")
    assert code == 0 and json.loads(out)["long_term"] == 1
    code, out, err = _run(tmp_path, "recall", "alice", "sourdough")
    assert code == 0 and out == "" and "no memories found" in err


def test_domain_errors_become_clean_messages(tmp_path: Path) -> None:
    code, out, err = _run(tmp_path, "remember", "x' OR '1'='1", "hello")
    assert code == 1 and out == ""
    assert "Error: Invalid 'user_id'" in err and "Traceback" not in err


def test_invalid_settings_are_reported_by_variable_name(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["stats"], env={"ENGRAM_DATA_DIR": str(tmp_path), "ENGRAM_DEFAULT_TOP_K": "0"})
    assert result.exit_code == 1 and "ENGRAM_DEFAULT_TOP_K" in result.stderr
