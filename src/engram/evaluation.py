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
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from engram import __version__
from engram.config import Settings
from engram.core.errors import InvalidInput
from engram.core.models import Role
from engram.core.service import MemoryService

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


async def evaluate(
    service: MemoryService,
    conversations: Iterable[Conversation],
    on_step: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Ingest each conversation turn by turn with `remember`, ask every question with `recall`, score the ranks.

    Each conversation is its own user, so questions are answered from their own conversation only. `on_step`
    is called once per ingested turn ("ingest") and per question ("query") for progress display.
    """
    overall = _Scores()
    per_category: defaultdict[str, _Scores] = defaultdict(_Scores)
    ingest_times: list[float] = []
    query_times: list[float] = []
    query_cpu: list[float] = []
    skipped = 0
    questions_asked = 0
    for conversation in conversations:
        user = _user_id(conversation.conv_id)
        turns_of_memory: dict[str, list[str]] = defaultdict(list)
        session_of_turn: dict[str, str] = {}
        for turn in conversation.turns:
            started = time.perf_counter()
            speaker = str(turn.get("speaker", ""))
            role = _ROLES.get(speaker.casefold())
            # As a client logs a turn: its role, the speaker's name when there is one, and when it was said.
            metadata = {"turn_id": str(turn["id"])} if role else {"speaker": speaker, "turn_id": str(turn["id"])}
            stored = await service.remember(
                user,
                turn_content(turn),
                session_id=_user_id(str(turn["session_id"])),
                role=role or Role.USER,
                metadata=metadata,
                occurred_at=datetime.fromisoformat(turn["timestamp"]) if turn.get("timestamp") else None,
            )
            ingest_times.append(time.perf_counter() - started)
            turns_of_memory[stored.id].append(str(turn["id"]))
            session_of_turn[str(turn["id"])] = str(turn["session_id"])
            if on_step:
                on_step("ingest")

        for question in conversation.questions:
            started, cpu = time.perf_counter(), time.process_time()
            result = await service.recall(user, question.text, top_k=RECALL_DEPTH, as_of=question.asked_at)
            query_times.append(time.perf_counter() - started)
            query_cpu.append(time.process_time() - cpu)
            questions_asked += 1
            if on_step:
                on_step("query")
            if not question.evidence_turns:
                skipped += 1
                continue
            ranked_turns = [t for hit in result.memories for t in turns_of_memory.get(hit.memory.id, [])]
            ranked_sessions = list(dict.fromkeys(session_of_turn[t] for t in ranked_turns))
            for scores in (overall, per_category[question.category]):
                _score_ranking("turn", ranked_turns, question.evidence_turns, scores)
                _score_ranking("session", ranked_sessions, question.evidence_sessions, scores)

    return {
        "questions": questions_asked,
        "questions_scored": questions_asked - skipped,
        "questions_without_evidence": skipped,
        "overall": overall.means(),
        "per_category": {name: scores.means() for name, scores in sorted(per_category.items())},
        "timings": {
            "ingest": _timing(ingest_times),
            "query": _timing(query_times),
            # In-process CPU of a recall (all threads of this process), the cost that competes with other work.
            "query_cpu": _timing(query_cpu),
        },
    }


def file_digest(path: Path) -> str:
    """SHA-256 of a file, to tie reported numbers to the exact data set."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def format_table(report: dict[str, Any]) -> str:
    """Render the headline metrics, overall and per category, as a fixed-width table."""
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
    rows.append("")
    rows.append(
        f"ingest: {timings['ingest']['count']} turns in {timings['ingest']['total_s']:.1f} s "
        f"(median {timings['ingest']['median_ms']} ms, p95 {timings['ingest']['p95_ms']} ms); "
        f"query: {timings['query']['count']} in {timings['query']['total_s']:.1f} s "
        f"(median {timings['query']['median_ms']} ms, p95 {timings['query']['p95_ms']} ms); "
        f"recall CPU median {timings['query_cpu']['median_ms']} ms"
    )
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
) -> tuple[dict[str, Any], str]:
    """Evaluate `settings`' retrieval on `path` in a fresh store; return the JSON report and its table."""
    import anyio

    from engram.runtime import open_memory, ranking_from

    conversations = load_conversations(path, limit)
    steps = sum(len(c.turns) + len(c.questions) for c in conversations)
    with tempfile.TemporaryDirectory(prefix="engram-eval-") as scratch:
        store_dir = data_dir or Path(scratch)
        settings = settings.model_copy(update={"data_dir": store_dir})
        started = time.perf_counter()
        service = open_memory(settings)
        if ranking:
            # Experiments on signals without a setting of their own (period and order weights, session decay).
            service.ranking = replace(service.ranking, **ranking)
        load_s = time.perf_counter() - started
        try:
            with _progress(steps, show_progress) as advance:
                report = anyio.run(evaluate, service, conversations, advance)
        finally:
            service.close()
    report = {
        "engram_version": __version__,
        "dataset": {"path": str(path), "sha256": file_digest(path), "conversations": len(conversations)},
        "embedding_model": service.embedder.model_id,
        "ranking": asdict(replace(ranking_from(settings), **(ranking or {}))),
        "model_load_s": round(load_s, 2),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "finished_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        **report,
    }
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
    return report, format_table(report)


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Callable[[str], None]]:
    """A progress bar on stderr (stdout carries the table), advanced once per step."""
    if not enabled:
        yield lambda _: None
        return
    import click

    with click.progressbar(length=total, label="ingest + queries", file=sys.stderr) as bar:
        yield lambda _: bar.update(1)
