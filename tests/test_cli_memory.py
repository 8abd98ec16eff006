"""`engram list / show / update / forget / sessions`: seeing and correcting one user's memory from a shell."""

from __future__ import annotations

import io
import json
from pathlib import Path

from click.testing import CliRunner

from engram.cli import cli
from engram.cli_memory import PROGRESS_EVERY, Progress, printable, table


def _run(tmp_path: Path, *args: str, user: str | None = None) -> tuple[int, str, str]:
    env = {"ENGRAM_DATA_DIR": str(tmp_path), "ENGRAM_EMBEDDING_MODEL": "hash", "ENGRAM_DEFAULT_USER": user or ""}
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def _remember(tmp_path: Path, user: str, content: str, *extra: str) -> str:
    code, out, err = _run(tmp_path, "remember", user, content, *extra)
    assert code == 0, err
    memory_id: str = json.loads(out)["id"]
    return memory_id


def test_list_shows_a_headed_table_and_json_of_one_user_only(tmp_path: Path) -> None:
    first = _remember(tmp_path, "alice", "keeps a sourdough starter", "--tag", "baking")
    _remember(tmp_path, "alice", "prefers tea to coffee")
    _remember(tmp_path, "bob", "bob's secret plan")
    code, out, _ = _run(tmp_path, "list", "--user", "alice")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["ID", "CREATED", "PROJECT", "KIND", "AGENT", "TAGS", "CATEGORY", "CONTENT"]
    assert len(rows) == 2 and "bob's secret" not in out
    code, out, _ = _run(tmp_path, "list", "--user", "alice", "--json", "--tag", "baking")
    listed = json.loads(out)
    assert code == 0 and [m["id"] for m in listed["memories"]] == [first] and listed["next_offset"] is None


def test_list_defaults_to_the_default_user_and_asks_for_one_without(tmp_path: Path) -> None:
    _remember(tmp_path, "alice", "keeps a sourdough starter")
    code, out, _ = _run(tmp_path, "list", user="alice")
    assert code == 0 and "sourdough" in out
    code, out, err = _run(tmp_path, "list")
    assert code == 2 and out == "" and "--user" in err and "Traceback" not in err


def test_show_update_and_forget_one_memory(tmp_path: Path) -> None:
    memory_id = _remember(tmp_path, "alice", "lives in Lisbon", "--tag", "home")
    code, out, _ = _run(tmp_path, "show", memory_id, "--user", "alice")
    assert code == 0 and "lives in Lisbon" in out and f"id          {memory_id}" in out
    code, out, _ = _run(tmp_path, "update", memory_id, "--user", "alice", "--category", "places", "--json")
    assert code == 0 and json.loads(out)["memory"]["category"] == "places" and json.loads(out)["id"] == memory_id
    code, out, err = _run(tmp_path, "update", memory_id, "--user", "alice", "--content", "lives in Porto")
    assert code == 0 and "lives in Porto" in out and "new id" in err
    new_id = err.split("new id ")[1].split()[0]
    code, out, _ = _run(tmp_path, "show", new_id, "--user", "alice", "--json")
    shown = json.loads(out)
    assert shown["content"] == "lives in Porto" and shown["tags"] == ["home"] and shown["updated_at"] is not None
    code, out, _ = _run(tmp_path, "forget", new_id, "--user", "alice", "--json")
    assert code == 0 and json.loads(out)[0]["long_term"] == 1
    code, out, err = _run(tmp_path, "show", new_id, "--user", "alice")
    assert code == 1 and out == "" and err.startswith("Error: Invalid 'memory_id': no memory")


def test_another_users_memory_cannot_be_shown_changed_or_forgotten(tmp_path: Path) -> None:
    memory_id = _remember(tmp_path, "bob", "bob's secret plan")
    for command in (["show", memory_id], ["update", memory_id, "--category", "x"], ["forget", memory_id]):
        code, out, err = _run(tmp_path, *command, "--user", "alice")
        assert code == 1 and out == "" and "no memory" in err and "Traceback" not in err
    code, out, _ = _run(tmp_path, "show", memory_id, "--user", "bob")
    assert code == 0 and "bob's secret plan" in out


def test_bad_input_is_one_clean_line(tmp_path: Path) -> None:
    for args in (
        ["show", "not-an-id", "--user", "alice"],
        ["list", "--user", "x' OR '1'='1"],
        ["update", "0" * 32, "--user", "alice"],
    ):
        code, out, err = _run(tmp_path, *args)
        assert code == 1 and out == "", args
        assert len(err.strip().splitlines()) == 1 and err.startswith("Error: Invalid"), (args, err)
    code, _, err = _run(tmp_path, "update", "0" * 32, "--user", "alice", "--tag", "a", "--clear-tags")
    assert code == 2 and "contradict" in err


def test_sessions_lists_the_users_sessions(tmp_path: Path) -> None:
    _remember(tmp_path, "alice", "hello there", "--session", "chat-1")
    code, out, _ = _run(tmp_path, "sessions", "--user", "alice")
    assert code == 0 and out.splitlines()[0].split()[:3] == ["SESSION", "STARTED", "LAST_ACTIVE"]
    assert "chat-1" in out
    code, out, _ = _run(tmp_path, "sessions", "--user", "alice", "--json")
    assert [s["session_id"] for s in json.loads(out)] == ["chat-1"]
    code, out, err = _run(tmp_path, "sessions", "--user", "bob")
    assert code == 0 and out == "" and "no sessions" in err


def test_stored_control_characters_cannot_drive_the_terminal(tmp_path: Path) -> None:
    memory_id = _remember(tmp_path, "alice", "harmless\x1b[2J\x1b]0;owned\x07 text")
    for args in (["list"], ["show", memory_id]):
        code, out, _ = _run(tmp_path, *args, "--user", "alice")
        assert code == 0 and "\x1b" not in out and "\x07" not in out and "harmless" in out
    assert printable("a\x1b[31mb\x9bc") == "a?[31mb?c"


def test_list_all_pages_through_everything_with_progress_lines_when_piped(tmp_path: Path) -> None:
    code, out, err = _run(tmp_path, "remember", "alice", "first note")
    for n in range(4):
        _remember(tmp_path, "alice", f"note number {n}")
    code, out, err = _run(tmp_path, "list", "--user", "alice", "--all", "--limit", "2", "--json")
    assert code == 0 and len(json.loads(out)["memories"]) == 5
    assert err.strip().splitlines()[-1] == "listing: 5"  # CliRunner's stderr is no terminal: plain lines


def test_progress_prints_periodic_lines_when_piped_and_a_live_line_on_a_terminal() -> None:
    piped = io.StringIO()
    progress = Progress("forgetting", 250, stream=piped)
    for _ in range(250):
        progress.advance()
    progress.finish()
    assert piped.getvalue().splitlines() == ["forgetting: 100/250", "forgetting: 200/250", "forgetting: 250/250"]
    assert PROGRESS_EVERY == 100

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    live = Terminal()
    progress = Progress("listing", None, stream=live)
    progress.advance(3)
    progress.finish()
    assert live.getvalue() == "\rlisting: 3\rlisting: 3\n"


def test_table_pads_columns_and_cuts_long_content() -> None:
    text = table(("id", "content"), [["a", "x" * 100], ["bb", "short\nline"]], wide="content")
    lines = text.splitlines()
    assert lines[0] == "ID  CONTENT" and lines[1].startswith("a   xxx") and lines[1].endswith("…")
    assert len(lines[1]) == 4 + 60 and lines[2] == "bb  short line"


def test_ui_without_tokens_refuses_a_non_loopback_bind_in_one_line(tmp_path: Path) -> None:
    code, out, err = _run(tmp_path, "ui", "--host", "0.0.0.0", user="alice")
    assert code == 1 and out == "" and err.startswith("Error: Invalid '--host'") and "loopback" in err
    assert len(err.strip().splitlines()) == 1


def test_list_shows_every_project_unless_one_is_named(tmp_path: Path) -> None:
    import anyio

    from engram.config import Settings
    from engram.embeddings.hashing import HashEmbedder
    from engram.runtime import open_memory

    async def seed() -> str:
        memory = open_memory(Settings(data_dir=tmp_path, embedding_model="hash"), HashEmbedder())
        try:
            alpha = (await memory.remember("alice", "alpha's build uses make", project="alpha")).id
            await memory.remember("alice", "beta deploys on fridays", project="beta")
            await memory.remember("alice", "likes short answers")
            return alpha
        finally:
            memory.close()

    alpha = anyio.run(seed)
    code, out, _ = _run(tmp_path, "list", "--user", "alice")
    assert code == 0 and out.splitlines()[0].split()[:4] == ["ID", "CREATED", "PROJECT", "KIND"]
    assert "alpha's build" in out and "beta deploys" in out and "likes short answers" in out
    code, out, _ = _run(tmp_path, "list", "--user", "alice", "--project", "alpha", "--json")
    listed = json.loads(out)["memories"]
    assert [(m["id"], m["project"]) for m in listed] == [(alpha, "alpha")]
    code, out, _ = _run(tmp_path, "show", alpha, "--user", "alice")
    assert "project     alpha" in out
