"""One hook event answered on an open memory service: parse the payload, then brief or capture; never raise."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from engram.core.briefing import Briefing, BriefingLimits, brief
from engram.core.errors import EngramError, InvalidInput
from engram.core.models import RememberItem, Role
from engram.hooks.payloads import CAPTURING, CLAUDE_EVENTS, INJECTING, HookInput, PayloadError, parse

if TYPE_CHECKING:
    from engram.core.service import MemoryService

logger = logging.getLogger("engram.hook")


@dataclass
class HookReply:
    """What the hook prints (stdout), what it logs (stderr) and its exit code (0, or 1: a non-blocking error)."""

    stdout: str = ""
    messages: list[str] = field(default_factory=list)
    exit: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The reply as the daemon sends it."""
        return asdict(self)


async def capture(memory: MemoryService, user_id: str, given: HookInput) -> dict[str, int]:
    """Store the turns not stored yet (content-addressed, so a hook that fires twice stores once); count them."""
    limit = memory.policy.max_content_chars
    items = [
        RememberItem(
            content=turn.content if len(turn.content) <= limit else turn.content[: limit - 1] + "…",
            session_id=given.session_id,
            project=given.project,
            role=Role(turn.role),
            occurred_at=turn.occurred_at,
        )
        for turn in given.turns
    ]
    counts = {"stored": 0, "already_stored": 0, "skipped": 0}
    batch = memory.policy.max_batch
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        try:
            done = await memory.remember_many(user_id, chunk, agent_id=given.agent_id, skip_stored=True)
        except InvalidInput:
            # One turn the policy refuses (say, a secret under a 'reject' redaction rule) must not cost the others.
            done = []
            for item in chunk:
                try:
                    done += await memory.remember_many(user_id, [item], agent_id=given.agent_id, skip_stored=True)
                except InvalidInput as exc:
                    counts["skipped"] += 1
                    logger.warning("a turn was not stored: %s", exc)
        counts["stored"] += sum(1 for r in done if r.created)
    counts["already_stored"] = len(items) - counts["stored"] - counts["skipped"]
    return counts


def _injection(event: str, found: Briefing) -> str:
    """The briefing in the form the assistant reads: Claude Code's hookSpecificOutput, or Engram's generic JSON."""
    if event == "context":
        return json.dumps({"context": found.text, **found.model_dump(exclude={"text"})}, ensure_ascii=False)
    if not found.text:
        return ""
    output = {"hookEventName": CLAUDE_EVENTS[event], "additionalContext": found.text}
    return json.dumps({"hookSpecificOutput": output}, ensure_ascii=False)


def checked_input(event: str, text: str, user_id: str | None) -> tuple[HookInput, str] | HookReply:
    """The parsed payload and user, or the reply that says what is wrong with them (no store needed to tell)."""
    try:
        given = parse(event, text)
        if user_id is None:
            raise PayloadError("no user: set ENGRAM_DEFAULT_USER or pass --user-id")
    except PayloadError as exc:
        if event in INJECTING:
            return HookReply(messages=[f"no context injected: {exc}"])
        return HookReply(messages=[str(exc)], exit=1)
    return given, user_id


async def answer(
    memory: MemoryService, event: str, text: str, user_id: str | None, max_tokens: int = 1000
) -> HookReply:
    """Answer one hook event: inject (a failure injects nothing and says why) or capture (a failure exits 1)."""
    started = time.monotonic()
    # Reading a long transcript is blocking file work: off the event loop, which the daemon shares between hooks.
    checked = await anyio.to_thread.run_sync(partial(checked_input, event, text, user_id))
    if isinstance(checked, HookReply):
        return checked
    given, user_id = checked
    if event in INJECTING:
        try:
            found = await brief(
                memory,
                user_id,
                query=given.prompt,
                session_id=given.session_id,
                project=given.project,
                agent_id=given.agent_id,
                limits=BriefingLimits(max_tokens=max_tokens),
            )
        except Exception as exc:
            # Whatever went wrong, the prompt goes on without memory; the reason goes to the log.
            return HookReply(messages=[f"no context injected: {type(exc).__name__}: {exc}"])
        took = (time.monotonic() - started) * 1000
        note = f"injected {found.memories} memories, {found.knowledge} passages, {found.working} working turns"
        return HookReply(
            stdout=_injection(event, found), messages=[f"{note} (~{found.tokens} tokens) in {took:.0f} ms"]
        )
    if event not in CAPTURING:
        return HookReply(messages=[f"unknown event {event!r}"], exit=1)
    try:
        counts = await capture(memory, user_id, given)
    except EngramError as exc:
        return HookReply(messages=[f"nothing captured: {exc}"], exit=1)
    summary = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in counts.items())
    return HookReply(stdout=json.dumps(counts) if event == "capture" else "", messages=[f"captured: {summary}"])
