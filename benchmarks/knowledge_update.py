"""Knowledge updates: does recall rank the current version of a fact above the outdated one?

For each knowledge-update question of a benchmark file (the shared format, e.g. LongMemEval-S dev), the haystack is
stored in order with its dates (`remember_many`, one user per question), the question is asked `as_of` its date,
and the ranks of the evidence turns are compared: the current fact is the evidence in the latest evidence session,
the outdated one the evidence in earlier sessions. A question counts when the current evidence ranks above every
outdated one (an outdated one not retrieved at all counts as below). Questions with one evidence session have
nothing to compare and are reported apart.

With `--caller accepts-suggestions`, a caller that follows Engram's suggestions is simulated: the current
evidence turn is remembered again as a fact (same content, so the same memory), and the outdated evidence turns
among its `supersede_candidates` are passed back as `supersedes` (what a model would do when a suggestion is the
old value of the same fact). Engram itself picks nothing: an outdated turn it does not suggest stays current.

    .venv/bin/python benchmarks/knowledge_update.py ../shared/bench/longmemeval_s_dev.jsonl.gz [--out report.json]
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio

from engram.config import Settings
from engram.core.models import RememberItem, Role
from engram.embeddings import load_embedder
from engram.runtime import open_memory

DEPTH = 50
BATCH = 500


def _rows(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def _session_order(turns: list[dict[str, Any]]) -> dict[str, int]:
    order: dict[str, int] = {}
    for turn in turns:
        order.setdefault(str(turn["session_id"]), len(order))
    return order


async def _one(
    settings: Settings, embedder: Any, row: dict[str, Any], question: dict[str, Any], accepts: bool
) -> dict[str, Any]:
    memory = open_memory(settings, embedder)
    try:
        user = "u-" + "".join(c if c.isalnum() else "-" for c in str(row["conv_id"]))[:100]
        items = [
            RememberItem(
                content=str(t["text"]),
                session_id="s-" + "".join(c if c.isalnum() else "-" for c in str(t["session_id"]))[:100],
                role=Role.ASSISTANT if t.get("speaker") == "assistant" else Role.USER,
                metadata={"speaker": str(t.get("speaker", "")), "turn_id": str(t["id"])},
                occurred_at=datetime.fromisoformat(t["timestamp"]) if t.get("timestamp") else None,
            )
            for t in row["turns"]
        ]
        turns_of: dict[str, list[str]] = defaultdict(list)
        for start in range(0, len(items), BATCH):
            results = await memory.remember_many(user, items[start : start + BATCH])
            for result, turn in zip(results, row["turns"][start : start + BATCH], strict=True):
                turns_of[result.id].append(str(turn["id"]))
        suggested = await _accept_suggestions(memory, user, row, question, turns_of) if accepts else None
        asked = datetime.fromisoformat(question["question_date"]) if question.get("question_date") else None
        recall_args: dict[str, Any] = {"top_k": DEPTH, "scope": "memories"}
        if asked is not None and "as_of" in memory.recall.__code__.co_varnames:
            recall_args["as_of"] = asked
        result = await memory.recall(user, question["question"], **recall_args)
        ranked = [t for hit in result.memories for t in turns_of.get(hit.memory.id, [])]
    finally:
        memory.close()
    session_of = {str(t["id"]): str(t["session_id"]) for t in row["turns"]}
    order = _session_order(row["turns"])
    evidence = [str(t) for t in question.get("evidence_turn_ids", [])]
    sessions = sorted({session_of[t] for t in evidence if t in session_of}, key=order.__getitem__)
    rank = {t: i for i, t in reversed(list(enumerate(ranked, start=1)))}
    current = [t for t in evidence if session_of.get(t) == (sessions[-1] if sessions else None)]
    outdated = [t for t in evidence if t not in current]
    best_current = min((rank.get(t, math.inf) for t in current), default=math.inf)
    best_outdated = min((rank.get(t, math.inf) for t in outdated), default=math.inf)
    return {
        "qid": question["qid"],
        "comparable": bool(outdated),
        "current_rank": None if best_current == math.inf else best_current,
        "outdated_rank": None if best_outdated == math.inf else best_outdated,
        "current_first": best_current < best_outdated,
        "outdated_suggested": suggested,
    }


def _evidence(row: dict[str, Any], question: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The current and the outdated evidence turns of a question (by the order of their sessions)."""
    order = _session_order(row["turns"])
    wanted = {str(t) for t in question.get("evidence_turn_ids", [])}
    evidence = [t for t in row["turns"] if str(t["id"]) in wanted]
    if not evidence:
        return [], []
    latest = max((str(t["session_id"]) for t in evidence), key=order.__getitem__)
    return [t for t in evidence if str(t["session_id"]) == latest], [
        t for t in evidence if str(t["session_id"]) != latest
    ]


async def _accept_suggestions(
    memory: Any, user: str, row: dict[str, Any], question: dict[str, Any], turns_of: dict[str, list[str]]
) -> bool | None:
    """Remember the current evidence again as a fact and supersede the outdated evidence it is offered."""
    current, outdated = _evidence(row, question)
    if not current or not outdated:
        return None
    outdated_ids = {str(t["id"]) for t in outdated}
    fact = current[0]
    when = datetime.fromisoformat(fact["timestamp"]) if fact.get("timestamp") else None
    offered = await memory.remember(user, str(fact["text"]), occurred_at=when)
    chosen = [c.id for c in offered.supersede_candidates if outdated_ids & set(turns_of.get(c.id, []))]
    if chosen:
        await memory.remember(user, str(fact["text"]), occurred_at=when, supersedes=chosen)
    return bool(chosen)


async def _main(path: Path, category: str, accepts: bool) -> dict[str, Any]:
    defaults = Settings()
    embedder = load_embedder(
        defaults.embedding_model, backend=defaults.embedding_backend, cache_dir=defaults.model_cache_dir
    )
    outcomes = []
    started = time.perf_counter()
    for row in _rows(path):
        for question in row["questions"]:
            if question.get("category") != category or question.get("abstention"):
                continue
            with tempfile.TemporaryDirectory() as directory:
                settings = Settings(data_dir=Path(directory), enrichment=False, max_content_chars=100_000)
                outcome = await _one(settings, embedder, row, question, accepts)
            outcomes.append(outcome)
            print(json.dumps(outcome), file=sys.stderr)
    comparable = [o for o in outcomes if o["comparable"]]
    return {
        "file": str(path),
        "category": category,
        "caller": "accepts-suggestions" if accepts else "none",
        "questions": len(outcomes),
        "comparable": len(comparable),
        "current_first": sum(o["current_first"] for o in comparable),
        "current_first_share": round(sum(o["current_first"] for o in comparable) / max(1, len(comparable)), 3),
        "current_in_top10": sum(1 for o in outcomes if o["current_rank"] is not None and o["current_rank"] <= 10),
        "seconds": round(time.perf_counter() - started, 1),
        "outcomes": outcomes,
    }


def main() -> None:
    """Run the knowledge-update check on a benchmark file and print the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("path", type=Path)
    parser.add_argument("--category", default="knowledge-update")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--caller", choices=["none", "accepts-suggestions"], default="none")
    args = parser.parse_args()
    report = anyio.run(_main, args.path, args.category, args.caller == "accepts-suggestions")
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text)
    print(json.dumps({k: v for k, v in report.items() if k != "outcomes"}, indent=2))


if __name__ == "__main__":
    main()
