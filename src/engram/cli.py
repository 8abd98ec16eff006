"""The `engram` command line: run the MCP server, and inspect or maintain memory without an assistant."""

from __future__ import annotations

import gc
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from pydantic import ValidationError

if TYPE_CHECKING:
    from engram.config import Settings
    from engram.core.knowledge import KnowledgeService
    from engram.core.knowledge_models import IngestReport, KnowledgeSource, SourceRemoved
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

    tune_allocator()  # before any thread starts: see engram.allocator
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
def prepare() -> None:
    """Build the embedding model's ONNX graph now, so that the first server start is fast.

    The default (the bundled all-MiniLM-L6-v2 in int8) ships built and needs nothing. Other models and fp32 are
    built into the model cache (ENGRAM_MODELS_DIR, else the user's cache directory, shared by every data dir) in a
    child process, with its log on stderr; an intact build already there is kept.
    """
    settings = _settings()
    _configure_logging(settings.log_level)
    from engram.embeddings import HASH_MODEL

    if settings.embedding_model == HASH_MODEL or settings.embedding_backend == "torch":
        what = "the hash embedder" if settings.embedding_model == HASH_MODEL else "the torch backend"
        click.echo(f"nothing to prepare: {what} needs no export", err=True)
        return
    from engram.embeddings.bundled import shipped_int8
    from engram.embeddings.onnx_cache import run_export
    from engram.embeddings.sentence_transformer import BUNDLED_NAMES

    if settings.embedding_backend == "onnx-int8" and settings.embedding_model in BUNDLED_NAMES:
        shipped = shipped_int8()
        if shipped is not None:
            click.echo(f"{settings.embedding_model} (shipped built): {shipped.parent}")
            return
    with _clean_errors():
        report = run_export(
            settings.embedding_model, settings.model_cache_dir, threads=settings.embedding_threads, show_log=True
        )
    state = f"exported in {report['seconds']:.1f} s" if report.get("exported") else "already exported"
    click.echo(f"{settings.embedding_model} ({state}): {report['path']}")


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
    from engram.core.knowledge_models import GLOBAL_OWNER

    settings = _settings()
    _configure_logging("WARNING")

    async def run(memory: MemoryService) -> IngestReport:
        knowledge = _knowledge(memory)
        owner = GLOBAL_OWNER if user_id is None else memory.user_key(user_id)
        with click.progressbar(length=1, label="ingesting", file=sys.stderr, show_pos=True) as bar:

            async def progress(done: float, total: float, message: str) -> None:
                bar.length = int(total)
                bar.update(int(done) - bar.pos)

            return await knowledge.ingest_paths(
                owner, list(paths), include=list(include), exclude=list(exclude), progress=progress
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
        return await _knowledge(memory).sources(None if user_id is None else memory.user_key(user_id))

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
    from engram.core.knowledge_models import GLOBAL_OWNER

    settings = _settings()
    _configure_logging("WARNING")
    # A path given relative to here names the same source as its absolute form used at ingest.
    candidate = Path(source).expanduser()
    if not candidate.is_absolute():
        source = str(candidate.resolve())

    async def run(memory: MemoryService) -> SourceRemoved:
        owner = GLOBAL_OWNER if user_id is None else memory.user_key(user_id)
        return await _knowledge(memory).remove_source(owner, source)

    _echo_json(_with_memory(settings, run).model_dump(mode="json"))


def _knowledge(memory: MemoryService) -> KnowledgeService:
    if memory.knowledge is None:
        raise click.ClickException("knowledge memory is not available")
    return memory.knowledge


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


@cli.command()
def stats() -> None:
    """Show counts and sizes per memory tier."""
    settings = _settings()
    _configure_logging("WARNING")
    from engram.embeddings.lazy import lazy_embedder

    # Counting needs the stores, not the model: open them with the model's id and size, read from its config.
    model = lazy_embedder(
        settings.embedding_model, backend=settings.embedding_backend, load=lambda: _embedder(settings)
    )

    async def collect(memory: MemoryService) -> dict[str, object]:
        tiers = await memory.tier_stats()
        return {
            "data_dir": str(settings.data_dir),
            "embedding_model": memory.embedder.model_id,
            **{name: tier.model_dump() for name, tier in tiers.items()},
        }

    _echo_json(_with_memory(settings, collect, embedder=model))


def _embedder(settings: Settings) -> Embedder:
    """The configured embedding model, loaded."""
    from engram.embeddings import load_embedder

    return load_embedder(
        settings.embedding_model,
        device=settings.embedding_device,
        threads=settings.embedding_threads,
        backend=settings.embedding_backend,
        cache_dir=settings.model_cache_dir,
    )


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def doctor(as_json: bool) -> None:
    """Check the data directory: read every file of every store and say what is damaged and what to do.

    Reads only (nothing is changed or repaired); safe while a server runs. Exits with 1 when something is damaged.
    """
    from engram.storage.doctor import Layout, examine

    settings = _settings()
    _configure_logging("WARNING")
    layout = Layout(
        data_dir=settings.data_dir,
        long_term_dir=settings.long_term_dir,
        knowledge_dir=settings.knowledge_dir,
        session_cache_dir=settings.session_cache_dir,
        key_file=settings.user_key_file,
        key_from_environment=settings.user_id_key is not None,
    )
    findings = examine(layout)
    damaged = any(f.status == "damaged" for f in findings)
    if as_json:
        _echo_json(
            {"data_dir": str(settings.data_dir), "damaged": damaged, "components": [f.as_dict() for f in findings]}
        )
    else:
        for f in findings:
            click.echo(f"{f.status.upper():8} {f.component:17} {f.path}: {f.detail}")
            if f.action:
                click.echo(f"{'':8} {'':17} what to do: {f.action}")
    if damaged:
        sys.exit(1)


@cli.command("eval")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the report as JSON here.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Keep the ingested store here.")
@click.option("--conversations", type=int, help="Only the first N conversations.")
@click.option("--fusion", type=click.Choice(["convex", "rrf", "vector", "keyword"]), help="Override the fusion.")
@click.option("--keyword-weight", type=float, help="Override ENGRAM_RECALL_KEYWORD_WEIGHT.")
@click.option("--neighbor-weight", type=float, help="Override ENGRAM_RECALL_NEIGHBOR_WEIGHT.")
@click.option(
    "--ranking",
    "ranking",
    multiple=True,
    metavar="NAME=NUMBER",
    help="Override a ranking signal for this run, e.g. session_decay=0.9 (repeatable; names as in the report).",
)
@click.option(
    "--compare",
    "compare",
    multiple=True,
    metavar="NAME=NUMBER[,NAME=NUMBER...]",
    help="Also score this ranking variant from the same ingest, e.g. neighbor_cap=0 (repeatable).",
)
@click.option("--every", type=click.IntRange(min=1), default=1, help="Only every K-th conversation (a fixed sample).")
@click.option("--per-turn", is_flag=True, help="Ingest with one remember per turn instead of remember_many batches.")
@click.option(
    "--embedding-cache",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Keep the model's vectors in this file and reuse them in later runs on the same texts (benchmarks only).",
)
def eval_(
    path: Path,
    out: Path | None,
    data_dir: Path | None,
    conversations: int | None,
    fusion: str | None,
    keyword_weight: float | None,
    neighbor_weight: float | None,
    ranking: tuple[str, ...],
    compare: tuple[str, ...],
    every: int,
    per_turn: bool,
    embedding_cache: Path | None,
) -> None:
    """Measure retrieval on a benchmark file (LoCoMo or LongMemEval, shared format): ingest with remember, ask with
    recall (at each question's date if it has one), and print the scores overall and per question type.

    Runs in a fresh temporary store unless --data-dir is given; your own memories are never touched.
    """
    settings = _settings()
    _configure_logging("WARNING")
    _cap_native_threads(settings)
    from engram.evaluation import run_evaluation

    overrides = {
        "recall_fusion": fusion,
        "recall_keyword_weight": keyword_weight,
        "recall_neighbor_weight": neighbor_weight,
    }
    settings = settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    with _clean_errors():
        report, table = run_evaluation(
            settings,
            path,
            data_dir=data_dir,
            limit=conversations,
            out=out,
            ranking=_ranking_overrides(ranking),
            variants=[_ranking_overrides(tuple(spec.split(","))) for spec in compare],
            per_turn=per_turn,
            every=every,
            embedding_cache=embedding_cache,
        )
    click.echo(table)
    if out:
        click.echo(f"report written to {out}", err=True)
    del report


def _ranking_overrides(pairs: tuple[str, ...]) -> dict[str, float]:
    """`--ranking name=number` pairs as RankingPolicy overrides; a bad pair is a usage error naming what is accepted."""
    from dataclasses import fields

    from engram.core.ranking import RankingPolicy

    numeric = {f.name for f in fields(RankingPolicy) if f.name != "fusion"}
    overrides: dict[str, float] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = None
        if name not in numeric or number is None:
            raise click.BadParameter(f"{pair!r}: give NAME=NUMBER with NAME one of {', '.join(sorted(numeric))}.")
        overrides[name] = int(number) if name in {"rrf_k", "candidates", "session_free_hits"} else number
    return overrides


@cli.group()
def token() -> None:
    """Manage the bearer tokens of the HTTP transports (only their hashes are stored)."""


@token.command("create")
@click.option("--user", "users", multiple=True, help="A user id the token may act for (repeatable).")
@click.option("--agent", help="The agent id the token acts as (its writes are attributed to it).")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(["read", "write", "admin", "metrics"]),
    help="read, write, admin (any user, everything) or metrics (/metrics only); repeatable.",
)
@click.option("--name", help="A note saying what the token is for.")
@click.option("--expires-days", type=click.FloatRange(min=0, min_open=True), help="Expire after this many days.")
@click.option("--env", "for_env", is_flag=True, help="Do not store it; print the record for ENGRAM_TOKENS instead.")
def token_create(
    users: tuple[str, ...],
    agent: str | None,
    scopes: tuple[str, ...],
    name: str | None,
    expires_days: float | None,
    for_env: bool,
) -> None:
    """Create a token and print its secret once (it is not stored and cannot be shown again)."""
    from datetime import UTC, datetime, timedelta

    from engram.auth.tokens import TokenFile

    settings = _settings()
    expires_at = None if expires_days is None else datetime.now(UTC) + timedelta(days=expires_days)
    with _clean_errors():
        if for_env:
            record, secret = _unstored_token(users, agent, scopes, name, expires_at)
        else:
            record, secret = TokenFile(settings.token_file).create(
                users=users, scopes=scopes, agent=agent, name=name, expires_at=expires_at
            )
    click.echo(secret)
    if for_env:
        click.echo(json.dumps([record.model_dump(mode="json", exclude_none=True)]))
        click.echo("Add the record (second line) to ENGRAM_TOKENS; the secret (first line) is shown once.", err=True)
    else:
        click.echo(f"Token {record.id} stored in {settings.token_file}; the secret above is shown once.", err=True)


def _unstored_token(
    users: tuple[str, ...], agent: str | None, scopes: tuple[str, ...], name: str | None, expires_at: object
) -> tuple[Any, str]:
    """A token record and secret that go nowhere but the terminal (for ENGRAM_TOKENS)."""
    import secrets
    from datetime import UTC, datetime

    from engram.auth.tokens import TokenRecord, hash_secret, new_secret
    from engram.core.errors import InvalidInput

    secret = new_secret()
    try:
        record = TokenRecord.model_validate(
            {
                "id": "tok_" + secrets.token_hex(6),
                "hash": hash_secret(secret),
                "users": list(dict.fromkeys(users)),
                "agent": agent,
                "scopes": sorted(set(scopes)),
                "name": name,
                "created_at": datetime.now(UTC),
                "expires_at": expires_at,
            }
        )
    except ValidationError as exc:
        raise InvalidInput("token", exc.errors()[0]["msg"]) from exc
    return record, secret


@token.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def token_list(as_json: bool) -> None:
    """List the tokens (never their secrets): the file's, then those from ENGRAM_TOKENS."""
    from engram.auth.tokens import TokenFile, parse_env_tokens

    settings = _settings()
    with _clean_errors():
        sources = [("file", r) for r in TokenFile(settings.token_file).read()]
        sources += [("env", r) for r in parse_env_tokens(settings.tokens)]
    if as_json:
        _echo_json([{"source": src, **r.model_dump(mode="json", exclude={"hash"})} for src, r in sources])
        return
    if not sources:
        click.echo("no tokens", err=True)
        return
    for src, r in sources:
        expires = f" expires {r.expires_at:%Y-%m-%d %H:%M}Z" if r.expires_at else ""
        agent = f" agent={r.agent}" if r.agent else ""
        label = f"  ({r.name})" if r.name else ""
        click.echo(
            f"{r.id}  [{src}] scopes={','.join(r.scopes)} users={','.join(r.users) or '-'}{agent}{expires}{label}"
        )


@token.command("revoke")
@click.argument("token_id")
def token_revoke(token_id: str) -> None:
    """Revoke the token TOKEN_ID; a running server refuses it from its next request on."""
    from engram.auth.tokens import TokenFile

    settings = _settings()
    with _clean_errors():
        removed = TokenFile(settings.token_file).revoke(token_id)
    if not removed:
        raise click.ClickException(
            f"no token {token_id!r} in {settings.token_file} (ENGRAM_TOKENS entries are removed there)"
        )
    click.echo(f"revoked {token_id}", err=True)


def main() -> None:
    """Entry point of the `engram` console script."""
    cli()


def _register_commands() -> None:
    """Add the commands that live in their own modules (hooks, projects, export and import)."""
    from engram.hooks.command import hook
    from engram.portability.commands import export, import_
    from engram.project_commands import forget_project

    for command in (hook, export, import_, forget_project):
        cli.add_command(command)


_register_commands()
