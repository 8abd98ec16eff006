"""End-to-end performance over stdio, as an assistant runs Engram: start-up, write throughput, recall latency.

For each store size it spawns `engram serve` on a fresh data directory through a real MCP client and
measures: spawn -> tools/list, spawn -> first answered recall, single `remember` calls per second and the server's
CPU per call (one client, one call at a time), batch `remember_many` memories per second, `recall` latency
p50/p95/p99 filtered to one of several users (distinct queries, so the query cache does not answer them), the
server's peak RSS, and bytes on disk per memory. Prints a table and writes JSON.

The ONNX backends export the model once (about 15 s, with torch); the script does that once up front and
copies the export into each fresh data directory, as a user's data directory holds it after the first start.

Usage: python benchmarks/performance.py [--sizes 10000 100000] [--backend torch|onnx|onnx-int8] [--model hash]
       [--command /other/venv/bin/engram] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
from machine import write_report  # benchmarks/machine.py (scripts run from this folder)
from mcp import Client, StdioServerParameters
from peers import process_tree_cpu  # benchmarks/peers.py: user + system time of the server and its children

ROOT = Path(__file__).resolve().parent.parent
LOCOMO = ROOT.parent / "shared" / "bench" / "locomo10.jsonl"
USERS = 10
BATCH = 100
SINGLE_CALLS = 500
QUERIES = 200
DEFAULT_MODEL = "all-MiniLM-L6-v2"


def texts(count: int, offset: int = 0) -> Iterator[str]:
    """Distinct, realistic short texts: LoCoMo turns when available (suffixed to stay unique), else synthetic."""
    base: list[str] = []
    if LOCOMO.exists():
        for line in LOCOMO.read_text().splitlines():
            base += [turn["text"] for turn in json.loads(line)["turns"]]
    if not base:
        words = [
            "order",
            "refund",
            "screen",
            "delivery",
            "tea",
            "garden",
            "violin",
            "shift",
            "allergy",
            "invoice",
            "meeting",
            "trip",
        ]
        base = [" ".join(random.Random(i).choices(words, k=12)) for i in range(1000)]
    for i in range(offset, offset + count):
        yield f"{base[i % len(base)]} (note {i})"


def server_pid() -> int | None:
    """The pid of this process's `engram serve` child (the stdio client does not expose it)."""
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if fields[1] == me and b"serve" in cmdline:
            return int(stat.parent.name)
    return None


def peak_rss_mb(pid: int | None) -> float | None:
    """Peak resident set size (VmHWM) of a live process, in MiB."""
    if pid is None:
        return None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def prepared_models(backend: str, model: str) -> Path | None:
    """For the ONNX backends: a directory holding the model's export, made once (this imports torch)."""
    if backend == "torch" or model == "hash":
        return None
    cache = ROOT / "benchmarks" / "results" / ".models"
    from engram.embeddings.onnx import load_onnx_embedder

    load_onnx_embedder(model, models_dir=cache, precision="int8" if backend == "onnx-int8" else "fp32")
    return cache


async def measure(size: int, args: argparse.Namespace, models: Path | None) -> dict[str, Any]:
    """One fresh server, filled to `size` memories over MCP, then measured."""
    with tempfile.TemporaryDirectory(prefix="engram-perf-") as scratch:
        data = Path(scratch) / "data"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
        env |= {
            "ENGRAM_DATA_DIR": str(data),
            "ENGRAM_EMBEDDING_BACKEND": args.backend,
            "ENGRAM_EMBEDDING_MODEL": args.model,
            # The export is shared (ENGRAM_MODELS_DIR), so the data directory holds only memories.
            **({"ENGRAM_MODELS_DIR": str(models)} if models is not None else {}),
            "ENGRAM_LOG_LEVEL": "WARNING",
            # Loading uses the bulk tool, which the default profile does not list.
            "ENGRAM_TOOLS": "all",
            "HF_HUB_OFFLINE": "1",
        }
        params = StdioServerParameters(command=args.command, args=["serve"], env=env)
        result: dict[str, Any] = {"size": size, "backend": args.backend, "model": args.model}
        spawned = time.perf_counter()
        async with Client(params) as client:
            await client.list_tools()
            result["spawn_to_tools_list_s"] = round(time.perf_counter() - spawned, 3)
            await client.call_tool("recall", {"user_id": "u0", "query": "warm-up"})
            result["spawn_to_first_recall_s"] = round(time.perf_counter() - spawned, 3)
            pid = server_pid()

            singles = min(args.single_calls, size)
            source = texts(size)
            started, cpu = time.perf_counter(), process_tree_cpu(pid) if pid else 0.0
            for _ in range(singles):
                outcome = await client.call_tool("remember", {"user_id": "u0", "content": next(source)})
                assert not outcome.is_error, outcome.content
            result["remember_single_per_s"] = round(singles / (time.perf_counter() - started), 1)
            if pid:  # server CPU per call holds under other load, unlike calls per second
                result["remember_single_cpu_ms"] = round(1000 * (process_tree_cpu(pid) - cpu) / singles, 1)

            started, stored = time.perf_counter(), singles
            while stored < size:
                items = [{"content": next(source)} for _ in range(min(BATCH, size - stored))]
                user = f"u{(stored // BATCH) % USERS}"
                outcome = await client.call_tool("remember_many", {"user_id": user, "items": items})
                assert not outcome.is_error, outcome.content
                stored += len(items)
            if size > singles:
                result["remember_batch_per_s"] = round((size - singles) / (time.perf_counter() - started), 1)
            # Background upkeep (compaction, index upkeep) runs after bursts and on its schedule; give it time to
            # catch up with the load, as it would between an import and the next conversation.
            await anyio.sleep(args.settle)

            # Queries are stored texts cut short, so each has real matches; shuffled and distinct.
            queries = [q[:80] for q in texts(QUERIES, offset=size // 2)]
            random.Random(7).shuffle(queries)
            latencies: list[float] = []
            for query in queries:
                started = time.perf_counter()
                outcome = await client.call_tool("recall", {"user_id": "u3", "query": query, "top_k": 10})
                latencies.append(time.perf_counter() - started)
                assert not outcome.is_error, outcome.content
            result["recall_ms"] = {
                "p50": round(1000 * statistics.median(latencies), 2),
                "p95": round(1000 * percentile(latencies, 0.95), 2),
                "p99": round(1000 * percentile(latencies, 0.99), 2),
            }
            result["peak_rss_mb"] = peak_rss_mb(pid)
        stored_bytes = disk_bytes(data)
        result["bytes_per_memory"] = round(stored_bytes / size)
        return result


def main() -> int:
    """Run the measurements for each size and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--backend", default="onnx-int8", choices=["torch", "onnx", "onnx-int8"])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="embedding model; `hash` measures the store alone")
    parser.add_argument("--command", default=str(Path(sys.executable).with_name("engram")), help="engram executable")
    parser.add_argument("--single-calls", type=int, default=SINGLE_CALLS)
    parser.add_argument("--settle", type=float, default=30.0, help="seconds to wait after loading, for upkeep")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "performance.json")
    args = parser.parse_args()
    models = prepared_models(args.backend, args.model)
    rows = [anyio.run(measure, size, args, models) for size in args.sizes]
    header = (
        f"{'memories':>9} {'tools/list s':>12} {'1st recall s':>12} {'single/s':>9} {'CPU ms':>7} {'batch/s':>8} "
        f"{'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'RSS MB':>7} {'B/memory':>9}"
    )
    print(f"backend {args.backend}, model {args.model}, {args.command}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['size']:>9} {r['spawn_to_tools_list_s']:>12.3f} {r['spawn_to_first_recall_s']:>12.3f} "
            f"{r['remember_single_per_s']:>9.1f} {r.get('remember_single_cpu_ms', 0):>7.1f} "
            f"{r.get('remember_batch_per_s', 0):>8.1f} "
            f"{r['recall_ms']['p50']:>7.1f} {r['recall_ms']['p95']:>7.1f} {r['recall_ms']['p99']:>7.1f} "
            f"{r['peak_rss_mb'] or 0:>7.0f} {r['bytes_per_memory']:>9}"
        )
    write_report(
        args.out,
        rows,
        settings={"settle_s": args.settle, "single_calls": args.single_calls, "batch": BATCH, "users": USERS},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
