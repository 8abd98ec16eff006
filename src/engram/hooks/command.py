"""`engram hook`: run as an assistant's hook (inject context, capture turns), serve hooks, or install them."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from engram.hooks.payloads import CAPTURING, CLAUDE_EVENTS

if TYPE_CHECKING:
    from engram.config import Settings
    from engram.core.ports import Embedder
    from engram.hooks.answer import HookReply

T = TypeVar("T")
logger = logging.getLogger("engram.hook")

#: How long an injecting hook may take before it gives up and injects nothing (it must not hold the prompt up).
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


def lazy_model(settings: Settings) -> Embedder | None:
    """The configured model's id and size without loading it (it loads on the first embedding), if readable."""
    from engram.cli import _embedder
    from engram.embeddings.lazy import lazy_embedder

    return lazy_embedder(settings.embedding_model, backend=settings.embedding_backend, load=lambda: _embedder(settings))


def in_process(settings: Settings, event: str, text: str, user_id: str | None, max_tokens: int) -> HookReply:
    """Answer one event in this process: open the stores (the model only if a capture embeds), answer, close."""
    import anyio

    from engram.hooks.answer import answer
    from engram.runtime import open_memory

    async def run() -> HookReply:
        memory = open_memory(settings, lazy_model(settings))
        try:
            return await answer(memory, event, text, user_id, max_tokens)
        finally:
            memory.close()

    return anyio.run(run)


def _reply_in_process(
    settings: Settings, event: str, text: str, user_id: str | None, budget_ms: int, max_tokens: int
) -> dict[str, Any]:
    from engram.hooks.answer import HookReply, checked_input

    wrong = checked_input(event, text, user_id)
    if isinstance(wrong, HookReply):
        return wrong.as_dict()  # said at once: no store is opened for a payload that cannot be answered
    if event in CAPTURING:
        return in_process(settings, event, text, user_id, max_tokens).as_dict()
    try:
        return within(budget_ms / 1000, lambda: in_process(settings, event, text, user_id, max_tokens)).as_dict()
    except _OutOfTime:
        why = f"the memory store did not answer within {budget_ms} ms (slow, busy or still loading)"
        sys.stderr.write(f"engram hook: no context injected: {why}\n")
        sys.stdout.flush()
        sys.stderr.flush()
        # The stores are still being opened on the worker thread: leave now rather than hold up the prompt.
        os._exit(0)


def _install(action: str, level: str, settings_file: Path | None) -> None:
    from engram.hooks.settings_file import install, settings_path, uninstall

    path = settings_file or settings_path(level)
    try:
        if action == "install":
            data = install(path, _install_environ())
            click.echo(json.dumps({"hooks": data["hooks"]}, indent=2))
            click.echo(f"Engram's hooks are in {path}; restart Claude Code to load them.", err=True)
        else:
            click.echo(f"removed {uninstall(path)} Engram hook entries from {path}", err=True)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc


def _install_environ() -> dict[str, str]:
    """The settings the hook commands carry: the resolved data directory always (the hooks' fast path needs it)."""
    from engram.cli import _settings

    settings = _settings()
    environ = {k: v for k, v in os.environ.items() if k.startswith("ENGRAM_")}
    return environ | {"ENGRAM_DATA_DIR": str(settings.data_dir.expanduser().resolve())}


@click.command("hook")
@click.argument("event", required=False, type=click.Choice([*CLAUDE_EVENTS, "context", "capture"]))
@click.option("--install", "action", flag_value="install", help="Write Engram's hooks into Claude Code's settings.")
@click.option("--uninstall", "action", flag_value="uninstall", help="Remove Engram's hooks (only ours) again.")
@click.option("--serve", "action", flag_value="serve", help="Run the hook daemon (the hooks start it themselves).")
@click.option("--user", "level", flag_value="user", default=True, help="~/.claude/settings.json (the default).")
@click.option("--project", "level", flag_value="project", help="./.claude/settings.json of this project.")
@click.option("--settings", "settings_file", type=click.Path(path_type=Path), help="Another settings file.")
@click.option("--user-id", help="Whose memory [default: ENGRAM_DEFAULT_USER, else the login name].")
@click.option("--budget-ms", type=click.IntRange(0, 60_000), default=DEFAULT_BUDGET_MS, show_default=True,
              help="Injecting events: give up (inject nothing) after this long.")  # fmt: skip
@click.option("--max-tokens", type=click.IntRange(50, 20_000), default=1000, show_default=True,
              help="Injecting events: the most context to inject (estimated as characters / 4).")  # fmt: skip
@click.option("--no-daemon", is_flag=True, help="Answer in this process instead of through the hook daemon.")
@click.option("--idle-minutes", type=click.FloatRange(0.1, 24 * 60), default=30.0, show_default=True,
              help="--serve: stop after this long without a hook event.")  # fmt: skip
def hook(
    event: str | None,
    action: str | None,
    level: str,
    settings_file: Path | None,
    user_id: str | None,
    budget_ms: int,
    max_tokens: int,
    no_daemon: bool,
    idle_minutes: float,
) -> None:
    """Run as an assistant's hook for EVENT, reading its JSON from stdin; or --install / --uninstall the hooks.

    session-start and user-prompt-submit print the relevant memories, knowledge and working memory for Claude
    Code to add to the context; stop and pre-compact store the transcript's new turns. context and capture are
    the same for other assistants, in Engram's own JSON (see the README). Events go to the hook daemon, which
    keeps the stores open; the first event starts it.
    """
    from engram.cli import _configure_logging, _settings
    from engram.hooks.client import daemons_supported, emit, via_daemon

    if action in ("install", "uninstall"):
        _install(action, level, settings_file)
        return
    settings = _settings()
    _configure_logging(settings.log_level)
    if action == "serve":
        if not daemons_supported():
            raise click.ClickException("the hook daemon needs Unix domain sockets; use the hooks with --no-daemon")
        from engram.hooks.daemon import serve

        serve(settings, idle_minutes * 60, announce=lambda line: click.echo(line))
        return
    if event is None:
        raise click.UsageError("name an EVENT, or use --install, --uninstall or --serve.")
    text = sys.stdin.read()
    user_id = user_id or settings.default_user
    if no_daemon or not daemons_supported():
        reply = _reply_in_process(settings, event, text, user_id, budget_ms, max_tokens)
    else:
        reply = via_daemon(settings.data_dir, event, text, user_id, max_tokens, budget_ms)
    for message in reply.get("messages") or []:
        failed = reply.get("exit") or message.startswith(("no context injected", "nothing captured"))
        (logger.warning if failed else logger.info)("%s", message)
    code = emit({**reply, "messages": []})
    if code:
        raise click.ClickException("; ".join(reply.get("messages") or ["the hook failed"]))
