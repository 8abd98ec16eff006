"""Vector index choice: recall@10 against exact search, and latency, of searches filtered to one user.

Builds a LanceDB table of real all-MiniLM-L6-v2 embeddings (ONNX backend) of LoCoMo sentences combined in pairs
(so there are as many distinct texts as asked), spread over users with skewed sizes, with the same schema and
scalar indexes as Engram's store. For each candidate (no index, IVF_HNSW_SQ and IVF_PQ at several query settings)
it runs the same queries filtered to one user (prefiltered, as Engram does) and reports recall@10 against the
exact answer and the median latency. Embeddings are cached under benchmarks/results/.

Usage: python benchmarks/ann.py [--rows 100000] [--queries 200]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from machine import machine_info  # benchmarks/machine.py (scripts run from this folder)

from engram.embeddings import load_embedder
from engram.storage.filters import memory_filter
from engram.storage.long_term import LanceLongTermStore

ROOT = Path(__file__).resolve().parent.parent
LOCOMO = ROOT.parent / "shared" / "bench" / "locomo10.jsonl"
RESULTS = ROOT / "benchmarks" / "results"
#: Share of the rows each user holds: one heavy user, a few medium, many light.
USER_SHARES = [0.4, 0.15, 0.15, 0.1, 0.05, 0.05, 0.04, 0.03, 0.02, 0.01]


def corpus(rows: int) -> list[str]:
    """`rows` distinct texts: pairs of LoCoMo sentences."""
    sentences: list[str] = []
    for line in LOCOMO.read_text().splitlines():
        for turn in json.loads(line)["turns"]:
            sentences += [s.strip() for s in re.split(r"(?<=[.!?])\s+", turn["text"]) if len(s.strip()) > 15]
    rng = random.Random(11)
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < rows:
        text = f"{rng.choice(sentences)} {rng.choice(sentences)}"
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def embeddings(texts: list[str]) -> np.ndarray:
    cache = RESULTS / f".ann-vectors-{len(texts)}.npy"
    if cache.exists():
        return np.load(cache)
    embedder = load_embedder("all-MiniLM-L6-v2", backend="onnx", cache_dir=RESULTS / ".models")
    vectors = np.concatenate([embedder.embed(texts[i : i + 256]) for i in range(0, len(texts), 256)])
    RESULTS.mkdir(parents=True, exist_ok=True)
    np.save(cache, vectors)
    return vectors


def build(directory: Path, texts: list[str], vectors: np.ndarray) -> Any:
    store = LanceLongTermStore(directory, dimensions=vectors.shape[1], model_id="all-MiniLM-L6-v2")
    table = store._table
    bounds = np.cumsum([0, *USER_SHARES])
    users = [f"user{np.searchsorted(bounds, i / len(texts), side='right') - 1}" for i in range(len(texts))]
    now = datetime.now(UTC)
    batch = 20_000
    for start in range(0, len(texts), batch):
        end = min(start + batch, len(texts))
        table.add(
            [
                {
                    "id": f"{i:032x}",
                    "user_id": users[i],
                    "kind": "fact",
                    "content": texts[i],
                    "created_at": now,
                    "index_text": texts[i],
                    "vector": vectors[i].tolist(),
                }
                for i in range(start, end)
            ]
        )
    store.optimize()
    return table


def search(table: Any, user: str, vector: np.ndarray, exact: bool, settings: dict[str, Any]) -> list[str]:
    query = table.search(vector, vector_column_name="vector").distance_type("cosine")
    if exact:
        query = query.bypass_vector_index()
    for name, value in settings.items():
        query = getattr(query, name)(value)
    rows = query.where(memory_filter(user), prefilter=True).select(["id"]).limit(10).to_list()
    return [r["id"] for r in rows]


def evaluate(table: Any, users: list[str], queries: np.ndarray, settings: dict[str, Any], truth: Any) -> dict[str, Any]:
    hits, latencies = [], []
    for user in users:
        for q, vector in enumerate(queries):
            started = time.perf_counter()
            found = search(table, user, vector, exact=False, settings=settings)
            latencies.append(time.perf_counter() - started)
            expected = truth[(user, q)]
            hits.append(len(set(found) & set(expected)) / max(1, len(expected)))
    return {"recall_at_10": round(float(np.mean(hits)), 4), "p50_ms": round(1000 * statistics.median(latencies), 2)}


def main() -> int:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--out", type=Path, default=RESULTS / "ann.json")
    args = parser.parse_args()

    texts = corpus(args.rows + args.queries)
    vectors = embeddings(texts)
    rows, queries = vectors[: args.rows], vectors[args.rows :]
    users = ["user0", "user3", "user8"]  # 40%, 10% and 2% of the rows
    report: dict[str, Any] = {"rows": args.rows, "queries": args.queries, "users": users, "results": []}
    with tempfile.TemporaryDirectory(prefix="engram-ann-") as scratch:
        table = build(Path(scratch), texts[: args.rows], rows)
        truth: dict[tuple[str, int], list[str]] = {}
        exact_times = []
        for user in users:
            for q, vector in enumerate(queries):
                started = time.perf_counter()
                truth[(user, q)] = search(table, user, vector, exact=True, settings={})
                exact_times.append(time.perf_counter() - started)
        report["results"].append(
            {"index": "none (exact)", "recall_at_10": 1.0, "p50_ms": round(1000 * statistics.median(exact_times), 2)}
        )
        candidates: list[tuple[str, dict[str, Any], list[dict[str, Any]]]] = [
            (
                "IVF_HNSW_SQ",
                {"index_type": "IVF_HNSW_SQ"},
                [{"ef": 50}, {"ef": 100}, {"ef": 100, "refine_factor": 5}, {"ef": 200, "refine_factor": 5}],
            ),
            (
                "IVF_PQ",
                {"index_type": "IVF_PQ"},
                [{"nprobes": 20}, {"nprobes": 50, "refine_factor": 10}],
            ),
        ]
        for name, build_settings, query_settings in candidates:
            started = time.perf_counter()
            table.create_index(metric="cosine", vector_column_name="vector", replace=True, **build_settings)
            built = round(time.perf_counter() - started, 1)
            for settings in query_settings:
                row = {"index": name, "build_s": built, "query": settings}
                row |= evaluate(table, users, queries, settings, truth)
                report["results"].append(row)
                print(row, flush=True)
    for row in report["results"]:
        print(
            f"{row['index']:>14} {json.dumps(row.get('query', {})):>36} recall@10 {row['recall_at_10']:.3f} "
            f"p50 {row['p50_ms']:.1f} ms"
        )
    report["machine"] = machine_info()
    report["finished_at"] = datetime.now(UTC).isoformat()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
