"""Reading the turns of a Claude Code transcript (the session's JSONL file) that are worth remembering."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: User entries that are Claude Code's own bookkeeping rather than something the person typed.
_NOT_TYPED = ("<command-name>", "<command-message>", "<local-command-stdout>", "<local-command-stderr>")


@dataclass(frozen=True)
class CapturedTurn:
    """One turn of a conversation as a hook hands it over: who, what and when."""

    role: str
    content: str
    occurred_at: datetime | None = None


def parse_timestamp(value: object) -> datetime | None:
    """An ISO 8601 time (a trailing Z allowed), or None when absent or malformed."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _text_of(content: object) -> str:
    """The plain text of a message's content: a string, or the `text` blocks of a block list (tools left out)."""
    if isinstance(content, str):
        return content.strip()
    if isinstance(content, list):
        parts = [b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"]
        return "\n".join(p.strip() for p in parts if isinstance(p, str) and p.strip())
    return ""


def _turn_of(entry: dict[str, Any]) -> tuple[str | None, CapturedTurn] | None:
    """The turn one transcript line holds, with the API message id that groups an assistant reply's lines."""
    kind = entry.get("type")
    message = entry.get("message")
    if kind not in ("user", "assistant") or not isinstance(message, dict):
        return None
    if entry.get("isSidechain") or entry.get("isMeta") or entry.get("isCompactSummary"):
        return None  # a subagent's exchange, an injected note, or compaction's own summary
    text = _text_of(message.get("content"))
    if not text or (kind == "user" and text.startswith(_NOT_TYPED)):
        return None
    message_id = message.get("id") if kind == "assistant" else None
    turn = CapturedTurn(role=kind, content=text, occurred_at=parse_timestamp(entry.get("timestamp")))
    return (message_id if isinstance(message_id, str) else None), turn


def read_transcript(path: Path) -> list[CapturedTurn]:
    """The user's prompts and the assistant's text replies, in order; tool calls and results are left out.

    Claude Code writes one line per content block of a reply: consecutive lines of the same message are joined
    into one turn. Lines that are not JSON (a line still being written) are skipped.
    """
    turns: list[CapturedTurn] = []
    last_message: str | None = None
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            found = _turn_of(entry) if isinstance(entry, dict) else None
            if found is None:
                continue
            message_id, turn = found
            if message_id is not None and message_id == last_message and turns and turns[-1].role == "assistant":
                previous = turns[-1]
                turns[-1] = CapturedTurn("assistant", f"{previous.content}\n{turn.content}", previous.occurred_at)
                continue
            last_message = message_id
            turns.append(turn)
    return turns
