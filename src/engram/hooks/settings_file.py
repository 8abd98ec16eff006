"""Writing Engram's hook entries into a Claude Code settings file, and taking only them out again."""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

from engram.hooks.payloads import CLAUDE_EVENTS

#: Per Claude Code event: the matcher (SessionStart's sources), whether it runs in the background, and a timeout (s).
_ENTRIES: dict[str, tuple[str | None, bool, int]] = {
    # Injecting hooks run before Claude sees the prompt: they give up on their own after a few hundred ms.
    "SessionStart": ("startup|resume|clear|compact", False, 10),
    "UserPromptSubmit": (None, False, 10),
    # Capturing hooks embed and store turns (the model loads in about a second): in the background, never waited on.
    "Stop": (None, True, 120),
    "PreCompact": (None, True, 120),
}
_OURS = re.compile(r"engram(\.exe)?\b.*\bhook (" + "|".join(map(re.escape, CLAUDE_EVENTS)) + r")\b")
#: Settings that decide where memory lives and whose it is: carried into the hook command when set at install.
_CARRIED_ENV = ("ENGRAM_DATA_DIR", "ENGRAM_DEFAULT_USER", "ENGRAM_EMBEDDING_MODEL", "ENGRAM_EMBEDDING_BACKEND")


def settings_path(level: str, project_dir: Path | None = None) -> Path:
    """The Claude Code settings file of the user (`~/.claude/settings.json`) or of a project (`.claude/...`)."""
    if level == "project":
        return (project_dir or Path.cwd()) / ".claude" / "settings.json"
    return Path.home() / ".claude" / "settings.json"


def hook_command(event: str, environ: dict[str, str] | None = None) -> str:
    """The shell command Claude Code runs for one `engram hook` event: this Python, with the storage settings."""
    environ = dict(os.environ) if environ is None else environ
    carried = [f"{name}={shlex.quote(environ[name])}" for name in _CARRIED_ENV if environ.get(name)]
    return " ".join([*carried, shlex.quote(sys.executable), "-m", "engram", "hook", event])


def is_ours(command: object) -> bool:
    """Whether a settings entry's command is one `engram hook --install` wrote."""
    return isinstance(command, str) and _OURS.search(command) is not None


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); fix it first") from exc
    if not isinstance(data, dict) or not isinstance(data.get("hooks", {}), dict):
        raise ValueError(f"{path} does not hold a settings object with a 'hooks' object")
    return data


def _write(path: Path, data: dict[str, Any]) -> None:
    # Written beside and renamed over: Claude Code may read the file at any moment.
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".settings-", suffix=".json")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    os.replace(temporary, path)


def _without_ours(hooks: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The hooks object with every entry of ours removed (empty groups and events too), and how many went."""
    removed = 0
    kept: dict[str, Any] = {}
    for event, groups in hooks.items():
        if not isinstance(groups, list):
            kept[event] = groups
            continue
        new_groups = []
        for group in groups:
            inner = group.get("hooks") if isinstance(group, dict) else None
            if not isinstance(inner, list):
                new_groups.append(group)
                continue
            others = [h for h in inner if not (isinstance(h, dict) and is_ours(h.get("command")))]
            removed += len(inner) - len(others)
            if others:
                new_groups.append({**group, "hooks": others})
            elif not inner:
                new_groups.append(group)
        if new_groups:
            kept[event] = new_groups
    return kept, removed


def install(path: Path, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Add Engram's four hook entries to the settings file (replacing earlier ones of ours); return the file's data."""
    data = _read(path)
    hooks, _ = _without_ours(data.get("hooks", {}))
    for claude_event, (matcher, background, timeout) in _ENTRIES.items():
        event = next(name for name, claude in CLAUDE_EVENTS.items() if claude == claude_event)
        entry: dict[str, Any] = {"type": "command", "command": hook_command(event, environ), "timeout": timeout}
        if background:
            entry["async"] = True
        group: dict[str, Any] = {"hooks": [entry]}
        if matcher is not None:
            group = {"matcher": matcher, **group}
        hooks.setdefault(claude_event, []).append(group)
    data["hooks"] = hooks
    _write(path, data)
    return data


def uninstall(path: Path) -> int:
    """Remove Engram's hook entries from the settings file, leaving everything else; return how many were removed."""
    data = _read(path)
    if "hooks" not in data:
        return 0
    hooks, removed = _without_ours(data["hooks"])
    if removed:
        if hooks:
            data["hooks"] = hooks
        else:
            del data["hooks"]
        _write(path, data)
    return removed
