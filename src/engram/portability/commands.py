"""`engram export` and `engram import`: a user's memory to and from a JSONL file; Claude and ChatGPT histories in."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from engram.config import Settings
    from engram.core.service import MemoryService


def _user(settings: Settings, user_id: str | None) -> str:
    chosen = user_id or settings.default_user
    if chosen is None:
        raise click.UsageError("name the user with --user (no ENGRAM_DEFAULT_USER is set).")
    return chosen


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    """Write the records one per line, owner-only (they are personal data), replacing the file at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            for record in records:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise click.ClickException(f"{path}, line {number}: not JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise click.ClickException(f"{path}, line {number}: expected a JSON object")
            yield record


@click.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--user", "user_id", help="Whose memory [default: ENGRAM_DEFAULT_USER].")
@click.option("--project", help="Only this project's memories and their sessions (no knowledge sources).")
@click.option("--with-vectors", is_flag=True, help="Add each memory's and chunk's vector (skips re-embedding).")
def export(file: Path, user_id: str | None, project: str | None, with_vectors: bool) -> None:
    """Write every memory, session and own knowledge source of a user to FILE (JSONL), with metadata and model id."""
    from engram.cli import _configure_logging, _settings, _with_memory
    from engram.core.portability import export_records
    from engram.hooks.command import lazy_model

    settings = _settings()
    _configure_logging("WARNING")
    user = _user(settings, user_id)

    async def run(memory: MemoryService) -> list[dict[str, Any]]:
        return await export_records(memory, user, project=project, with_vectors=with_vectors)

    records = _with_memory(settings, run, embedder=lazy_model(settings))
    _write_jsonl(file, records)
    kinds = [r["type"] for r in records[1:]]
    click.echo(
        f"exported {kinds.count('memory')} memories, {kinds.count('session')} sessions and "
        f"{kinds.count('knowledge')} knowledge sources of {user!r} to {file}",
        err=True,
    )


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--user", "user_id", help="Whose memory [default: the export's user, else ENGRAM_DEFAULT_USER].")
@click.option(
    "--format",
    "kind",
    type=click.Choice(["auto", "engram", "claude", "chatgpt"]),
    default="auto",
    show_default=True,
    help="engram: a file of `engram export`; claude / chatgpt: their conversations.json.",
)
@click.option("--project", help="Conversation exports: the project the imported turns belong to.")
def import_(file: Path, user_id: str | None, kind: str, project: str | None) -> None:
    """Restore FILE into memory: an `engram export`, or a claude.ai or ChatGPT conversations.json. Safe to repeat."""
    from engram.cli import _configure_logging, _echo_json, _settings, _with_memory

    settings = _settings()
    _configure_logging("WARNING")
    if kind == "auto":
        kind = "engram" if file.suffix == ".jsonl" else "conversations"
    if kind == "engram":
        from engram.core.portability import restore

        records = _read_jsonl(file)
        header = next(records, None)
        if header is None:
            raise click.ClickException(f"{file} is empty")
        user = user_id or str(header.get("user_id") or "") or _user(settings, None)

        def with_header() -> Iterator[dict[str, Any]]:
            yield header
            yield from records

        _echo_json(_with_memory(settings, lambda memory: restore(memory, user, with_header())))
        return
    _echo_json(_import_conversations(settings, file, kind, _user(settings, user_id), project))


def _import_conversations(
    settings: Settings, file: Path, kind: str, user: str, project: str | None
) -> dict[str, int | str]:
    from engram.cli import _with_memory
    from engram.hooks.answer import capture
    from engram.hooks.payloads import HookInput
    from engram.portability.conversations import ExportUnreadable, read_conversations

    try:
        found, conversations = read_conversations(file, None if kind == "conversations" else kind)  # type: ignore[arg-type]
    except ExportUnreadable as exc:
        raise click.ClickException(str(exc)) from exc
    agent = "claude.ai" if found == "claude" else "chatgpt"

    async def run(memory: MemoryService) -> dict[str, int | str]:
        totals: dict[str, int | str] = {"format": found, "conversations": len(conversations)}
        with click.progressbar(length=len(conversations), label="importing", file=sys.stderr) as bar:
            for conversation in conversations:
                bar.update(1)
                if not conversation.turns:
                    continue
                given = HookInput(conversation.session_id, project, turns=conversation.turns, agent_id=agent)
                for name, n in (await capture(memory, user, given)).items():
                    totals[name] = int(totals.get(name, 0)) + n
        return totals

    return _with_memory(settings, run)
