"""Store hygiene after many single writes: files, bytes and filtered search latency, against a bulk-loaded table.

Spawns `engram serve` over stdio (a real MCP client) with a short upkeep interval, makes 2,000 single `remember`
calls for four users with a `recall` after every fifth (each read moves waiting writes into the table, so the
table gets many small commits: the worst case for fragmentation), then waits for the server's background upkeep
to settle. It reports the table's data files and versions before and after upkeep, bytes on disk, and the
latency of searches filtered to one user (vector and keyword, in-process, same queries) on that table and on a
freshly bulk-loaded table of the same rows (one commit, indexes built once). Prints and writes JSON.

Usage: python benchmarks/upkeep.py [--writes 2000] [--model hash] [--retention-s 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import lancedb
from machine import machine_info  # benchmarks/machine.py (scripts run from this folder)
from mcp import Client, StdioServerParameters
from performance import texts

from engram.config import Settings
from engram.core.filters import MemoryFilters
from engram.embeddings import load_embedder
from engram.runtime import open_memory
from engram.storage.long_term import TABLE_NAME, LanceLongTermStore

ROOT = Path(__file__).resolve().parent.parent
USERS = 4
QUERIES = 100


def table_files(long_term_dir: Path) -> dict[str, int]:
    """Data files, version manifests and all files of the memories table."""
    table = long_term_dir / f"{TABLE_NAME}.lance"
    count = lambda sub: sum(1 for p in (table / sub).glob("*") if p.is_file()) if (table / sub).exists() else 0  # noqa: E731
    return {
        "data_files": count("data"),
        "versions": count("_versions"),
        "all_files": sum(1 for p in table.rglob("*") if p.is_file()),
        "bytes": sum(p.stat().st_size for p in long_term_dir.rglob("*") if p.is_file()),
    }


def search_latency_ms(store: LanceLongTermStore, user: str, vectors: Any, queries: list[str]) -> dict[str, float]:
    """Median latency of vector and of keyword searches filtered to one user."""
    vector_times, keyword_times = [], []
    for vector, query in zip(vectors, queries, strict=True):
        started = time.perf_counter()
        store.vector_search(user, vector, MemoryFilters(), 50)
        vector_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        store.keyword_search(user, query, MemoryFilters(), 50)
        keyword_times.append(time.perf_counter() - started)
    return {
        "vector_p50_ms": round(1000 * statistics.median(vector_times), 2),
        "keyword_p50_ms": round(1000 * statistics.median(keyword_times), 2),
    }


async def write_through_mcp(data: Path, args: argparse.Namespace) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    env |= {
        "ENGRAM_DATA_DIR": str(data),
        "ENGRAM_EMBEDDING_MODEL": args.model,
        "ENGRAM_EMBEDDING_BACKEND": args.backend,
        "ENGRAM_LOG_LEVEL": "WARNING",
        "ENGRAM_UPKEEP_INTERVAL_SECONDS": str(args.interval_s),
        "ENGRAM_VERSION_RETENTION_SECONDS": str(args.retention_s),
        "HF_HUB_OFFLINE": "1",
    }
    command = str(Path(sys.executable).with_name("engram"))
    result: dict[str, Any] = {}
    async with Client(StdioServerParameters(command=command, args=["serve"], env=env)) as client:
        await client.call_tool("recall", {"user_id": "u0", "query": "warm-up"})
        started = time.perf_counter()
        peak: dict[str, int] = {}
        for i, content in enumerate(texts(args.writes)):
            user = f"u{i % USERS}"
            outcome = await client.call_tool("remember", {"user_id": user, "content": content})
            assert not outcome.is_error, outcome.content
            if i % 5 == 4:
                outcome = await client.call_tool("recall", {"user_id": user, "query": content[:40]})
                assert not outcome.is_error, outcome.content
            if i % 100 == 99:
                now = table_files(data / "lancedb")
                peak = {k: max(v, peak.get(k, 0)) for k, v in now.items()}
        result["write_s"] = round(time.perf_counter() - started, 1)
        result["right_after_writes"] = table_files(data / "lancedb")
        result["peak_during_writes"] = peak
        # Upkeep runs in the server's background; wait until the table stops changing.
        started, last, stable = time.perf_counter(), None, 0
        while time.perf_counter() - started < args.settle_max_s and stable < 3:
            await anyio.sleep(args.interval_s)
            now = table_files(data / "lancedb")
            stable = stable + 1 if now == last else 0
            last = now
        result["settled_after_s"] = round(time.perf_counter() - started, 1)
        result["after_upkeep"] = last
    return result


def main() -> int:
    """Run the measurement and print it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--model", default="hash")
    parser.add_argument("--backend", default="onnx")
    parser.add_argument("--interval-s", type=float, default=5.0, help="ENGRAM_UPKEEP_INTERVAL_SECONDS for the server")
    parser.add_argument("--retention-s", type=float, default=5.0, help="ENGRAM_VERSION_RETENTION_SECONDS")
    parser.add_argument("--settle-max-s", type=float, default=180.0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "upkeep.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="engram-upkeep-") as scratch:
        data = Path(scratch) / "data"
        report: dict[str, Any] = {"writes": args.writes, "users": USERS, "model": args.model}
        report |= anyio.run(write_through_mcp, data, args)

        # The same rows bulk-loaded: one commit into a fresh table, indexes built once.
        rows = lancedb.connect(str(data / "lancedb")).open_table(TABLE_NAME).to_arrow()
        embedder = load_embedder(args.model, backend=args.backend, cache_dir=data / "models")
        bulk_dir = Path(scratch) / "bulk"
        bulk = LanceLongTermStore(bulk_dir, dimensions=embedder.dimensions, model_id=embedder.model_id)
        lancedb.connect(str(bulk_dir)).open_table(TABLE_NAME).add(rows)
        bulk.optimize()
        report["bulk_loaded"] = table_files(bulk_dir)

        service = open_memory(Settings(data_dir=data, embedding_model=args.model), embedder)
        upkept: Any = service.long_term
        user = service.user_key("u1")
        queries = [t[:60] for t in texts(QUERIES, offset=1)]
        vectors = embedder.embed(queries)
        report["latency_upkept"] = search_latency_ms(upkept.store, user, vectors, queries)
        report["latency_bulk"] = search_latency_ms(bulk, user, vectors, queries)
        report["latency_ratio_vector"] = round(
            report["latency_upkept"]["vector_p50_ms"] / report["latency_bulk"]["vector_p50_ms"], 2
        )
        report["latency_ratio_keyword"] = round(
            report["latency_upkept"]["keyword_p50_ms"] / report["latency_bulk"]["keyword_p50_ms"], 2
        )
        report["rows"] = upkept.count()
        service.close()
        bulk.close()

    report["machine"] = machine_info()
    report["finished_at"] = datetime.now(UTC).isoformat()
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
