"""What a hook receives on stdin, parsed: Claude Code's hook payloads and Engram's generic form for other assistants.

Generic form (any assistant that can run a command with JSON on stdin):

- `engram hook context` reads `{"session_id": ..., "project": ... or "cwd": ..., "prompt": ...}` (all optional)
  and prints `{"context": "...", "tokens": n, "memories": n, "knowledge": n, "working": n}`.
- `engram hook capture` reads `{"session_id": ..., "project": ... or "cwd": ..., "agent_id": ..., "turns":
  [{"role": "user" | "assistant", "content": "...", "timestamp": "ISO 8601"}, ...]}` (or `"transcript_path"` of
  a Claude Code transcript instead of `turns`) and prints `{"stored": n, "already_stored": n, "skipped": n}`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engram.core.models import ID_PATTERN
from engram.hooks.transcript import CapturedTurn, parse_timestamp, read_transcript

#: The hook events, as `engram hook` names them, and Claude Code's names for them.
CLAUDE_EVENTS = {
    "session-start": "SessionStart",
    "user-prompt-submit": "UserPromptSubmit",
    "stop": "Stop",
    "pre-compact": "PreCompact",
}
INJECTING = {"session-start", "user-prompt-submit", "context"}
CAPTURING = {"stop", "pre-compact", "capture"}
_ID = re.compile(ID_PATTERN)


class PayloadError(ValueError):
    """The hook's input is not what the event expects (the message says what is accepted)."""


@dataclass(frozen=True)
class HookInput:
    """The parts of a hook payload Engram uses."""

    session_id: str | None
    project: str | None
    prompt: str | None = None
    turns: list[CapturedTurn] = field(default_factory=list)
    agent_id: str | None = None


def project_of(cwd: str | None) -> str | None:
    """The project a working directory belongs to: the name of its git repository's root, else of the directory.

    Names are made into ids (letters, digits and `_ . @ + : -`); a name with nothing usable gives no project.
    """
    if not cwd:
        return None
    start = Path(cwd)
    root = next((p for p in (start, *start.parents) if (p / ".git").exists()), start)
    name = re.sub(r"[^A-Za-z0-9_.@+:-]+", "-", root.name).lstrip("_.@+:-")[:128]
    return name if name and _ID.match(name) else None


def _optional_id(payload: dict[str, Any], name: str) -> str | None:
    value = payload.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _ID.match(value):
        raise PayloadError(f"'{name}' must be an id (1-128 letters, digits and _ . @ + : -), got {value!r}")
    return value


def _generic_turns(raw: object) -> list[CapturedTurn]:
    if not isinstance(raw, list):
        raise PayloadError('\'turns\' must be a list of {"role": "user"|"assistant", "content": "..."}')
    turns: list[CapturedTurn] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or item.get("role") not in ("user", "assistant"):
            raise PayloadError(f'turns[{i}] needs "role": "user" or "assistant"')
        content = item.get("content")
        if not isinstance(content, str):
            raise PayloadError(f'turns[{i}] needs "content" as a string')
        if content.strip():
            turns.append(CapturedTurn(str(item["role"]), content.strip(), parse_timestamp(item.get("timestamp"))))
    return turns


def parse(event: str, text: str) -> HookInput:
    """The payload of `event` (an `engram hook` event name) read from the hook's stdin text."""
    try:
        payload = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise PayloadError(f"stdin is not JSON ({exc.msg} at line {exc.lineno}); send one JSON object") from exc
    if not isinstance(payload, dict):
        raise PayloadError("stdin must hold one JSON object")
    project = _optional_id(payload, "project")
    if project is None:
        cwd = payload.get("cwd")
        project = project_of(cwd if isinstance(cwd, str) else None)
    session_id = _optional_id(payload, "session_id")
    prompt = payload.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise PayloadError("'prompt' must be a string")
    turns: list[CapturedTurn] = []
    if event in CAPTURING:
        if event == "capture" and "turns" in payload:
            turns = _generic_turns(payload["turns"])
        else:
            path = payload.get("transcript_path")
            if not isinstance(path, str) or not path:
                raise PayloadError("'transcript_path' (the session's JSONL transcript) is required for this event")
            try:
                turns = read_transcript(Path(path).expanduser())
            except OSError as exc:
                raise PayloadError(f"cannot read the transcript {path}: {exc.strerror or exc}") from exc
    # Claude Code's payloads name no agent: its turns are Claude Code's; the generic form may name one.
    agent_id = "claude-code" if event in CLAUDE_EVENTS else _optional_id(payload, "agent_id")
    return HookInput(session_id=session_id, project=project, prompt=prompt, turns=turns, agent_id=agent_id)
