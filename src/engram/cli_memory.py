"""The `engram` commands that let a person see and correct one user's memory: list, show, update, forget, sessions."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, TextIO, TypeVar

import click

from engram.cli import _clean_errors, _configure_logging, _echo_json, _embedder, _settings, _with_memory

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from engram.config import Settings
    from engram.core.filters import MemoryFilters
    from engram.core.models import Memory, MemoryForgotten
    from engram.core.service import MemoryService

T = TypeVar("T")

#: Widest a content cell gets in a table; `show` prints it whole.
CONTENT_WIDTH = 60
#: When piped, a progress line every this many items (a terminal gets a live bar instead).
PROGRESS_EVERY = 100
#: C0 and C1 control characters: memory content is untrusted and must not drive the terminal (escape sequences).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` with control characters shown as '?', so stored content cannot move the cursor or recolour output."""
    return _CONTROL.sub("?", text)


def _cell(value: object, width: int | None = None) -> str:
    if value is None:
        text = "-"
    elif isinstance(value, datetime):
        text = f"{value:%Y-%m-%d %H:%M}"
    elif isinstance(value, list | tuple):
        text = ",".join(str(v) for v in value) or "-"
    else:
        text = str(value)
    text = printable(" ".join(text.split()))
    if width is not None and len(text) > width:
        text = text[: width - 1] + "…"
    return text


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, wide: str | None = None) -> str:
    """A plain-text table with a header line, columns padded to their widest cell (`wide` is cut at CONTENT_WIDTH)."""
    cells = [
        [_cell(v, CONTENT_WIDTH if h == wide else None) for h, v in zip(headers, row, strict=True)] for row in rows
    ]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


class Progress:
    """Progress of long work on stderr: a live bar on a terminal, a line every PROGRESS_EVERY items when piped."""

    def __init__(self, label: str, total: int | None, *, stream: TextIO | None = None) -> None:
        self.label, self.total, self.done = label, total, 0
        self._stream = stream or sys.stderr
        self._live = self._stream.isatty()

    def advance(self, count: int = 1) -> None:
        """Count `count` more items done and show it."""
        before, self.done = self.done, self.done + count
        if self._live:
            self._stream.write(f"\r{self._text()}")
            self._stream.flush()
        elif before // PROGRESS_EVERY != self.done // PROGRESS_EVERY:
            self._stream.write(self._text() + "\n")

    def finish(self) -> None:
        """Show the final count (ending the live line)."""
        if self._live or self.done % PROGRESS_EVERY:
            self._stream.write(("\r" if self._live else "") + self._text() + "\n")

    def _text(self) -> str:
        of = f"/{self.total}" if self.total is not None else ""
        return f"{self.label}: {self.done}{of}"


def _user(settings: Settings, given: str | None) -> str:
    _configure_logging("WARNING")
    user = given or settings.default_user
    if not user:
        raise click.UsageError("name the user with --user (ENGRAM_DEFAULT_USER is empty).")
    return user


def _run(settings: Settings, action: Callable[[MemoryService], Awaitable[T]]) -> T:
    """Run `action` on the memory stack; the model loads only if the action embeds (a new content)."""
    from engram.embeddings.lazy import lazy_embedder

    model = lazy_embedder(
        settings.embedding_model, backend=settings.embedding_backend, load=lambda: _embedder(settings)
    )
    return _with_memory(settings, action, embedder=model)


def _memory_row(m: Memory) -> list[object]:
    return [m.id, m.created_at, m.project, m.kind.value, m.agent_id, m.tags, m.category, m.content]


MEMORY_HEADERS = ("id", "created", "project", "kind", "agent", "tags", "category", "content")

user_option = click.option("--user", "user_id", help="Whose memory [default: ENGRAM_DEFAULT_USER, the login name].")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
agent_option = click.option("--agent", "agent_id", help="Act as this agent: also see its private memories.")


def _filters(
    tags: tuple[str, ...],
    category: str | None,
    entity: str | None,
    agents: tuple[str, ...],
    project: str | None,
    session_id: str | None,
    kind: str | None,
    since: datetime | None,
    until: datetime | None,
) -> MemoryFilters:
    from datetime import UTC

    from engram.core.filters import MemoryFilters
    from engram.core.validation import parsed

    def aware(when: datetime | None) -> datetime | None:
        return when if when is None or when.tzinfo is not None else when.replace(tzinfo=UTC)

    # Seeing what is stored means every project unless one is named; then that project alone.
    values: dict[str, object] = {
        "project": project,
        "projects": "only" if project else "any",
        "tags": list(tags) or None,
        "category": category,
        "entity": entity,
        "from_agents": list(agents) or None,
        "from_session": session_id,
        "kind": kind,
        "since": aware(since),
        "until": aware(until),
    }
    return parsed(MemoryFilters, values)


@click.command("list")
@user_option
@json_option
@agent_option
@click.option("--tag", "tags", multiple=True, help="Only memories with this tag (repeatable: any of them).")
@click.option("--category", help="Only memories of this category.")
@click.option("--entity", help="Only memories naming this entity.")
@click.option("--by-agent", "agents", multiple=True, help="Only memories written by this agent (repeatable).")
@click.option("--project", help="Only memories of this project [default: every project and the global ones].")
@click.option("--session", "session_id", help="Only memories of this session.")
@click.option("--kind", type=click.Choice(["turn", "fact", "summary", "document"]), help="Only this kind.")
@click.option("--since", type=click.DateTime(), help="Created at or after this time (UTC unless it says).")
@click.option("--until", type=click.DateTime(), help="Created before this time (UTC unless it says).")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True, help="Memories per page.")
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True, help="Skip this many first.")
@click.option("--all", "every", is_flag=True, help="Every matching memory, page after page (with progress).")
def list_(
    user_id: str | None,
    as_json: bool,
    agent_id: str | None,
    tags: tuple[str, ...],
    category: str | None,
    entity: str | None,
    agents: tuple[str, ...],
    project: str | None,
    session_id: str | None,
    kind: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
    every: bool,
) -> None:
    """List a user's long-term memories, newest first, optionally filtered by their metadata."""
    settings = _settings()
    user = _user(settings, user_id)
    with _clean_errors():
        filters = _filters(tags, category, entity, agents, project, session_id, kind, since, until)

    async def run(memory: MemoryService) -> tuple[list[Memory], int | None]:
        found: list[Memory] = []
        progress = Progress("listing", None) if every else None
        at: int | None = offset
        while at is not None:
            page = await memory.list_memories(user, filters=filters, limit=limit, offset=at, agent_id=agent_id)
            found += page.memories
            if progress is not None:
                progress.advance(len(page.memories))
            at = page.next_offset if every else None
            if not every:
                return found, page.next_offset
        if progress is not None:
            progress.finish()
        return found, None

    memories, next_offset = _run(settings, run)
    if as_json:
        _echo_json({"memories": [m.model_dump(mode="json") for m in memories], "next_offset": next_offset})
        return
    if not memories:
        click.echo("no memories", err=True)
        return
    click.echo(table(MEMORY_HEADERS, [_memory_row(m) for m in memories], wide="content"))
    if next_offset is not None:
        click.echo(f"more: --offset {next_offset} (or --all)", err=True)


def _details(m: Memory) -> str:
    fields: list[tuple[str, object]] = [
        ("id", m.id),
        ("user", m.user_id),
        ("project", m.project),
        ("kind", m.kind.value),
        ("created", m.created_at.isoformat()),
        ("updated", m.updated_at.isoformat() if m.updated_at else None),
        ("session", m.session_id),
        ("turn", m.turn_index),
        ("role", m.role.value if m.role else None),
        ("agent", m.agent_id),
        ("visibility", m.visibility.value),
        ("tags", m.tags),
        ("category", m.category),
        ("entities", m.entities),
        ("sentiment", m.sentiment.value if m.sentiment else None),
        ("importance", m.importance),
        ("resolved", m.resolved),
        ("summarises", m.links),
        ("metadata", json.dumps(m.metadata, ensure_ascii=False) if m.metadata else None),
    ]
    lines = [f"{name:11} {_cell(value)}" for name, value in fields]
    lines.append("content")
    lines += ["  " + printable(line) for line in m.content.splitlines() or [""]]
    return "\n".join(lines)


@click.command()
@click.argument("memory_id")
@user_option
@json_option
@agent_option
def show(memory_id: str, user_id: str | None, as_json: bool, agent_id: str | None) -> None:
    """Show one memory whole, with all its metadata."""
    settings = _settings()
    user = _user(settings, user_id)
    found = _run(settings, lambda m: m.get_memory(user, memory_id, agent_id=agent_id))
    if as_json:
        _echo_json(found.model_dump(mode="json"))
    else:
        click.echo(_details(found))


@click.command()
@click.argument("memory_ids", nargs=-1, required=True)
@user_option
@json_option
@agent_option
def forget(memory_ids: tuple[str, ...], user_id: str | None, as_json: bool, agent_id: str | None) -> None:
    """Delete the memories MEMORY_IDS (from long-term memory and the user's session transcripts)."""
    settings = _settings()
    user = _user(settings, user_id)

    async def run(memory: MemoryService) -> list[MemoryForgotten]:
        done: list[MemoryForgotten] = []
        progress = Progress("forgetting", len(memory_ids)) if len(memory_ids) > 1 else None
        for one in dict.fromkeys(memory_ids):
            done.append(await memory.forget_memory(user, one, agent_id=agent_id))
            if progress is not None:
                progress.advance()
        if progress is not None:
            progress.finish()
        return done

    receipts = _run(settings, run)
    if as_json:
        _echo_json([r.model_dump(mode="json") for r in receipts])
        return
    headers = ("memory", "long_term", "session_turns")
    click.echo(table(headers, [[r.memory_id, r.long_term, r.session_turns] for r in receipts]))


@click.command()
@click.argument("memory_id")
@user_option
@json_option
@agent_option
@click.option("--content", help="The new text (the memory gets a new id, printed).")
@click.option("--tag", "tags", multiple=True, help="Replace the tags with these (repeatable).")
@click.option("--clear-tags", is_flag=True, help="Remove every tag.")
@click.option("--category", help="The new category.")
@click.option("--importance", type=click.FloatRange(0, 1), help="The new importance, 0 to 1.")
@click.option("--resolved/--unresolved", default=None, help="Mark it resolved or not.")
@click.option("--visibility", type=click.Choice(["shared", "private"]), help="Only the agent that wrote it.")
def update(
    memory_id: str,
    user_id: str | None,
    as_json: bool,
    agent_id: str | None,
    content: str | None,
    tags: tuple[str, ...],
    clear_tags: bool,
    category: str | None,
    importance: float | None,
    resolved: bool | None,
    visibility: str | None,
) -> None:
    """Correct one memory's content or metadata; what is not given stays as it is."""
    from engram.core.models import Visibility

    settings = _settings()
    user = _user(settings, user_id)
    if tags and clear_tags:
        raise click.UsageError("--tag and --clear-tags contradict each other: give one.")
    new_tags = [] if clear_tags else list(tags) if tags else None
    result = _run(
        settings,
        lambda m: m.update_memory(
            user,
            memory_id,
            agent_id=agent_id,
            content=content,
            tags=new_tags,
            category=category,
            importance=importance,
            resolved=resolved,
            visibility=Visibility(visibility) if visibility else None,
        ),
    )
    if as_json:
        _echo_json(result.model_dump(mode="json"))
        return
    if result.previous_id:
        click.echo(f"updated; new id {result.id} (was {result.previous_id})", err=True)
    click.echo(_details(result.memory))


@click.command()
@user_option
@json_option
def sessions(user_id: str | None, as_json: bool) -> None:
    """List a user's recent sessions (short-term memory), most recently active first."""
    settings = _settings()
    user = _user(settings, user_id)
    listed = _run(settings, lambda m: m.sessions_of(user))
    if as_json:
        _echo_json([s.model_dump(mode="json") for s in listed])
        return
    if not listed:
        click.echo("no sessions", err=True)
        return
    headers = ("session", "started", "last_active", "turns", "agents", "summary")
    rows = [[s.session_id, s.started_at, s.last_active_at, s.turns, s.agents, s.summary] for s in listed]
    click.echo(table(headers, rows, wide="summary"))


@click.command()
@click.option(
    "--user",
    "users",
    multiple=True,
    help="Without tokens: a user the page may show (repeatable) [default: ENGRAM_DEFAULT_USER]. With tokens "
    "configured, sign-in decides.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (not loopback: needs tokens).")
@click.option("--port", type=click.IntRange(1, 65535), default=8766, show_default=True, help="Port.")
def ui(users: tuple[str, ...], host: str, port: int) -> None:
    """Serve the memory browser: search, open, edit and forget memories in a web page (loopback by default)."""
    settings = _settings()
    _configure_logging(settings.log_level)
    from engram.ui.app import serve_ui

    settings = settings.model_copy(update={"host": host, "port": port})
    chosen = list(users) or ([settings.default_user] if settings.default_user else [])
    with _clean_errors():
        serve_ui(settings, users=chosen)


#: Registered on the `engram` group by cli.py.
COMMANDS = (list_, show, forget, update, sessions, ui)
