"""The `engram` command line: run the MCP server, and inspect or maintain memory without an assistant."""

from __future__ import annotations

import gc
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click
from pydantic import ValidationError

if TYPE_CHECKING:
    from engram.config import Settings
    from engram.core.knowledge import KnowledgeService
    from engram.core.knowledge_models import IngestReport, KnowledgeSource, SourceRemoved
    from engram.core.memory_json import MemoryJsonImport
    from engram.core.models import RecallScope
    from engram.core.ports import Embedder
    from engram.core.service import MemoryService

T = TypeVar("T")


def _settings() -> Settings:
    from engram.config import Settings

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"ENGRAM_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise click.ClickException(f"invalid setting: {problems}") from exc


def _configure_logging(level: str) -> None:
    # stderr only: on stdio, stdout carries the protocol.
    logging.basicConfig(stream=sys.stderr, level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@contextmanager
def _clean_errors() -> Iterator[None]:
    from engram.core.errors import EngramError

    try:
        yield
    except EngramError as exc:
        raise click.ClickException(str(exc)) from exc


def _with_memory(
    settings: Settings, action: Callable[[MemoryService], Awaitable[T]], *, embedder: Embedder | None = None
) -> T:
    """Open the memory stack (with `embedder`, else the configured model), run `action` on it, and close it."""
    import anyio

    from engram.runtime import open_memory

    async def run() -> T:
        service = await anyio.to_thread.run_sync(lambda: open_memory(settings, embedder))
        try:
            return await action(service)
        finally:
            service.close()

    with _clean_errors():
        return anyio.run(run)


def _cap_native_threads(settings: Settings) -> None:
    """Size the OpenMP/BLAS pools before numpy or an inference library loads (see engram.embeddings.threads)."""
    from engram.embeddings.threads import cap_native_threads

    cap_native_threads(settings.embedding_threads)


def _echo_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


@click.group()
@click.version_option(package_name="engram-server")
def cli() -> None:
    """Engram: persistent memory for MCP assistants."""


@cli.command()
@click.option(
    "--transport",
    type=click.Choice(["stdio", "streamable-http", "sse"]),
    default="stdio",
    show_default=True,
    help="stdio for a local assistant; streamable-http (or the older sse) for remote clients, with bearer tokens.",
)
@click.option("--host", help="HTTP bind address [default: ENGRAM_HOST, else 127.0.0.1].")
@click.option("--port", type=click.IntRange(1, 65535), help="HTTP port [default: ENGRAM_PORT, else 8765].")
def serve(transport: str, host: str | None, port: int | None) -> None:
    """Run the MCP server (stdio: for Claude Desktop, Cursor, VS Code, Claude Code; HTTP: for remote agents)."""
    settings = _settings()
    _configure_logging(settings.log_level)
    _cap_native_threads(settings)
    from engram.allocator import tune_allocator
    from engram.collector import tune_collector

    tune_allocator()  # before any thread starts: see engram.allocator
    tune_collector()  # no garbage collection pass on every recall: see engram.collector
    if transport == "stdio":
        if host is not None or port is not None:
            raise click.UsageError("--host and --port apply to the HTTP transports (streamable-http, sse) only.")
        from engram.server.app import build_server
        from engram.tools.state import use_default_user

        logging.getLogger("engram").info("Engram serving over stdio; data in %s", settings.data_dir)
        use_default_user(settings.default_user)  # inherited by the stdin reader, whose context handlers run in
        build_server(settings).run()
    else:
        from engram.server.http import serve_http

        overrides = {"host": host, "port": port}
        settings = settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})
        with _clean_errors():
            serve_http(settings, "sse" if transport == "sse" else "streamable-http")
    # The stores are closed by now. Skipping the final garbage collection of torch's and LanceDB's large heaps
    # lets the process exit in a fraction of a second, well inside a client's shutdown grace period.
    gc.freeze()


@cli.command()
@click.argument("user_id")
@click.argument("content")
@click.option("--session", "session_id", help="Also record it as a turn of this session.")
@click.option("--tag", "tags", multiple=True, help="A tag (repeatable).")
def remember(user_id: str, content: str, session_id: str | None, tags: tuple[str, ...]) -> None:
    """Store CONTENT as a memory of USER_ID."""
    settings = _settings()
    _configure_logging("WARNING")
    result = _with_memory(settings, lambda m: m.remember(user_id, content, session_id=session_id, tags=list(tags)))
    _echo_json(result.model_dump(mode="json"))


@cli.command()
@click.argument("user_id")
@click.argument("query")
@click.option("--top-k", type=int, default=None, help="How many memories.")
@click.option("--scope", type=click.Choice(["memories", "knowledge", "both"]), default="both", show_default=True)
def recall(user_id: str, query: str, top_k: int | None, scope: str) -> None:
    """Show USER_ID's memories and knowledge most relevant to QUERY."""
    settings = _settings()
    _configure_logging("WARNING")
    chosen: RecallScope = "memories" if scope == "memories" else "knowledge" if scope == "knowledge" else "both"
    result = _with_memory(settings, lambda m: m.recall(user_id, query, top_k=top_k, scope=chosen))
    for hit in result.memories:
        click.echo(f"{hit.score:6.3f}  {hit.memory.created_at:%Y-%m-%d}  {hit.memory.content}")
    for k in result.knowledge:
        where = " > ".join(k.citation.heading_path) or k.citation.title
        click.echo(f"{k.score:6.3f}  [{k.citation.source} | {where} | chunk {k.citation.position + 1}]  {k.content}")
    if not result.memories and not result.knowledge:
        click.echo("no memories found", err=True)


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--include", multiple=True, help="Only files matching this glob, e.g. '*.md' (repeatable).")
@click.option("--exclude", multiple=True, help="Leave out files matching this glob (repeatable).")
@click.option("--user", "user_id", help="Knowledge of this user only (default: global, seen by every user).")
def ingest(paths: tuple[Path, ...], include: tuple[str, ...], exclude: tuple[str, ...], user_id: str | None) -> None:
    """Add documents (Markdown, text, HTML, PDF) in PATHS to knowledge memory; folders are searched recursively.

    Unchanged files are skipped, changed ones replaced, and files deleted from an ingested folder removed.
    Interrupting is safe: run the same command again to finish.
    """
    settings = _settings()
    _configure_logging("WARNING")

    async def run(memory: MemoryService) -> IngestReport:
        knowledge = _knowledge(memory)
        with click.progressbar(length=1, label="ingesting", file=sys.stderr, show_pos=True) as bar:

            async def progress(done: float, total: float, message: str) -> None:
                bar.length = int(total)
                bar.update(int(done) - bar.pos)

            return await knowledge.ingest_paths(
                user_id, list(paths), include=list(include), exclude=list(exclude), progress=progress
            )

    report = _with_memory(settings, run)
    for item in report.changed:
        click.echo(f"{item.status:8} {item.chunks:5} chunks  {item.source}")
    for problem in report.failed:
        click.echo(f"failed   {problem.source}: {problem.reason}", err=True)
    for source in report.empty:
        click.echo(f"empty    {source} (no text found)", err=True)
    for source in report.removed:
        click.echo(f"removed  {source}")
    click.echo(
        f"{report.files_seen} files: {len(report.changed)} ingested, {report.unchanged} unchanged, "
        f"{len(report.removed)} removed, {len(report.failed)} failed; {report.chunks_written} chunks written "
        f"({report.chunks_embedded} embedded) in {report.seconds:.1f} s",
        err=True,
    )
    if report.failed:
        sys.exit(1)


@cli.command()
@click.option("--user", "user_id", help="Also this user's own sources (default: global sources only).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def sources(user_id: str | None, as_json: bool) -> None:
    """List knowledge sources with their chunk counts and ingest times."""
    settings = _settings()
    _configure_logging("WARNING")

    async def run(memory: MemoryService) -> list[KnowledgeSource]:
        return await _knowledge(memory).sources(user_id)

    listed = _with_memory(settings, run)
    if as_json:
        _echo_json([s.model_dump(mode="json") for s in listed])
        return
    for s in listed:
        click.echo(f"{s.scope:6} {s.chunks:5} chunks  {s.ingested_at:%Y-%m-%d %H:%M}  {s.source}")
    if not listed:
        click.echo("no knowledge sources", err=True)


@cli.command("forget-source")
@click.argument("source")
@click.option("--user", "user_id", help="A source of this user (default: a global source).")
def forget_source(source: str, user_id: str | None) -> None:
    """Remove SOURCE (a path as listed by `engram sources`) from knowledge memory."""
    settings = _settings()
    _configure_logging("WARNING")
    # A path given relative to here names the same source as its absolute form used at ingest.
    candidate = Path(source).expanduser()
    if not candidate.is_absolute():
        source = str(candidate.resolve())

    async def run(memory: MemoryService) -> SourceRemoved:
        return await _knowledge(memory).remove_source(user_id, source)

    _echo_json(_with_memory(settings, run).model_dump(mode="json"))


def _knowledge(memory: MemoryService) -> KnowledgeService:
    if memory.knowledge is None:
        raise click.ClickException("knowledge memory is not available")
    return memory.knowledge


class _ImportGroup(click.Group):
    """`engram import FILE` (an export or conversations, `engram import file --help`) beside `engram import
    memory-json FILE`: an argument that names no subcommand is the file of the first form."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["file", *args]
        return super().parse_args(ctx, args)


@cli.group("import", cls=_ImportGroup)
def import_group() -> None:
    """Bring memory into Engram: FILE (an `engram export`, or a claude.ai or ChatGPT conversations.json; see
    `engram import file --help`), or the official MCP memory server's file (`engram import memory-json`)."""


@import_group.command("memory-json")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--user", "user_id", required=True, help="The user whose graph and memories receive the file.")
def import_memory_json(file: Path, user_id: str) -> None:
    """Import the official MCP memory server's FILE (memory.jsonl or memory.json): entities, relations and
    observations become the user's graph and memories. Importing the same file again changes nothing."""
    from engram.core.errors import InvalidInput
    from engram.core.memory_json import import_memory_json as run_import

    settings = _settings()
    _configure_logging("WARNING")
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {file}: {exc}") from exc

    async def run(memory: MemoryService) -> MemoryJsonImport:
        if memory.graph is None:
            raise InvalidInput("graph", "this data directory has no graph store.")
        return await run_import(memory.graph, user_id, lines)

    result = _with_memory(settings, run)
    _echo_json(result.model_dump(mode="json"))


@cli.command("forget-user")
@click.argument("user_id")
@click.option("--yes", is_flag=True, help="Confirm: erase every memory of USER_ID.")
def forget_user(user_id: str, yes: bool) -> None:
    """Erase everything Engram holds for USER_ID."""
    if not yes:
        click.confirm(f"Erase every memory of {user_id!r}? This cannot be undone", abort=True)
    settings = _settings()
    _configure_logging("WARNING")
    receipt = _with_memory(settings, lambda m: m.forget_user(user_id, confirm=True))
    _echo_json(receipt.model_dump(mode="json"))


@cli.command()
def purge() -> None:
    """Apply the retention policy now: delete memories past their age limit and expired session entries."""
    settings = _settings()
    _configure_logging("WARNING")
    report = _with_memory(settings, lambda m: m.purge())
    _echo_json(report.model_dump(mode="json"))


def _embedder(settings: Settings) -> Embedder:
    """The configured embedding model, loaded."""
    from engram.runtime import configured_embedder

    return configured_embedder(settings)


def main() -> None:
    """Entry point of the `engram` console script."""
    cli()


def _register_commands() -> None:
    """Add the commands that live in their own modules (hooks, projects, export and import, administration, seeing
    and correcting)."""
    from engram.cli_admin import COMMANDS as admin_commands
    from engram.cli_memory import COMMANDS as memory_commands
    from engram.hooks.command import hook
    from engram.portability.commands import export, import_
    from engram.project_commands import forget_project

    for command in (hook, export, forget_project, *admin_commands, *memory_commands):
        cli.add_command(command)
    import_group.add_command(import_, "file")


_register_commands()
