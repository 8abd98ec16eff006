"""Embedding backends compared: torch (sentence-transformers), ONNX fp32 and ONNX int8 (onnxruntime, no torch).

Every measurement runs in a fresh worker process, one at a time, so that one backend's imports, threads and
memory never affect another's:

* ``load_s``: spawn -> embedder ready, including interpreter start-up and imports (median of ``--load-runs``);
  ``first_embed_ms``: the first call afterwards (lazy initialisation);
* ``query_ms``: one short query per ``embed`` call (median and p95 over ``--queries`` calls, after a warm-up);
* ``sentences_per_s``: ~2,000 short sentences (LoCoMo turns split at . ! ?), ``embed`` called with 32 at a time
  (each backend batches inside as it does in Engram); ``turns_per_s``: the same with 500 whole turns (~120
  characters on average);
* ``peak_rss_mb``: peak resident memory of the worker that only loaded the backend and ran the two above;
* quality: every LoCoMo turn and question embedded by each backend; per conversation, the top-10 turns for each
  question are compared with ONNX fp32's (``overlap@10``), and checked against the question's evidence turns
  (``evidence recall@10``). ``int8 query / fp32 store`` searches fp32 turn vectors with int8 query vectors: what
  a data directory built with one and read with the other would see.

The ONNX exports are made once (timed as ``export``) into ``--cache-dir`` (default: a temporary directory).
Sentences come from ``../shared/bench/locomo10.jsonl`` (turns' ``text``) when it exists, else generated ones.

Usage::

    .venv/bin/python benchmarks/embeddings.py
    .venv/bin/python benchmarks/embeddings.py --backends onnx onnx-int8 --cache-dir /tmp/engram-models
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from machine import machine_info  # benchmarks/machine.py (scripts run from this folder)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "embeddings.json"
DEFAULT_LOCOMO = REPO_ROOT.parent / "shared" / "bench" / "locomo10.jsonl"
MODEL = "all-MiniLM-L6-v2"  # the bundled model, as engram.config.DEFAULT_EMBEDDING_MODEL
BACKENDS = ("torch", "onnx", "onnx-int8")
BATCH = 32
TOP_K = 10
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")

Matrix = npt.NDArray[np.float32]


# ---- data ----------------------------------------------------------------------------------------------------


def load_locomo(path: Path) -> list[dict[str, Any]]:
    """The conversations of a LoCoMo-format JSONL file (see ../shared/bench/FORMAT.md)."""
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def generated_sentences(count: int, seed: int = 7) -> list[str]:
    """Varied short sentences for when the LoCoMo file is absent."""
    rng = random.Random(seed)
    people = ["Alice", "Bob", "my sister", "our manager", "Tom", "the neighbours", "Dr. Patel", "Grandma"]
    verbs = ["visited", "cooked", "painted", "forgot about", "booked", "argued about", "finished", "recommended"]
    things = ["the museum", "a curry", "the fence", "the dentist appointment", "a flight to Lisbon", "the budget"]
    times = ["yesterday", "last summer", "on Monday", "in 2019", "after work", "at 9:40", "twice this week"]
    extras = ["", " and loved it", ", which was a mistake", " because it rained", " with the kids", "!"]
    return [
        f"{rng.choice(people)} {rng.choice(verbs)} {rng.choice(things)} {rng.choice(times)}{rng.choice(extras)}."
        for _ in range(count)
    ]


def split_sentences(text: str) -> list[str]:
    """The sentences of a turn (split after . ! ?), without empty ones."""
    return [part.strip() for part in _SENTENCE_END.split(text) if part.strip()]


def workload(locomo: Path, sentences: int, turns: int, queries: int) -> dict[str, Any]:
    """Throughput sentences and turns, latency queries, and per-conversation quality sets (LoCoMo only)."""
    if not locomo.is_file():
        texts = generated_sentences(sentences + queries)
        long = [" ".join(texts[i : i + 3]) for i in range(0, min(len(texts), 3 * turns), 3)]
        return {
            "source": "generated",
            "sentences": texts[:sentences],
            "turns": long,
            "queries": texts[sentences:],
            "quality": [],
        }
    conversations = load_locomo(locomo)
    all_turns = [turn["text"] for conv in conversations for turn in conv["turns"]]
    short = [sentence for text in all_turns for sentence in split_sentences(text)]
    questions = [q["question"] for conv in conversations for q in conv["questions"]]
    quality = []
    for conv in conversations:
        index = {turn["id"]: i for i, turn in enumerate(conv["turns"])}
        quality.append(
            {
                "conv_id": conv["conv_id"],
                "corpus": [turn["text"] for turn in conv["turns"]],
                "queries": [q["question"] for q in conv["questions"]],
                "evidence": [
                    [index[e] for e in q.get("evidence_turn_ids", []) if e in index] for q in conv["questions"]
                ],
            }
        )
    return {
        "source": str(locomo),
        "sentences": short[:sentences],
        "turns": all_turns[:turns],
        "queries": questions[:queries],
        "quality": quality,
    }


# ---- workers (run in fresh processes) -----------------------------------------------------------------------


def _load(backend: str, cache_dir: str, threads: int) -> Any:
    from engram.embeddings import load_embedder

    return load_embedder(MODEL, backend=backend, cache_dir=Path(cache_dir), threads=threads)


def _peak_rss_mb() -> float:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def worker(mode: str, backend: str, cache_dir: str, threads: int, data: str | None, out: str | None) -> None:
    """One measurement in this (fresh) process; prints a JSON line."""
    if mode == "export":
        # The one-time export runs in its own child process (the only place torch is imported for ONNX).
        from engram.embeddings.onnx_cache import run_export

        report = run_export(MODEL, Path(cache_dir), threads=threads)
        print(json.dumps({k: report.get(k) for k in ("exported", "seconds", "export_seconds", "quantize_seconds")}))
        return
    embedder = _load(backend, cache_dir, threads)
    ready = time.time()
    if mode == "load":
        started = time.perf_counter()
        embedder.embed(["what does she like to eat?"])
        print(json.dumps({"ready_at": ready, "first_embed_ms": (time.perf_counter() - started) * 1000}))
        return
    assert data is not None
    payload = json.loads(Path(data).read_text(encoding="utf-8"))
    if mode == "perf":
        sentences, queries = payload["sentences"], payload["queries"]
        embedder.embed(sentences[:BATCH])  # warm-up: lazy initialisation and allocator growth
        for query in queries[:5]:
            embedder.embed([query])
        latencies = []
        for query in queries:
            started = time.perf_counter()
            embedder.embed([query])
            latencies.append((time.perf_counter() - started) * 1000)
        throughput = {}
        for name in ("sentences", "turns"):
            texts = payload[name]
            started = time.perf_counter()
            for start in range(0, len(texts), BATCH):
                embedder.embed(texts[start : start + BATCH])
            throughput[f"{name}_per_s"] = len(texts) / (time.perf_counter() - started)
        latencies.sort()
        print(
            json.dumps(
                {
                    "query_ms_median": statistics.median(latencies),
                    "query_ms_p95": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))],
                    "queries": len(latencies),
                    **throughput,
                    "peak_rss_mb": _peak_rss_mb(),
                    "model_id": embedder.model_id,
                    "torch_imported": "torch" in sys.modules,
                }
            )
        )
    elif mode == "vectors":
        assert out is not None
        arrays = {}
        for i, conv in enumerate(payload["quality"]):
            arrays[f"corpus{i}"] = embedder.embed(conv["corpus"])
            arrays[f"queries{i}"] = embedder.embed(conv["queries"])
        np.savez(out, **arrays)
        print(json.dumps({"conversations": len(payload["quality"])}))


# ---- driver --------------------------------------------------------------------------------------------------


def run_worker(mode: str, backend: str, args: argparse.Namespace, **extra: str) -> dict[str, Any]:
    """Run one worker process and return its JSON line, plus `spawned_at` (wall clock)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", mode, "--backend", backend]
    command += ["--cache-dir", str(args.cache_dir), "--threads", str(args.threads)]
    for key, value in extra.items():
        command += [f"--{key}", value]
    from engram.embeddings.threads import native_thread_env

    # As `engram serve` does: native thread pools capped at the inference thread count.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **native_thread_env(args.threads)}
    spawned_at = time.time()
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=args.timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{mode} worker for {backend} failed:\n{result.stderr[-4000:]}")
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    report["spawned_at"] = spawned_at
    return report


def top_k(queries: Matrix, corpus: Matrix, k: int = TOP_K) -> npt.NDArray[np.intp]:
    """Indices of the k best corpus rows per query, best first."""
    scores = queries @ corpus.T
    k = min(k, corpus.shape[0])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(scores, part, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(part, order, axis=1)


def quality(vectors: dict[str, Any], sets: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """overlap@10 with ONNX fp32 (else the first backend) and evidence recall@10, per backend, and for int8
    queries searching fp32 turn vectors."""
    runs: dict[str, list[tuple[Matrix, Matrix]]] = {}
    for name, arrays in vectors.items():
        runs[name] = [(arrays[f"queries{i}"], arrays[f"corpus{i}"]) for i in range(len(sets))]
    if "onnx-int8" in vectors and "onnx" in vectors:
        runs["int8 query / fp32 store"] = [
            (q8, c32) for (q8, _), (_, c32) in zip(runs["onnx-int8"], runs["onnx"], strict=True)
        ]
    reference = "onnx" if "onnx" in runs else next(iter(runs))
    ref_hits = [top_k(q, c) for q, c in runs[reference]]
    results: dict[str, dict[str, float]] = {}
    for name, pairs in runs.items():
        overlaps: list[float] = []
        recalls: list[float] = []
        for (queries, corpus), ref, conv in zip(pairs, ref_hits, sets, strict=True):
            hits = top_k(queries, corpus)
            overlaps += [len(set(a) & set(b)) / TOP_K for a, b in zip(hits, ref, strict=True)]
            recalls += [len(set(h) & set(e)) / len(e) for h, e in zip(hits, conv["evidence"], strict=True) if e]
        results[name] = {"overlap_at_10": float(np.mean(overlaps)), "evidence_recall_at_10": float(np.mean(recalls))}
    return results


def load_average() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def print_table(results: dict[str, dict[str, Any]]) -> None:
    columns = [
        ("load s", "load_s", "{:.2f}"),
        ("1st embed ms", "first_embed_ms", "{:.1f}"),
        ("query ms p50", "query_ms_median", "{:.2f}"),
        ("query ms p95", "query_ms_p95", "{:.2f}"),
        ("sentences/s", "sentences_per_s", "{:.0f}"),
        ("turns/s", "turns_per_s", "{:.0f}"),
        ("peak RSS MB", "peak_rss_mb", "{:.0f}"),
        ("overlap@10", "overlap_at_10", "{:.3f}"),
        ("evid. R@10", "evidence_recall_at_10", "{:.3f}"),
    ]
    header = f"{'backend':<24}" + "".join(f"{title:>14}" for title, _, _ in columns)
    print(header)
    print("-" * len(header))
    for name, row in results.items():
        cells = [fmt.format(row[key]) if row.get(key) is not None else "-" for _, key, fmt in columns]
        print(f"{name:<24}" + "".join(f"{cell:>14}" for cell in cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file (default %(default)s)")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--locomo", type=Path, default=DEFAULT_LOCOMO, help="LoCoMo-format JSONL (default %(default)s)")
    parser.add_argument("--sentences", type=int, default=2000, help="throughput: short sentences (default 2000)")
    parser.add_argument("--turns", type=int, default=500, help="throughput: whole conversation turns (default 500)")
    parser.add_argument("--queries", type=int, default=200, help="single-query latency samples (default 200)")
    parser.add_argument("--load-runs", type=int, default=3, help="fresh processes timed for load (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="inference threads for every backend (default 1)")
    parser.add_argument("--cache-dir", type=Path, help="where ONNX exports are kept (default: a temporary dir)")
    parser.add_argument("--no-quality", action="store_true", help="skip the overlap / recall measurements")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per worker (default 1800)")
    # Internal: the worker processes.
    parser.add_argument("--worker", choices=("export", "load", "perf", "vectors"), help=argparse.SUPPRESS)
    parser.add_argument("--backend", default="torch", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--vectors-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.backend, str(args.cache_dir), args.threads, args.data, args.vectors_out)
        return 0

    with tempfile.TemporaryDirectory(prefix="engram-bench-emb-") as tmp:
        scratch = Path(tmp)
        args.cache_dir = (args.cache_dir or scratch / "models").resolve()
        load_before = load_average()
        data = workload(args.locomo, args.sentences, args.turns, args.queries)
        data_file = scratch / "data.json"
        data_file.write_text(json.dumps(data), encoding="utf-8")
        print(
            f"from {data['source']}: {len(data['sentences'])} sentences, {len(data['turns'])} turns, "
            f"{len(data['queries'])} queries"
        )
        print(f"threads: {args.threads}, cache: {args.cache_dir}, load average: {load_before}")

        export: dict[str, Any] | None = None
        if any(b.startswith("onnx") for b in args.backends):
            export = run_worker("export", "onnx", args)
            if export["exported"]:
                print(
                    f"one-time export (child process): {export['seconds']:.1f} s in all, of which fp32 export "
                    f"{export['export_seconds']:.1f} s and int8 quantisation {export['quantize_seconds']:.1f} s",
                    flush=True,
                )
            else:
                print(f"export: reused the one in {args.cache_dir}", flush=True)

        results: dict[str, dict[str, Any]] = {}
        for backend in args.backends:
            loads = [run_worker("load", backend, args) for _ in range(args.load_runs)]
            row: dict[str, Any] = {
                "load_s": statistics.median(r["ready_at"] - r["spawned_at"] for r in loads),
                "load_s_samples": [r["ready_at"] - r["spawned_at"] for r in loads],
                "first_embed_ms": statistics.median(r["first_embed_ms"] for r in loads),
            }
            perf = run_worker("perf", backend, args, data=str(data_file))
            row.update({k: v for k, v in perf.items() if k != "spawned_at"})
            results[backend] = row
            print(
                f"  {backend}: load {row['load_s']:.2f} s, query p50 {row['query_ms_median']:.2f} ms, "
                f"{row['sentences_per_s']:.0f} sentences/s, peak RSS {row['peak_rss_mb']:.0f} MB",
                flush=True,
            )

        quality_results: dict[str, dict[str, float]] = {}
        if data["quality"] and not args.no_quality:
            vectors = {}
            for backend in args.backends:
                path = scratch / f"{backend}.npz"
                run_worker("vectors", backend, args, data=str(data_file), **{"vectors-out": str(path)})
                vectors[backend] = dict(np.load(path))
            quality_results = quality(vectors, data["quality"])
            for name, row in quality_results.items():
                results.setdefault(name, {}).update(row)
        load_after = load_average()

    print()
    print_table(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "embeddings",
        "timestamp": datetime.now(UTC).isoformat(),
        "model": MODEL,
        "threads": args.threads,
        "batch_size": BATCH,
        "workload": {
            "source": data["source"],
            "sentences": len(data["sentences"]),
            "mean_sentence_chars": statistics.mean(len(s) for s in data["sentences"]),
            "turns": len(data["turns"]),
            "mean_turn_chars": statistics.mean(len(s) for s in data["turns"]),
            "queries": len(data["queries"]),
            "quality_conversations": len(data["quality"]),
            "quality_queries": sum(len(c["queries"]) for c in data["quality"]),
            "quality_corpus_turns": sum(len(c["corpus"]) for c in data["quality"]),
        },
        "export": export and {k: v for k, v in export.items() if k != "spawned_at"},
        "metrics": {
            "load_s": "spawn of a fresh process -> embedder ready (interpreter, imports, model load); median",
            "first_embed_ms": "first embed call after loading; median over the load runs",
            "query_ms_median/p95": "one short query per embed call",
            "sentences_per_s": "embed called with 32 short sentences at a time (turns split at . ! ?); inside, torch "
            "runs them as one batch, ONNX in batches of at most 128 padded tokens",
            "turns_per_s": "the same with whole conversation turns",
            "peak_rss_mb": "peak RSS of the process that loaded the backend and ran the latency and throughput runs",
            "overlap_at_10": f"mean share of each question's top-{TOP_K} turns shared with ONNX fp32's",
            "evidence_recall_at_10": f"mean share of a question's evidence turns found in its top {TOP_K}",
        },
        "results": results,
        "machine": {**machine_info(), "load_average_before": load_before, "load_average_after": load_after},
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
