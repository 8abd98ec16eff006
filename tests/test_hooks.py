"""`engram hook`: recorded Claude Code payloads store a transcript's turns once and inject the relevant memory of
the current project only; the generic form; the time budget; installing into and removing from settings files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner, Result

from engram.cli import cli
from engram.config import Settings
from engram.core.filters import MemoryFilters
from engram.core.models import Role
from engram.embeddings.hashing import HashEmbedder
from engram.hooks.settings_file import install, uninstall
from engram.hooks.transcript import read_transcript
from engram.runtime import open_memory
from engram.storage.lance_support import FileLock
from tests.helpers import stepping_clock

FIXTURES = Path(__file__).parent / "fixtures" / "claude_code"
SESSION = "5d2c8f4e-1b7a-4c39-9e0d-2f6a8b1c3e57"
#: Long enough that no machine is that slow: these tests check what is injected, not how fast.
NO_HURRY = ["--budget-ms", "60000"]
#: In this test process, not through a hook daemon (tests/test_hook_daemon.py covers that path).
HERE = "--no-daemon"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ENGRAM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ENGRAM_EMBEDDING_MODEL", "hash")
    monkeypatch.setenv("ENGRAM_DEFAULT_USER", "alice")
    monkeypatch.setenv("ENGRAM_LOG_LEVEL", "INFO")
    return tmp_path / "data"


@pytest.fixture
def webshop(tmp_path: Path) -> Path:
    """A git checkout named `webshop`, where Claude Code runs; its transcript is the recorded one."""
    root = tmp_path / "src" / "webshop"
    (root / ".git").mkdir(parents=True)
    (root / "services" / "checkout").mkdir(parents=True)
    return root


def _payload(name: str, cwd: Path, transcript: Path, **changes: Any) -> str:
    text = (FIXTURES / name).read_text()
    payload = json.loads(text.replace("${CWD}", str(cwd)).replace("${TRANSCRIPT}", str(transcript)))
    return json.dumps(payload | changes)


def _transcript(tmp_path: Path, cwd: Path, *parts: str) -> Path:
    path = tmp_path / "transcript.jsonl"
    path.write_text("".join((FIXTURES / part).read_text().replace("${CWD}", str(cwd)) for part in parts))
    return path


def _hook(event: str, payload: str, *options: str) -> Result:
    result = CliRunner().invoke(cli, ["hook", event, HERE, *options], input=payload)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def _memories(data_dir: Path, user: str = "alice") -> list[Any]:
    memory = open_memory(Settings(data_dir=data_dir, embedding_model="hash"), HashEmbedder(), clock=stepping_clock)
    try:
        page = anyio.run(lambda: memory.list_memories(user, filters=MemoryFilters(projects="any"), limit=100))
        return sorted(page.memories, key=lambda m: (m.created_at, m.id))
    finally:
        memory.close()


def _injected(result: Result, event: str) -> str:
    output = json.loads(result.stdout)
    assert output["hookSpecificOutput"]["hookEventName"] == event
    context = output["hookSpecificOutput"]["additionalContext"]
    assert isinstance(context, str)
    return context


def test_recorded_claude_code_hooks_store_turns_once_and_inject_this_projects_memory(
    data_dir: Path, webshop: Path, tmp_path: Path
) -> None:
    transcript = _transcript(tmp_path, webshop, "transcript.jsonl")
    # A fresh store: nothing to inject, and nothing printed.
    assert _hook("session-start", _payload("session_start.json", webshop, transcript), *NO_HURRY).stdout == ""

    _hook("stop", _payload("stop.json", webshop, transcript))
    stored = _memories(data_dir)
    assert [(m.role, m.content) for m in stored] == [
        (
            Role.USER,
            "The checkout service stores orders in PostgreSQL 16; payments go through the Adyen sandbox in staging.",
        ),
        (Role.ASSISTANT, "Noted: orders live in PostgreSQL 16, and staging payments use the Adyen sandbox."),
        (Role.ASSISTANT, "The config agrees: DATABASE_URL points at the orders database on PostgreSQL."),
    ]
    assert {(m.session_id, m.project, m.agent_id) for m in stored} == {(SESSION, "webshop", "claude-code")}
    assert stored[0].created_at.isoformat() == "2026-12-07T07:59:00.120000+00:00"

    _hook("stop", _payload("stop.json", webshop, transcript))  # the hook fires twice: nothing new
    assert len(_memories(data_dir)) == 3
    transcript = _transcript(tmp_path, webshop, "transcript.jsonl", "transcript_more.jsonl")
    _hook("pre-compact", _payload("pre_compact.json", webshop, transcript))
    _hook("pre-compact", _payload("pre_compact.json", webshop, transcript))
    contents = [m.content for m in _memories(data_dir)]
    assert len(contents) == 5 and len(set(contents)) == 5
    assert contents[3] == "Remember that refunds older than 90 days need a manual review."

    # Another project of the same user, and another user in this project: neither may show up here.
    firmware = tmp_path / "src" / "firmware"
    (firmware / ".git").mkdir(parents=True)
    other = json.dumps(
        {
            "session_id": "other-session",
            "cwd": str(firmware),
            "turns": [{"role": "user", "content": "The checkout firmware keeps orders in SQLite, not a database."}],
        }
    )
    _hook("capture", other)
    _hook("capture", other, "--user-id", "bob")
    assert [m.project for m in _memories(data_dir) if "SQLite" in m.content] == ["firmware"]

    new_session = {"session_id": "9e8d7c6b-5a49-4382-9170-6f5e4d3c2b1a"}
    prompt = _payload("user_prompt_submit.json", webshop, transcript, **new_session)
    context = _injected(_hook("user-prompt-submit", prompt, *NO_HURRY), "UserPromptSubmit")
    assert "orders in PostgreSQL 16" in context
    assert "SQLite" not in context

    # Resuming the captured session: its turns come back as working memory.
    resume = _payload("session_start.json", webshop, transcript, source="resume")
    context = _injected(_hook("session-start", resume, *NO_HURRY), "SessionStart")
    assert "This session so far" in context and "refunds older than 90 days" in context
    assert "SQLite" not in context


def test_the_injected_context_stays_within_its_token_budget(data_dir: Path, webshop: Path, tmp_path: Path) -> None:
    transcript = _transcript(tmp_path, webshop, "transcript.jsonl", "transcript_more.jsonl")
    _hook("stop", _payload("stop.json", webshop, transcript))
    prompt = _payload("user_prompt_submit.json", webshop, transcript, session_id="another")
    context = _injected(_hook("user-prompt-submit", prompt, *NO_HURRY, "--max-tokens", "50"), "UserPromptSubmit")
    assert 0 < len(context) <= 50 * 4


def test_the_generic_form_captures_once_and_answers_in_its_own_json(data_dir: Path) -> None:
    payload = json.dumps(
        {
            "session_id": "chat-42",
            "project": "garden",
            "agent_id": "my-assistant",
            "turns": [
                {"role": "user", "content": "The tomatoes go in the south bed.", "timestamp": "2026-05-01T10:00:00Z"},
                {"role": "assistant", "content": "South bed for the tomatoes, noted."},
                {"role": "user", "content": "   "},
            ],
        }
    )
    assert json.loads(_hook("capture", payload).stdout) == {"stored": 2, "already_stored": 0, "skipped": 0}
    assert json.loads(_hook("capture", payload).stdout) == {"stored": 0, "already_stored": 2, "skipped": 0}
    asked = json.dumps({"project": "garden", "prompt": "where do the tomatoes go?"})
    answer = json.loads(_hook("context", asked, *NO_HURRY).stdout)
    assert "south bed" in answer["context"] and answer["memories"] >= 1
    elsewhere = json.loads(_hook("context", json.dumps({"prompt": "where do the tomatoes go?"}), *NO_HURRY).stdout)
    assert elsewhere["context"] == ""


def test_bad_input_never_blocks_a_prompt_and_a_bad_capture_says_what_is_accepted(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    result = _hook("user-prompt-submit", "{not json", *NO_HURRY)
    assert result.stdout == "" and "no context injected: stdin is not JSON" in caplog.text
    refused = CliRunner().invoke(cli, ["hook", "capture", HERE], input=json.dumps({"turns": [{"role": "robot"}]}))
    assert refused.exit_code == 1 and "turns[0]" in refused.output and "user" in refused.output
    missing = CliRunner().invoke(cli, ["hook", "stop", HERE], input=json.dumps({"session_id": "s"}))
    assert missing.exit_code == 1 and "transcript_path" in missing.output


def test_a_busy_store_injects_nothing_and_logs_why(data_dir: Path, webshop: Path, tmp_path: Path) -> None:
    settings = Settings(data_dir=data_dir, embedding_model="hash")
    open_memory(settings, HashEmbedder()).close()
    transcript = _transcript(tmp_path, webshop, "transcript.jsonl")
    # Another process holds the long-term table's write lock (creating or upgrading it): opening has to wait.
    lock = FileLock(settings.long_term_dir / ".engram-write.lock")
    with lock:
        done = subprocess.run(
            [sys.executable, "-m", "engram", "hook", "user-prompt-submit", "--budget-ms", "200", HERE],
            input=_payload("user_prompt_submit.json", webshop, transcript),
            capture_output=True,
            text=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "no context injected" in done.stderr and "200 ms" in done.stderr


def test_the_transcript_reader_keeps_what_people_said_and_leaves_out_the_machinery(tmp_path: Path) -> None:
    turns = read_transcript(_transcript(tmp_path, tmp_path, "transcript.jsonl"))
    assert [t.role for t in turns] == ["user", "assistant", "assistant"]
    assert not any("command-name" in t.content or "DATABASE_URL=" in t.content for t in turns)
    assert not any("payment retries" in t.content for t in turns)  # a subagent's exchange


def test_install_merges_with_the_settings_and_uninstall_removes_only_ours(tmp_path: Path) -> None:
    path = tmp_path / ".claude" / "settings.json"
    path.parent.mkdir()
    theirs = {
        "permissions": {"allow": ["Bash(npm test:*)"]},
        "hooks": {
            "UserPromptSubmit": [{"hooks": [{"type": "command", "command": "~/bin/branch-context.sh"}]}],
            "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "~/bin/guard.sh"}]}],
        },
    }
    path.write_text(json.dumps(theirs))
    environ = {"ENGRAM_DATA_DIR": "/srv/engram data"}
    install(path, environ)
    installed = install(path, environ)  # twice: still one entry of ours per event
    assert installed == json.loads(path.read_text())
    assert installed["permissions"] == theirs["permissions"]
    assert installed["hooks"]["PreToolUse"] == theirs["hooks"]["PreToolUse"]
    prompt_hooks = [h for group in installed["hooks"]["UserPromptSubmit"] for h in group["hooks"]]
    assert prompt_hooks[0]["command"] == "~/bin/branch-context.sh"
    ours = {
        event: [h for group in groups for h in group["hooks"] if "engram hook" in h["command"]]
        for event, groups in installed["hooks"].items()
    }
    assert {event: len(entries) for event, entries in ours.items()} == {
        "UserPromptSubmit": 1,
        "PreToolUse": 0,
        "SessionStart": 1,
        "Stop": 1,
        "PreCompact": 1,
    }
    assert ours["Stop"][0]["async"] is True and "async" not in ours["UserPromptSubmit"][0]
    assert ours["Stop"][0]["command"].startswith("ENGRAM_DATA_DIR='/srv/engram data' ")
    assert ours["Stop"][0]["command"].endswith("-m engram hook stop")
    assert uninstall(path) == 4
    assert json.loads(path.read_text()) == theirs
    assert uninstall(path) == 0


def test_hook_install_on_the_command_line_writes_the_given_settings_file(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    result = CliRunner().invoke(cli, ["hook", "--install", "--settings", str(path)])
    assert result.exit_code == 0, result.output
    assert set(json.loads(path.read_text())["hooks"]) == {"SessionStart", "UserPromptSubmit", "Stop", "PreCompact"}
    removed = CliRunner().invoke(cli, ["hook", "--uninstall", "--settings", str(path)])
    assert removed.exit_code == 0 and json.loads(path.read_text()) == {}
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    refused = CliRunner().invoke(cli, ["hook", "--install", "--settings", str(broken)])
    assert refused.exit_code == 1 and "not valid JSON" in refused.output
