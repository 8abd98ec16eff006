"""`engram hook`: run as an assistant's hook (inject context, capture turns), or install the hooks in its settings."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from engram.hooks.payloads import CAPTURING, CLAUDE_EVENTS, INJECTING, HookInput, PayloadError, parse

if TYPE_CHECKING:
    from engram.config import Settings
    from engram.core.briefing import Briefing
    from engram.core.ports import Embedder
    from engram.core.service import MemoryService

T = TypeVar("T")
logger = logging.getLogger("engram.hook")

#: How long an injecting hook may work before it gives up and injects nothing (it must not hold the prompt up).
DEFAULT_BUDGET_MS = 300


class _OutOfTime(Exception):
    """The work did not finish within the budget; it was left running in a daemon thread."""


def within(budget_s: float, work: Callable[[], T]) -> T:
    """Run `work` on a daemon thread and return its result, or raise _OutOfTime once `budget_s` has passed."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    worker = threading.Thread(target=run, name="engram-hook", daemon=True)
    worker.start()
    worker.join(max(0.0, budget_s))
    if worker.is_alive():
        raise _OutOfTime
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def _lazy_model(settings: Settings) -> Embedder | None:
    """The configured model's id and size without loading it (the briefing never embeds), if they can be read."""
    from engram.cli import _embedder
    from engram.embeddings.lazy import lazy_embedder

    return lazy_embedder(settings.embedding_model, backend=settings.embedding_backend, load=lambda: _embedder(settings))


def _brief(settings: Settings, user_id: str, given: HookInput, max_tokens: int) -> Briefing:
    """Open the stores (not the model), gather the briefing and close them (blocking; run on the hook's thread)."""
    import anyio

    from engram.core.briefing import BriefingLimits, brief
    from engram.runtime import open_memory

    async def gather() -> Briefing:
        memory = open_memory(settings, _lazy_model(settings))
        try:
            return await brief(
                memory,
                user_id,
                query=given.prompt,
                session_id=given.session_id,
                project=given.project,
                agent_id=given.agent_id,
                limits=BriefingLimits(max_tokens=max_tokens),
            )
        finally:
            memory.close()

    return anyio.run(gather)


async def capture(memory: MemoryService, user_id: str, given: HookInput) -> dict[str, int]:
    """Store the turns not stored yet (content-addressed, so a hook that fires twice stores once); count them."""
    from engram.core.errors import InvalidInput
    from engram.core.models import RememberItem, Role

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


def _inject(event: str, settings: Settings, user_id: str, given: HookInput, budget_ms: int, max_tokens: int) -> None:
    started = time.monotonic()
    try:
        found = within(budget_ms / 1000, lambda: _brief(settings, user_id, given, max_tokens))
    except _OutOfTime:
        logger.warning(
            "no context injected: the memory store did not answer within %d ms (slow, busy or still loading)",
            budget_ms,
        )
        sys.stdout.flush()
        sys.stderr.flush()
        # The store is still being opened on the worker thread: leave now rather than hold up the prompt.
        os._exit(0)
    except Exception as exc:
        # Whatever went wrong, the prompt goes on without memory; the reason goes to the log (stderr).
        logger.warning("no context injected: %s: %s", type(exc).__name__, exc)
        return
    logger.info(
        "injected %d memories, %d passages, %d working turns (~%d tokens) in %.0f ms",
        found.memories,
        found.knowledge,
        found.working,
        found.tokens,
        (time.monotonic() - started) * 1000,
    )
    if event == "context":
        click.echo(json.dumps({"context": found.text, **found.model_dump(exclude={"text"})}))
    elif found.text:
        output = {"hookEventName": CLAUDE_EVENTS[event], "additionalContext": found.text}
        click.echo(json.dumps({"hookSpecificOutput": output}, ensure_ascii=False))


def _capture(event: str, settings: Settings, user_id: str, given: HookInput) -> None:
    from engram.cli import _with_memory

    counts = _with_memory(settings, lambda memory: capture(memory, user_id, given))
    logger.info("captured %s", ", ".join(f"{n} {name}" for name, n in counts.items()))
    if event == "capture":
        click.echo(json.dumps(counts))


def _install(action: str, level: str, settings_file: Path | None) -> None:
    from engram.hooks.settings_file import install, settings_path, uninstall

    path = settings_file or settings_path(level)
    try:
        if action == "install":
            data = install(path)
            click.echo(json.dumps({"hooks": data["hooks"]}, indent=2))
            click.echo(f"Engram's hooks are in {path}; restart Claude Code to load them.", err=True)
        else:
            click.echo(f"removed {uninstall(path)} Engram hook entries from {path}", err=True)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc


@click.command("hook")
@click.argument("event", required=False, type=click.Choice([*CLAUDE_EVENTS, "context", "capture"]))
@click.option("--install", "action", flag_value="install", help="Write Engram's hooks into Claude Code's settings.")
@click.option("--uninstall", "action", flag_value="uninstall", help="Remove Engram's hooks (only ours) again.")
@click.option("--user", "level", flag_value="user", default=True, help="~/.claude/settings.json (the default).")
@click.option("--project", "level", flag_value="project", help="./.claude/settings.json of this project.")
@click.option("--settings", "settings_file", type=click.Path(path_type=Path), help="Another settings file.")
@click.option("--user-id", help="Whose memory [default: ENGRAM_DEFAULT_USER, else the login name].")
@click.option("--budget-ms", type=click.IntRange(0, 60_000), default=DEFAULT_BUDGET_MS, show_default=True,
              help="Injecting events: give up (inject nothing) after this long.")  # fmt: skip
@click.option("--max-tokens", type=click.IntRange(50, 20_000), default=1000, show_default=True,
              help="Injecting events: the most context to inject (estimated as characters / 4).")  # fmt: skip
def hook(
    event: str | None,
    action: str | None,
    level: str,
    settings_file: Path | None,
    user_id: str | None,
    budget_ms: int,
    max_tokens: int,
) -> None:
    """Run as an assistant's hook for EVENT, reading its JSON from stdin; or --install / --uninstall the hooks.

    session-start and user-prompt-submit print the relevant memories, knowledge and working memory for Claude
    Code to add to the context; stop and pre-compact store the transcript's new turns. context and capture are
    the same for other assistants, in Engram's own JSON (see the README).
    """
    from engram.cli import _configure_logging, _settings

    if action is not None:
        _install(action, level, settings_file)
        return
    if event is None:
        raise click.UsageError("name an EVENT, or use --install / --uninstall.")
    settings = _settings()
    _configure_logging(settings.log_level)
    user_id = user_id or settings.default_user
    try:
        given = parse(event, sys.stdin.read())
        if user_id is None:
            raise PayloadError("no user: set ENGRAM_DEFAULT_USER or pass --user-id")
    except PayloadError as exc:
        if event in INJECTING:
            logger.warning("no context injected: %s", exc)
            return
        raise click.ClickException(str(exc)) from exc
    if event in INJECTING:
        _inject(event, settings, user_id, given, budget_ms, max_tokens)
    elif event in CAPTURING:
        _capture(event, settings, user_id, given)
