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


def _with_memory(settings: Settings, action: Callable[[MemoryService], Awaitable[T]]) -> T:
    """Open the memory stack, run `action` on it, and close it again."""
    import anyio

    from engram.runtime import open_memory

    async def run() -> T:
        service = await anyio.to_thread.run_sync(lambda: open_memory(settings))
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
@click.version_option(package_name="engram-mcp")
def cli() -> None:
    """Engram: persistent memory for MCP assistants."""


@cli.command()
@click.option("--transport", type=click.Choice(["stdio"]), default="stdio", show_default=True)
def serve(transport: str) -> None:
    """Run the MCP server (stdio: for Claude Desktop, Cursor, VS Code, Claude Code)."""
    settings = _settings()
    _configure_logging(settings.log_level)
    _cap_native_threads(settings)
    from engram.server.app import build_server

    logging.getLogger("engram").info("Engram serving over %s; data in %s", transport, settings.data_dir)
    build_server(settings).run()
    # The stores are closed by now. Skipping the final garbage collection of torch's and LanceDB's large heaps
    # lets the process exit in a fraction of a second, well inside a client's shutdown grace period.
    gc.freeze()


@cli.command()
def prepare() -> None:
    """Export the embedding model to ONNX now, so that the first server start is fast (`make install` runs it).

    Exports the configured model (ENGRAM_EMBEDDING_MODEL) into the models directory (ENGRAM_MODELS_DIR, else
    <data dir>/models) in a child process, with its log on stderr; an intact export already there is kept.
    """
    settings = _settings()
    _configure_logging(settings.log_level)
    from engram.embeddings import HASH_MODEL

    if settings.embedding_model == HASH_MODEL or settings.embedding_backend == "torch":
        what = "the hash embedder" if settings.embedding_model == HASH_MODEL else "the torch backend"
        click.echo(f"nothing to prepare: {what} needs no export", err=True)
        return
    from engram.embeddings.onnx_cache import run_export

    if settings.models_dir is None:
        # Created owner-only here, as the server creates it: prepare may be the first to make the data directory.
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
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
def recall(user_id: str, query: str, top_k: int | None) -> None:
    """Show USER_ID's memories most relevant to QUERY."""
    settings = _settings()
    _configure_logging("WARNING")
    result = _with_memory(settings, lambda m: m.recall(user_id, query, top_k=top_k))
    for hit in result.memories:
        click.echo(f"{hit.score:6.3f}  {hit.memory.created_at:%Y-%m-%d}  {hit.memory.content}")
    if not result.memories:
        click.echo("no memories found", err=True)


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

    async def collect(memory: MemoryService) -> dict[str, object]:
        tiers = await memory.tier_stats()
        return {
            "data_dir": str(settings.data_dir),
            "embedding_model": memory.embedder.model_id,
            **{name: tier.model_dump() for name, tier in tiers.items()},
        }

    _echo_json(_with_memory(settings, collect))


@cli.command("eval")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the report as JSON here.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Keep the ingested store here.")
@click.option("--conversations", type=int, help="Only the first N conversations.")
@click.option("--fusion", type=click.Choice(["convex", "rrf", "vector", "keyword"]), help="Override the fusion.")
@click.option("--keyword-weight", type=float, help="Override ENGRAM_RECALL_KEYWORD_WEIGHT.")
@click.option("--neighbor-weight", type=float, help="Override ENGRAM_RECALL_NEIGHBOR_WEIGHT.")
def eval_(
    path: Path,
    out: Path | None,
    data_dir: Path | None,
    conversations: int | None,
    fusion: str | None,
    keyword_weight: float | None,
    neighbor_weight: float | None,
) -> None:
    """Measure retrieval on a benchmark file (LoCoMo format): ingest with remember, ask with recall.

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
        report, table = run_evaluation(settings, path, data_dir=data_dir, limit=conversations, out=out)
    click.echo(table)
    if out:
        click.echo(f"report written to {out}", err=True)
    del report


def main() -> None:
    """Entry point of the `engram` console script."""
    cli()
