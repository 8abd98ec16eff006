"""Retrieval evaluation on long-conversation benchmarks (LoCoMo format) through Engram's own remember/recall."""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from engram import __version__
from engram.config import Settings
from engram.core.errors import InvalidInput
from engram.core.models import MetadataValue, RememberItem, Role
from engram.core.service import MemoryService
from engram.embeddings.remembered import RememberedEmbedder

#: Ranks scored; recall@k for each, NDCG and MRR at the last.
KS = (1, 5, 10)
#: Hits asked of `recall` per question: enough distinct sessions for session-level metrics at 10.
RECALL_DEPTH = 50


@dataclass(frozen=True)
class Question:
    """One benchmark question with its gold evidence."""

    qid: str
    text: str
    category: str
    evidence_turns: frozenset[str]
    evidence_sessions: frozenset[str]
    #: When the question is asked (LongMemEval's question_date); None asks it now.
    asked_at: datetime | None = None


@dataclass(frozen=True)
class Conversation:
    """One haystack to ingest and the questions to ask of it."""

    conv_id: str
    turns: list[dict[str, Any]]
    questions: list[Question]


def load_conversations(path: Path, limit: int | None = None) -> list[Conversation]:
    """Read a `.jsonl` or `.jsonl.gz` file in the shared benchmark format; unknown fields are ignored."""
    opener = gzip.open if path.suffix == ".gz" else open
    conversations: list[Conversation] = []
    with opener(path, "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                questions = [
                    Question(
                        qid=q["qid"],
                        text=q["question"],
                        category=q.get("category", "all"),
                        evidence_turns=frozenset(q.get("evidence_turn_ids", [])),
                        evidence_sessions=frozenset(q.get("evidence_session_ids", [])),
                        asked_at=datetime.fromisoformat(q["question_date"]) if q.get("question_date") else None,
                    )
                    for q in row["questions"]
                ]
                conversations.append(Conversation(str(row["conv_id"]), list(row["turns"]), questions))
            except (KeyError, TypeError, ValueError) as exc:  # ValueError: bad JSON or a bad date
                raise InvalidInput("path", f"line {number} of {path} is not in the benchmark format ({exc}).") from exc
            if limit is not None and len(conversations) >= limit:
                break
    return conversations


def turn_content(turn: dict[str, Any]) -> str:
    """What a benchmark turn says, including a shared image's caption (it is part of the conversation)."""
    caption = turn.get("image_caption")
    return f"{turn['text']} [shares image: {caption}]" if caption else str(turn["text"])


#: Speakers that are a role rather than a name (LongMemEval's): passed as the turn's role, as a chat client would.
_ROLES = {"user": Role.USER, "assistant": Role.ASSISTANT}


def _user_id(conv_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@+:-]", "-", conv_id).lstrip("_.@+:-")[:128] or "conversation"


@dataclass
class _Scores:
    values: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def add(self, name: str, value: float) -> None:
        self.values[name].append(value)

    def means(self) -> dict[str, float]:
        means = {name: round(statistics.fmean(v), 4) for name, v in sorted(self.values.items()) if v}
        return {"questions": len(self.values.get("turn_mrr", [])), **means}


def _dcg(relevant: Sequence[bool]) -> float:
    return sum(1.0 / math.log2(rank + 2) for rank, hit in enumerate(relevant) if hit)


def _score_ranking(prefix: str, ranked: Sequence[str], gold: frozenset[str], into: _Scores) -> None:
    """Recall@k, all-found@10, NDCG@10 and MRR of one ranked list of unique items against a gold set."""
    for k in KS:
        into.add(f"{prefix}_recall@{k}", len(gold.intersection(ranked[:k])) / len(gold))
    into.add(f"{prefix}_all@{KS[-1]}", float(gold.issubset(ranked[: KS[-1]])))
    if prefix == "turn" and ranked:
        # How much of what an assistant reads is evidence: the share of the top-10 slots that evidence turns take.
        top = ranked[: KS[-1]]
        into.add("evidence_share@10", len(gold.intersection(top)) / len(top))
    depth = KS[-1]
    ideal = _dcg([True] * min(len(gold), depth))
    into.add(f"{prefix}_ndcg@{depth}", _dcg([item in gold for item in ranked[:depth]]) / ideal)
    first = next((rank for rank, item in enumerate(ranked, start=1) if item in gold), None)
    into.add(f"{prefix}_mrr", 0.0 if first is None else 1.0 / first)


def _percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _timing(samples: Sequence[float]) -> dict[str, float]:
    return {
        "count": len(samples),
        "total_s": round(sum(samples), 3),
        "median_ms": round(1000 * statistics.median(samples), 2),
        "p95_ms": round(1000 * _percentile(samples, 0.95), 2),
    }


def _remember_item(turn: dict[str, Any]) -> RememberItem:
    """A benchmark turn as a client logs it: its session, role, the speaker's name when there is one, and its date."""
    speaker = str(turn.get("speaker", ""))
    role = _ROLES.get(speaker.casefold())
    metadata: dict[str, MetadataValue] = {"turn_id": str(turn["id"])}
    if role is None:
        metadata["speaker"] = speaker
    return RememberItem(
        content=turn_content(turn),
        session_id=_user_id(str(turn["session_id"])),
        role=role or Role.USER,
        metadata=metadata,
        occurred_at=datetime.fromisoformat(turn["timestamp"]) if turn.get("timestamp") else None,
    )


async def _ingest(
    service: MemoryService, user: str, turns: Sequence[dict[str, Any]], per_turn: bool, batch: int
) -> list[str]:
    """Store the turns in order, as a client importing the history would; return each turn's memory id.

    Batched (the default), they go in through `remember_many`, up to `batch` turns a call; `per_turn` sends one
    `remember` each instead (what a live client does; the same memories, many times slower).
    """
    items = [_remember_item(turn) for turn in turns]
    if per_turn:
        ids = []
        for item in items:
            stored = await service.remember(
                user,
                item.content,
                session_id=item.session_id,
                role=item.role,
                metadata=item.metadata,
                occurred_at=item.occurred_at,
            )
            ids.append(stored.id)
        return ids
    ids = []
    for start in range(0, len(items), batch):
        ids.extend(result.id for result in await service.remember_many(user, items[start : start + batch]))
    return ids


def _variant_name(overrides: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in overrides.items()) or "default"


async def evaluate(
    service: MemoryService,
    conversations: Iterable[Conversation],
    on_step: Callable[[str], None] | None = None,
    *,
    variants: Sequence[Mapping[str, Any]] = ({},),
    per_turn: bool = False,
) -> dict[str, Any]:
    """Ingest each conversation once, ask every question with `recall` under each ranking variant, score the ranks.

    Each conversation is its own user, so questions are answered from their own conversation only. Each variant
    is a set of overrides of the service's ranking policy; the first one's scores are the report's own, and all
    are under "variants". `on_step` is called once per ingested conversation ("ingest") and per question asked
    ("query") for progress display.
    """
    base = service.ranking
    policies = {_variant_name(v): replace(base, **v) for v in variants}
    overall = {name: _Scores() for name in policies}
    per_category: dict[str, defaultdict[str, _Scores]] = {name: defaultdict(_Scores) for name in policies}
    query_times: dict[str, list[float]] = {name: [] for name in policies}
    query_cpu: dict[str, list[float]] = {name: [] for name in policies}
    ingest_s = 0.0
    turns_stored = 0
    skipped = 0
    questions_asked = 0
    try:
        for conversation in conversations:
            user = _user_id(conversation.conv_id)
            started = time.perf_counter()
            ids = await _ingest(service, user, conversation.turns, per_turn, service.policy.max_batch)
            ingest_s += time.perf_counter() - started
            turns_stored += len(ids)
            turns_of_memory: dict[str, list[str]] = defaultdict(list)
            session_of_turn: dict[str, str] = {}
            for turn, memory in zip(conversation.turns, ids, strict=True):
                turns_of_memory[memory].append(str(turn["id"]))
                session_of_turn[str(turn["id"])] = str(turn["session_id"])
            if on_step:
                on_step("ingest")

            for question in conversation.questions:
                questions_asked += 1
                for name, policy in policies.items():
                    service.ranking = policy
                    started, cpu = time.perf_counter(), time.process_time()
                    result = await service.recall(user, question.text, top_k=RECALL_DEPTH, as_of=question.asked_at)
                    query_times[name].append(time.perf_counter() - started)
                    query_cpu[name].append(time.process_time() - cpu)
                    if not question.evidence_turns:
                        continue
                    ranked_turns = [t for hit in result.memories for t in turns_of_memory.get(hit.memory.id, [])]
                    ranked_sessions = list(dict.fromkeys(session_of_turn[t] for t in ranked_turns))
                    for scores in (overall[name], per_category[name][question.category]):
                        _score_ranking("turn", ranked_turns, question.evidence_turns, scores)
                        _score_ranking("session", ranked_sessions, question.evidence_sessions, scores)
                skipped += not question.evidence_turns
                if on_step:
                    on_step("query")
    finally:
        service.ranking = base

    results = {
        name: {
            "ranking": asdict(policy),
            "overall": overall[name].means(),
            "per_category": {c: scores.means() for c, scores in sorted(per_category[name].items())},
            # In-process CPU of a recall (all threads of this process), the cost that competes with other work.
            "timings": {"query": _timing(query_times[name]), "query_cpu": _timing(query_cpu[name])},
        }
        for name, policy in policies.items()
    }
    first = next(iter(results.values()))
    return {
        "questions": questions_asked,
        "questions_scored": questions_asked - skipped,
        "questions_without_evidence": skipped,
        "overall": first["overall"],
        "per_category": first["per_category"],
        "timings": {
            "ingest": {
                "turns": turns_stored,
                "path": "remember" if per_turn else "remember_many",
                "total_s": round(ingest_s, 3),
                "per_turn_ms": round(1000 * ingest_s / max(1, turns_stored), 2),
            },
            **first["timings"],
        },
        "variants": results,
    }


def file_digest(path: Path) -> str:
    """SHA-256 of a file, to tie reported numbers to the exact data set."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


#: The goal metrics of issue #18, in the compact comparison of ranking variants.
_GOALS = ("turn_recall@10", "turn_all@10", "evidence_share@10", "session_recall@5")


def _goal_cell(means: Mapping[str, float]) -> str:
    return " / ".join(f"{means.get(goal, math.nan):.3f}" for goal in _GOALS)


def format_table(report: dict[str, Any]) -> str:
    """Render the headline metrics, overall and per category, as a fixed-width table (and compare the variants)."""
    columns = [
        "turn_recall@1",
        "turn_recall@5",
        "turn_recall@10",
        "turn_all@10",
        "evidence_share@10",
        "turn_ndcg@10",
        "turn_mrr",
        "session_recall@1",
        "session_recall@5",
        "session_recall@10",
        "session_ndcg@10",
        "session_mrr",
    ]
    header = f"{'':<25} {'questions':>9} " + " ".join(f"{c.replace('_recall', ' R'):>16}" for c in columns)
    rows = [header, "-" * len(header)]
    for name, means in [("overall", report["overall"]), *report["per_category"].items()]:
        cells = " ".join(f"{means.get(c, float('nan')):>16.3f}" for c in columns)
        rows.append(f"{name:<25} {int(means['questions']):>9} {cells}")
    timings = report["timings"]
    ingest = timings["ingest"]
    rows.append("")
    rows.append(
        f"ingest: {ingest['turns']} turns in {ingest['total_s']:.1f} s through {ingest['path']} "
        f"({ingest['per_turn_ms']} ms a turn); "
        f"query: {timings['query']['count']} in {timings['query']['total_s']:.1f} s "
        f"(median {timings['query']['median_ms']} ms, p95 {timings['query']['p95_ms']} ms); "
        f"recall CPU median {timings['query_cpu']['median_ms']} ms"
    )
    variants = report.get("variants", {})
    if len(variants) > 1:
        rows.append("")
        rows.append("ranking variants, one ingest: turn R@10 / all evidence in top 10 / evidence share / session R@5")
        categories = ["overall", *report["per_category"]]
        rows.append(f"{'variant':<40} " + " ".join(f"{c:>27}" for c in categories) + f" {'CPU ms':>7}")
        for name, result in variants.items():
            scored = {"overall": result["overall"], **result["per_category"]}
            cells = " ".join(f"{_goal_cell(scored.get(c, {})):>27}" for c in categories)
            rows.append(f"{name:<40} {cells} {result['timings']['query_cpu']['median_ms']:>7}")
    return "\n".join(rows)


def run_evaluation(
    settings: Settings,
    path: Path,
    *,
    data_dir: Path | None = None,
    limit: int | None = None,
    out: Path | None = None,
    show_progress: bool = True,
    ranking: dict[str, Any] | None = None,
    variants: Sequence[dict[str, Any]] = (),
    per_turn: bool = False,
    every: int = 1,
    embedding_cache: Path | None = None,
) -> tuple[dict[str, Any], str]:
    """Evaluate `settings`' retrieval on `path` in a fresh store; return the JSON report and its table.

    `ranking` overrides the ranking policy; each of `variants` overrides it further and is scored from the same
    ingest. `every` keeps every k-th conversation (a fixed sample across the file), `limit` the first of those.
    `embedding_cache` keeps the model's vectors in that file, so that a later run on the same texts reuses them.
    """
    import anyio

    from engram.runtime import open_memory, ranking_from

    if every < 1:
        raise InvalidInput("every", f"must be 1 or more, got {every}.")
    conversations = load_conversations(path, None if every > 1 else limit)[::every][:limit]
    steps = sum(1 + len(c.questions) for c in conversations)
    with tempfile.TemporaryDirectory(prefix="engram-eval-") as scratch:
        store_dir = data_dir or Path(scratch)
        settings = settings.model_copy(update={"data_dir": store_dir})
        started = time.perf_counter()
        remembered = None if embedding_cache is None else _remembered_embedder(settings, embedding_cache)
        service = open_memory(settings, remembered)
        if ranking:
            # Experiments on signals without a setting of their own (period and order weights, session decay).
            service.ranking = replace(service.ranking, **ranking)
        load_s = time.perf_counter() - started
        try:
            with _progress(steps, show_progress) as advance:
                report = anyio.run(
                    partial(evaluate, variants=[{}, *variants], per_turn=per_turn), service, conversations, advance
                )
        finally:
            service.close()
            if remembered is not None:
                remembered.close()
    if remembered is not None:
        report["timings"]["ingest"]["embedding_cache"] = {"hits": remembered.hits, "misses": remembered.misses}
    report = {
        "engram_version": __version__,
        "dataset": {
            "path": str(path),
            "sha256": file_digest(path),
            "conversations": len(conversations),
            "every": every,
            "conv_ids": [c.conv_id for c in conversations],
        },
        "embedding_model": service.embedder.model_id,
        "ranking": asdict(replace(ranking_from(settings), **(ranking or {}))),
        "model_load_s": round(load_s, 2),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        },
        "finished_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        **report,
    }
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
    return report, format_table(report)


def _remembered_embedder(settings: Settings, path: Path) -> RememberedEmbedder:
    """The configured model, its vectors kept in `path` (see embeddings/remembered.py)."""
    from engram.runtime import configured_embedder

    return RememberedEmbedder(configured_embedder(settings), path)


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Callable[[str], None]]:
    """A progress bar on stderr (stdout carries the table), advanced once per conversation ingested and question."""
    if not enabled:
        yield lambda _: None
        return
    import click

    with click.progressbar(length=total, label="ingest + queries", file=sys.stderr) as bar:
        yield lambda _: bar.update(1)
