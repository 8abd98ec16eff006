"""Reading the conversation exports of claude.ai and ChatGPT (their `conversations.json`) into turns to store.

- claude.ai (Settings > Privacy > Export data): a list of conversations, each with `uuid`, `name` and
  `chat_messages` (`sender` "human" or "assistant", `text` or `content` blocks, `created_at`).
- ChatGPT (Settings > Data controls > Export): a list of conversations, each with `conversation_id` (or `id`),
  `title`, `current_node` and a `mapping` of nodes (`message`, `parent`, `children`); the conversation as last
  shown is the chain of parents from `current_node` back to the root (edited branches are left out).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from engram.core.models import ID_PATTERN
from engram.hooks.transcript import CapturedTurn, parse_timestamp

ExportFormat = Literal["claude", "chatgpt"]
_ID = re.compile(ID_PATTERN)


@dataclass(frozen=True)
class Conversation:
    """One imported conversation: its id (used as the session id), title and turns in order."""

    session_id: str
    title: str
    turns: list[CapturedTurn]


class ExportUnreadable(ValueError):
    """The file is not a conversation export Engram reads (the message says which shapes are accepted)."""


def detect(data: object) -> ExportFormat:
    """Which assistant's export `data` (the parsed conversations.json) is."""
    if isinstance(data, list) and data and isinstance(data[0], dict):
        if "chat_messages" in data[0]:
            return "claude"
        if "mapping" in data[0]:
            return "chatgpt"
    raise ExportUnreadable(
        "not a conversations.json of claude.ai (conversations with 'chat_messages') or ChatGPT (with 'mapping')"
    )


def _session_id(value: object, position: int) -> str:
    if isinstance(value, str) and _ID.match(value):
        return value
    return f"imported-{position}"


def _claude_text(message: dict[str, Any]) -> str:
    blocks = message.get("content")
    if isinstance(blocks, list):
        parts = [b.get("text") for b in blocks if isinstance(b, dict) and b.get("type") == "text"]
        text = "\n".join(p.strip() for p in parts if isinstance(p, str) and p.strip())
        if text:
            return text
    plain = message.get("text")
    return plain.strip() if isinstance(plain, str) else ""


def _claude(data: list[Any]) -> list[Conversation]:
    found: list[Conversation] = []
    for position, conversation in enumerate(data):
        if not isinstance(conversation, dict):
            continue
        turns = []
        for message in conversation.get("chat_messages") or []:
            if not isinstance(message, dict) or message.get("sender") not in ("human", "assistant"):
                continue
            text = _claude_text(message)
            if text:
                role = "user" if message["sender"] == "human" else "assistant"
                turns.append(CapturedTurn(role, text, parse_timestamp(message.get("created_at"))))
        name = conversation.get("name")
        found.append(Conversation(_session_id(conversation.get("uuid"), position), str(name or ""), turns))
    return found


def _epoch(value: object) -> datetime | None:
    return datetime.fromtimestamp(float(value), UTC) if isinstance(value, int | float) else None


def _chatgpt_text(content: object) -> str:
    if not isinstance(content, dict) or content.get("content_type") not in ("text", "multimodal_text"):
        return ""
    parts = content.get("parts") or []
    return "\n".join(p.strip() for p in parts if isinstance(p, str) and p.strip())


def _chatgpt_path(mapping: dict[str, Any], current: object) -> list[dict[str, Any]]:
    """The messages from the root to `current`, following parents (guarded against cycles)."""
    chain: list[dict[str, Any]] = []
    seen: set[str] = set()
    node_id = current
    while isinstance(node_id, str) and node_id in mapping and node_id not in seen:
        seen.add(node_id)
        node = mapping[node_id]
        if isinstance(node, dict) and isinstance(node.get("message"), dict):
            chain.append(node["message"])
        node_id = node.get("parent") if isinstance(node, dict) else None
    return chain[::-1]


def _chatgpt(data: list[Any]) -> list[Conversation]:
    found: list[Conversation] = []
    for position, conversation in enumerate(data):
        if not isinstance(conversation, dict) or not isinstance(conversation.get("mapping"), dict):
            continue
        turns = []
        for message in _chatgpt_path(conversation["mapping"], conversation.get("current_node")):
            role = (message.get("author") or {}).get("role")
            hidden = (message.get("metadata") or {}).get("is_visually_hidden_from_conversation")
            text = _chatgpt_text(message.get("content"))
            if role in ("user", "assistant") and text and not hidden:
                turns.append(CapturedTurn(str(role), text, _epoch(message.get("create_time"))))
        session = conversation.get("conversation_id") or conversation.get("id")
        found.append(Conversation(_session_id(session, position), str(conversation.get("title") or ""), turns))
    return found


def read_conversations(path: Path, kind: ExportFormat | None = None) -> tuple[ExportFormat, list[Conversation]]:
    """The conversations of a claude.ai or ChatGPT `conversations.json` (the format detected unless given)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ExportUnreadable(f"{path} is not JSON ({exc.msg} at line {exc.lineno})") from exc
    kind = kind or detect(data)
    if not isinstance(data, list):
        raise ExportUnreadable(f"{path} does not hold a list of conversations")
    return kind, (_claude(data) if kind == "claude" else _chatgpt(data))
