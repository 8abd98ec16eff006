"""How far can the signals Engram has go on long histories? Per evidence turn, its rank under each signal, and ceilings.

Issue #18 asks LoCoMo and LongMemEval for more than the shipped ranking reaches. This script ingests a benchmark
file through `engram eval`'s own path (`engram.evaluation`: the same loaders, `remember_many` batches, real LanceDB
stores) and, for every question, ranks the user's memories under each signal recall has:

- `bm25`: the keyword search alone (BM25 over the index text), `DEPTH` deep;
- `dense`: MiniLM cosine similarity alone (each memory's own vector);
- `dense_passages`: the vector search recall runs (long memories scored by their best passage, plus the period a
  question names);
- `feedback`: that list after pseudo-relevance feedback (core/feedback.py);
- `fused`: convex fusion of feedback and BM25 with neighbour loans, dates and priors (core/ranking.py), before the
  re-orderings that follow it;
- `shipped`: `recall` as shipped (50 deep, the most it returns), and each `--compare`-style variant of it.

From the evidence turns' ranks it reports, overall and per category:

- each signal's turn recall at 10, 20, 50 and 100;
- the oracle of fusion: the share of evidence turns in the top K of at least one signal (K = 10, 20, 50, 100);
- a perfect re-ranker of the union of every signal's top 50: turn R@10 and all evidence in the top 10 if the
  evidence of that union came first (the most any re-ordering of these candidates can reach);
- the best per-question choice among the ranking variants (an oracle that picks the variant for each question);
- `cooccur` (optional, `--expansion`): BM25 with the question widened by the words that co-occur most with its
  words in the user's own turns (an LLM-free query expansion from the stored corpus), as one more signal.

Run from the repository root (on the shared 2-core machine at load average 3-6, with a cold embedding cache: LoCoMo
8 minutes, LongMemEval every sixth haystack 13; a warm cache mostly saves the LongMemEval embedding):

    .venv/bin/python benchmarks/retrieval_ceiling.py ../shared/bench/locomo10.jsonl \
        --embedding-cache /tmp/engram-vectors.sqlite --out benchmarks/results/ceiling-locomo.json
    .venv/bin/python benchmarks/retrieval_ceiling.py ../shared/bench/longmemeval_s_dev.jsonl.gz --every 6 \
        --embedding-cache /tmp/engram-vectors.sqlite --out benchmarks/results/ceiling-longmemeval.json

It prints the tables and writes them, with every evidence turn's ranks, as JSON; `--report FILE` prints the tables
of such a JSON file again (without ingesting).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from engram.config import Settings
from engram.core.asked_at import asked_at
from engram.core.feedback import with_feedback
from engram.core.filters import MemoryFilters
from engram.core.ports import Candidate
from engram.core.ranking import _normalised, fuse
from engram.core.retrieval import MemoryReader, _Searched
from engram.core.service import MemoryService
from engram.evaluation import (
    RECALL_DEPTH,
    Conversation,
    _ingest,
    _remembered_embedder,
    _user_id,
    file_digest,
    load_conversations,
    turn_content,
)

#: How deep each raw signal is read; the oracle's K values go up to it.
DEPTH = 100
ORACLE_KS = (10, 20, 50, 100)
#: The perfect re-ranker orders the union of every signal's top this many.
UNION_DEPTH = 50
#: Ranking variants of `recall` (as `engram eval --compare` takes them), for the best-per-question bound.
VARIANTS: dict[str, dict[str, Any]] = {
    "session_cap=0": {"session_cap": 0},
    "session_heads=0": {"session_heads": 0},
    "feedback_hits=0": {"feedback_hits": 0},
    "passages=0": {"passages": 0.0},
    "neighbor_weight=0": {"neighbor_weight": 0.0},
    "assistant_share=1": {"assistant_share": 1.0},
    "speaker_lift=0": {"speaker_lift": 0.0},
    "newer_first=0": {"newer_first": 0},
    "keyword_weight=0.3": {"keyword_weight": 0.3},
    "keyword_weight=0.8": {"keyword_weight": 0.8},
    "fusion=rrf": {"fusion": "rrf"},
    "fusion=keyword": {"fusion": "keyword"},
    "fusion=vector": {"fusion": "vector"},
    "session_decay=0.7": {"session_decay": 0.7},
}
#: Weights of the co-occurrence expansion's BM25 added to the question's own (normalised) BM25 in the replayed recall.
EXPANSION_WEIGHTS = (0.2, 0.5)
#: Raw signals (not `recall` variants): the union that a re-ranker could order.
RAW = ("bm25", "dense", "dense_passages", "feedback", "fused")

_WORD = re.compile(r"[a-z0-9']+")
#: Words too common to say what a turn is about (expansion only; BM25 weighs them down itself).
_STOP_WORDS = """
    a an the and or but if of to in on at by for with from as is are was were be been being am do does
    did have has had i you he she it we they me him her us them my your his its our their this that
    these those what which who whom when where why how not no yes so too very can could will would
    should may might must just also about into over than then there here all any some more most other
    such only own same s t don't i'm it's that's really like get got go going know think yeah oh well
    one lot much many thing things
"""
_STOP = frozenset(_STOP_WORDS.split())


@dataclass
class QuestionRanks:
    """One question's evidence turns and the rank (1-based; None: beyond the list) of each under each signal."""

    qid: str
    category: str
    gold: list[str]
    ranks: dict[str, dict[str, int | None]] = field(default_factory=dict)
    #: Distinct memories in the union of the raw signals' and the shipped ranking's top `UNION_DEPTH`.
    union_size: int = 0


def _turn_ranks(
    ranked_memories: Iterable[str], turns_of_memory: Mapping[str, list[str]], gold: Iterable[str]
) -> dict[str, int | None]:
    """Each gold turn's rank in the turn list a memory ranking gives (a memory stands for all its identical turns)."""
    order: dict[str, int] = {}
    for memory in ranked_memories:
        for turn in turns_of_memory.get(memory, []):
            order.setdefault(turn, len(order) + 1)
    return {turn: order.get(turn) for turn in gold}


class Cooccurrence:
    """Which words appear in the same turns as others, over one user's turns: an expansion source without a model."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.turns = len(texts)
        self.df: Counter[str] = Counter()
        self.pairs: dict[str, Counter[str]] = defaultdict(Counter)
        for text in texts:
            words = {w for w in _WORD.findall(text.casefold()) if w not in _STOP and len(w) > 2}
            self.df.update(words)
            for word in words:
                self.pairs[word].update(words - {word})

    def expand(self, question: str, terms: int) -> list[str]:
        """The `terms` words most associated (pointwise mutual information, seen in 3+ turns) with the question's."""
        asked = {w for w in _WORD.findall(question.casefold()) if w not in _STOP and len(w) > 2}
        scores: dict[str, float] = defaultdict(float)
        for word in asked:
            seen = self.df.get(word, 0)
            if not seen:
                continue
            for other, together in self.pairs[word].items():
                if together < 2 or other in asked or self.df[other] < 3:
                    continue
                pmi = math.log(together * self.turns / (seen * self.df[other]))
                # Weighted by how often they co-occur, so one chance meeting of two rare words does not lead.
                scores[other] += max(0.0, pmi) * math.log1p(together)
        return sorted(scores, key=lambda w: -scores[w])[:terms]


async def _question_ranks(
    service: MemoryService,
    reader: MemoryReader,
    user: str,
    question: Any,
    turns_of_memory: Mapping[str, list[str]],
    expansion: Cooccurrence | None,
    expansion_terms: int,
    cpu: dict[str, list[float]],
) -> QuestionRanks:
    """Rank the user's memories for one question under every signal; keep the evidence turns' ranks."""
    ctx = service._ctx  # the real stores and policy, read as recall reads them
    gold = sorted(question.evidence_turns)
    out = QuestionRanks(question.qid, question.category, gold)
    key = ctx.user_key(user)
    asked = asked_at(question.text, MemoryFilters(), question.asked_at, ctx.clock())
    filters = asked.filters.seen_by(None)
    policy = service.ranking
    vector, searched = await reader._search_long_term(key, question.text, filters, DEPTH, asked.when)
    keyword, semantic = searched.keyword, searched.semantic
    dense: list[Candidate] = await ctx.run(
        lambda: ctx.long_term.vector_search(key, vector, filters, DEPTH, passages=False)
    )
    fed = with_feedback(semantic, keyword, policy, int(policy.feedback_hits), policy.feedback_weight, question.text)
    fused = fuse(fed, keyword, vector, policy, ctx.clock(), asked.when)
    union: set[str] = set()
    for name, ranking in (
        ("bm25", [c.memory.id for c in keyword]),
        ("dense", [c.memory.id for c in dense]),
        ("dense_passages", [c.memory.id for c in semantic]),
        ("feedback", [c.memory.id for c in fed]),
        ("fused", [h.memory.id for h in fused]),
    ):
        out.ranks[name] = _turn_ranks(ranking, turns_of_memory, gold)
        union.update(ranking[:UNION_DEPTH])
    if expansion is not None:
        wider = " ".join([question.text, *expansion.expand(question.text, expansion_terms)])
        found = await ctx.run(lambda: ctx.long_term.keyword_search(key, wider, filters, DEPTH))
        out.ranks["cooccur"] = _turn_ranks([c.memory.id for c in found], turns_of_memory, gold)
        # Realisable: the shipped pipeline (feedback, fusion, re-orderings) with the expanded search's normalised
        # BM25 added to the keyword list's at each weight, from the same 50-deep searches recall runs.
        limit = max(policy.candidates, RECALL_DEPTH)
        _, shallow = await reader._search_long_term(key, question.text, filters, RECALL_DEPTH, asked.when)
        for weight in EXPANSION_WEIGHTS:
            widened = _Searched(
                semantic=list(shallow.semantic), keyword=_blended(shallow.keyword, found[:limit], weight)
            )
            hits, _ = reader._ranked(user, widened, vector, RECALL_DEPTH, None, asked.when, query=question.text)
            out.ranks[f"shipped+cooccur{weight}"] = _turn_ranks([h.memory.id for h in hits], turns_of_memory, gold)
        if EXPANSION_WEIGHTS:
            # The same pipeline without the expansion: must equal `shipped` (checks that this replays recall).
            hits, _ = reader._ranked(user, shallow, vector, RECALL_DEPTH, None, asked.when, query=question.text)
            out.ranks["replayed"] = _turn_ranks([h.memory.id for h in hits], turns_of_memory, gold)
    base = service.ranking
    try:
        for name, overrides in [("shipped", {}), *VARIANTS.items()]:
            service.ranking = replace(base, **overrides)
            started = time.process_time()
            result = await service.recall(user, question.text, top_k=RECALL_DEPTH, as_of=question.asked_at)
            cpu[name].append(time.process_time() - started)
            out.ranks[name] = _turn_ranks([h.memory.id for h in result.memories], turns_of_memory, gold)
            if name == "shipped":
                union.update(h.memory.id for h in result.memories)
    finally:
        service.ranking = base
    out.union_size = len(union)
    return out


def _blended(keyword: Sequence[Candidate], expanded: Sequence[Candidate], weight: float) -> list[Candidate]:
    """One keyword list: each memory's min-max normalised BM25 plus `weight` times its expanded query's, best first."""
    plain = _normalised([(c.memory.id, c.score) for c in keyword])
    wide = _normalised([(c.memory.id, c.score) for c in expanded])
    found = {c.memory.id: c for c in [*expanded, *keyword]}
    scored = [
        Candidate(c.memory, plain.get(i, 0.0) + weight * wide.get(i, 0.0), c.vector, c.passage)
        for i, c in found.items()
    ]
    return sorted(scored, key=lambda c: -c.score)


def _within(rank: int | None, k: int) -> bool:
    return rank is not None and rank <= k


def _recall_at(ranks: Mapping[str, int | None], k: int) -> float:
    return sum(_within(r, k) for r in ranks.values()) / len(ranks)


def _all_at(ranks: Mapping[str, int | None], k: int) -> float:
    return float(all(_within(r, k) for r in ranks.values()))


def _best_rank(q: QuestionRanks, turn: str, signals: Iterable[str]) -> int | None:
    found = [r for s in signals if (r := q.ranks[s].get(turn)) is not None]
    return min(found) if found else None


def _question_scores(q: QuestionRanks, signals: Sequence[str], variants: Sequence[str]) -> dict[str, float]:
    """Every per-question number the tables average."""
    scores: dict[str, float] = {}
    for signal in q.ranks:
        for k in ORACLE_KS:
            scores[f"{signal}:R@{k}"] = _recall_at(q.ranks[signal], k)
        scores[f"{signal}:all@10"] = _all_at(q.ranks[signal], 10)
    pools = {"": signals}
    if "cooccur" in q.ranks:
        pools["+cooccur"] = [*signals, "cooccur"]
    for suffix, pool in pools.items():
        best = {turn: _best_rank(q, turn, pool) for turn in q.gold}
        for k in ORACLE_KS:
            # At least one signal puts the turn in its top k.
            scores[f"oracle_any{suffix}:R@{k}"] = _recall_at(best, k)
            scores[f"oracle_any{suffix}:all@{k}"] = _all_at(best, k)
        in_union = sum(_within(r, UNION_DEPTH) for r in best.values())
        # A perfect re-ranker of the union puts its evidence first: at most 10 of it fits in the top 10.
        scores[f"rerank_union50{suffix}:R@10"] = min(10, in_union) / len(q.gold)
        scores[f"rerank_union50{suffix}:all@10"] = float(in_union == len(q.gold) and len(q.gold) <= 10)
    scores["best_variant:R@10"] = max(_recall_at(q.ranks[v], 10) for v in variants)
    scores["best_variant:all@10"] = max(_all_at(q.ranks[v], 10) for v in variants)
    return scores


def summarise(questions: Sequence[QuestionRanks], signals: Sequence[str], variants: Sequence[str]) -> dict[str, Any]:
    """Means of every per-question score, overall and per category, plus each evidence turn's best signal."""
    groups: dict[str, list[dict[str, float]]] = defaultdict(list)
    found_by: dict[str, Counter[str]] = defaultdict(Counter)
    for q in questions:
        scores = _question_scores(q, signals, variants)
        scores["union50_memories"] = float(q.union_size)
        # Narrower pools: what a re-ranker of recall's own 50 hits, or of BM25 + MiniLM top 50 alone, could reach.
        for name, pool in (("rerank_shipped50", ("shipped",)), ("rerank_bm25_dense50", ("bm25", "dense"))):
            best = {turn: _best_rank(q, turn, pool) for turn in q.gold}
            held = sum(_within(r, UNION_DEPTH) for r in best.values())
            scores[f"{name}:R@10"] = min(10, held) / len(q.gold)
            scores[f"{name}:all@10"] = float(held == len(q.gold) and len(q.gold) <= 10)
        groups["overall"].append(scores)
        groups[q.category].append(scores)
        for turn in q.gold:
            # Which raw signals hold an evidence turn the shipped top 10 misses, within their own top 50.
            if _within(q.ranks["shipped"][turn], 10):
                continue
            for bucket in ("overall", q.category):
                found_by[bucket]["missed by shipped top 10"] += 1
                holders = [s for s in signals if _within(q.ranks[s][turn], UNION_DEPTH)]
                found_by[bucket]["in no signal's top 50" if not holders else "in some signal's top 50"] += 1
                for s in holders:
                    found_by[bucket][f"in {s} top 50"] += 1
    table = {
        group: {"questions": len(rows), **{name: round(statistics.fmean(r[name] for r in rows), 4) for name in rows[0]}}
        for group, rows in groups.items()
    }
    return {"means": table, "missed_evidence": {g: dict(c) for g, c in found_by.items()}}


def format_tables(summary: Mapping[str, Any], signals: Sequence[str]) -> str:
    """The summary as text tables: per-signal recall, the oracles and the realisable ranking, per category."""
    means = summary["means"]
    groups = ["overall", *sorted(g for g in means if g != "overall")]
    lines = ["turn R@10 / R@20 / R@50 / R@100 of each signal (a memory's identical turns share its rank)"]
    lines.append(f"{'signal':<20}" + "".join(f"{g[:22]:>30}" for g in groups))
    for signal in [*signals, "oracle_any"]:
        cells = [" / ".join(f"{means[g].get(f'{signal}:R@{k}', math.nan):.3f}" for k in ORACLE_KS) for g in groups]
        lines.append(f"{signal:<20}" + "".join(f"{c:>30}" for c in cells))
    lines.append("")
    lines.append("turn R@10 / all evidence in top 10 (n questions)")
    lines.append(f"{'ranking':<22}" + "".join(f"{g[:18]:>20}" for g in groups))
    lines.append(f"{'questions':<22}" + "".join(f"{int(means[g]['questions']):>20}" for g in groups))
    rows = [
        "shipped",
        "fused",
        "best_variant",
        "oracle_any",
        "rerank_shipped50",
        "rerank_bm25_dense50",
        "rerank_union50",
    ]
    if "cooccur:R@10" in means["overall"]:
        rows += ["cooccur", "rerank_union50+cooccur", "oracle_any+cooccur", "replayed"]
        rows += [f"shipped+cooccur{w}" for w in EXPANSION_WEIGHTS]
    for row in rows:
        cells = [f"{means[g][f'{row}:R@10']:.3f} / {means[g][f'{row}:all@10']:.3f}" for g in groups]
        lines.append(f"{row:<22}" + "".join(f"{c:>20}" for c in cells))
    lines.append(f"{'union of top 50s':<22}" + "".join(f"{means[g]['union50_memories']:>20.1f}" for g in groups))
    missed = summary["missed_evidence"].get("overall", {})
    lines.append("")
    lines.append("evidence turns the shipped top 10 misses, by where the raw signals hold them: " + json.dumps(missed))
    return "\n".join(lines)


async def run(
    service: MemoryService,
    conversations: Sequence[Conversation],
    expansion_terms: int,
    cpu: dict[str, list[float]],
) -> tuple[list[QuestionRanks], float]:
    """Ingest each conversation as `engram eval` does, then rank every question with evidence under every signal."""
    reader = MemoryReader(service._ctx)
    out: list[QuestionRanks] = []
    ingest_s = 0.0
    for number, conversation in enumerate(conversations, start=1):
        user = _user_id(conversation.conv_id)
        started = time.perf_counter()
        ids = await _ingest(service, user, conversation.turns, False, service.policy.max_batch)
        ingest_s += time.perf_counter() - started
        turns_of_memory: dict[str, list[str]] = defaultdict(list)
        for turn, memory in zip(conversation.turns, ids, strict=True):
            turns_of_memory[memory].append(str(turn["id"]))
        expansion = Cooccurrence([turn_content(t) for t in conversation.turns]) if expansion_terms else None
        asked = [q for q in conversation.questions if q.evidence_turns]
        for question in asked:
            out.append(
                await _question_ranks(service, reader, user, question, turns_of_memory, expansion, expansion_terms, cpu)
            )
        print(
            f"conversation {number}/{len(conversations)}: {len(conversation.turns)} turns, {len(asked)} questions "
            f"(ingest so far {ingest_s:.0f} s, load {os.getloadavg()[0]:.1f})",
            file=sys.stderr,
        )
    return out, ingest_s


def main() -> int:
    """Ingest, rank, print the tables and write the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, nargs="?", help="benchmark file (not needed with --report)")
    parser.add_argument("--every", type=int, default=1, help="every K-th conversation (as engram eval --every)")
    parser.add_argument("--conversations", type=int, default=None, help="only the first N (after --every)")
    parser.add_argument("--embedding-cache", type=Path, default=None)
    parser.add_argument("--expansion", type=int, default=0, help="add the co-occurrence expansion signal, N words")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--report", type=Path, default=None, help="re-print the tables of an earlier run's JSON")
    args = parser.parse_args()
    if args.report is not None:
        earlier = json.loads(args.report.read_text())
        stored = [QuestionRanks(**q) for q in earlier["questions"]]
        shown = [*RAW, *(["cooccur"] if earlier["expansion_terms"] else []), "shipped", *VARIANTS]
        print(format_tables(summarise(stored, [*RAW, "shipped"], ["shipped", *VARIANTS]), shown))
        return 0
    if args.path is None or not args.path.exists():
        print(f"benchmark data not found at {args.path}; pass its path", file=sys.stderr)
        return 2
    from engram.runtime import open_memory

    conversations = load_conversations(args.path)[:: args.every][: args.conversations]
    cpu: dict[str, list[float]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="engram-ceiling-") as scratch:
        settings = Settings().model_copy(update={"data_dir": Path(scratch)})
        remembered = None if args.embedding_cache is None else _remembered_embedder(settings, args.embedding_cache)
        service = open_memory(settings, remembered)
        try:
            questions, ingest_s = asyncio.run(run(service, conversations, args.expansion, cpu))
        finally:
            service.close()
            if remembered is not None:
                remembered.close()
    signals = [*RAW, "shipped"]
    variants = ["shipped", *VARIANTS]
    summary = summarise(questions, signals, variants)
    table = format_tables(summary, [*signals, *(["cooccur"] if args.expansion else []), *VARIANTS])
    print(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "dataset": {
                "path": str(args.path),
                "sha256": file_digest(args.path),
                "every": args.every,
                "conversations": len(conversations),
            },
            "depth": DEPTH,
            "union_depth": UNION_DEPTH,
            "signals": signals,
            "variants": VARIANTS,
            "expansion_terms": args.expansion,
            "ingest_s": round(ingest_s, 1),
            "recall_cpu_median_ms": {n: round(1000 * statistics.median(v), 2) for n, v in cpu.items() if v},
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "finished_at": datetime.now().astimezone().isoformat(timespec="seconds"),
            **summary,
            "questions": [q.__dict__ for q in questions],
        }
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"report written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
