"""The `engram` commands that administer an installation: prepare, stats, doctor, eval and the token group."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from pydantic import ValidationError

from engram.cli import (
    _cap_native_threads,
    _clean_errors,
    _configure_logging,
    _echo_json,
    _embedder,
    _settings,
    _with_memory,
)

if TYPE_CHECKING:
    from engram.core.service import MemoryService


@click.command()
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


@click.command()
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


@click.command()
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
        graph_dir=settings.graph_dir,
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


@click.command("eval")
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
    """Measure retrieval on a benchmark file (LoCoMo or LongMemEval, shared format): ingest with remember_many, ask with
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
        whole = {"rrf_k", "candidates", "session_free_hits", "session_cap"}
        overrides[name] = int(number) if name in whole else number
    return overrides


@click.group()
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


COMMANDS = (prepare, stats, doctor, eval_, token)
