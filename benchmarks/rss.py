"""Server memory under a stream of single writes: the RSS curve of `engram serve` over stdio.

Spawns `engram serve` through a real MCP client on a fresh data directory (or `--data-dir`), makes `--writes`
single `remember` calls spread over `--users` users, one call at a time, with a `recall` after every
`--recall-every` writes (each read moves the journalled writes into the table, so the table sees many small
commits), and every `--every` writes samples the server process from /proc: resident memory (total, anonymous,
file-backed), peak resident memory, threads, CPU seconds, and the table's data files and versions. Prints the
curve and writes JSON; the growth per 1,000 writes is fitted over the second half of the run.

Usage: python benchmarks/rss.py [--writes 10000] [--model hash] [--env NAME=VALUE ...] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from machine import write_report  # benchmarks/machine.py (scripts run from this folder)
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from performance import server_pid, texts

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = "all-MiniLM-L6-v2"


def process_sample(pid: int) -> dict[str, float]:
    """Resident memory (MiB), threads and CPU seconds of a live process, from /proc."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            fields[name] = round(int(value.split()[0]) / 1024, 1)
        elif name == "Threads":
            fields["threads"] = int(value)
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    fields["cpu_s"] = round((int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK"), 2)
    return fields


def table_files(data_dir: Path) -> dict[str, int]:
    """Data files and version manifests of the memories table."""
    table = data_dir / "lancedb" / "memories.lance"

    def count(sub: str) -> int:
        return sum(1 for p in (table / sub).glob("*") if p.is_file()) if (table / sub).exists() else 0

    return {"data_files": count("data"), "versions": count("_versions")}


def growth_per_1000(samples: list[dict[str, Any]], key: str) -> float | None:
    """Least-squares slope of `key` (MiB) per 1,000 writes over the second half of the samples."""
    tail = samples[len(samples) // 2 :]
    if len(tail) < 2:
        return None
    xs = [s["writes"] / 1000 for s in tail]
    ys = [s[key] for s in tail]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    return round(sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread, 1) if spread else None


async def measure(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    """Drive the writes and sample the server; return the curve."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    env |= {
        "ENGRAM_DATA_DIR": str(data_dir),
        "ENGRAM_EMBEDDING_MODEL": args.model,
        "ENGRAM_EMBEDDING_BACKEND": args.backend,
        "ENGRAM_LOG_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
    }
    env |= dict(item.split("=", 1) for item in args.env)
    params = StdioServerParameters(command=args.command, args=["serve"], env=env)
    samples: list[dict[str, Any]] = []
    log_path = args.out.with_suffix(".server.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        async with Client(stdio_client(params, errlog=log)) as client:
            await drive(client, args, data_dir, samples)
    return {
        "writes": args.writes,
        "users": args.users,
        "recall_every": args.recall_every,
        "model": args.model,
        "backend": args.backend,
        "env": args.env,
        "peak_rss_mb": max(s["VmHWM"] for s in samples),
        "growth_mb_per_1000_writes": {k: growth_per_1000(samples, k) for k in ("VmRSS", "RssAnon", "RssFile")},
        "samples": samples,
    }


async def drive(client: Client, args: argparse.Namespace, data_dir: Path, samples: list[dict[str, Any]]) -> None:
    """The writes and recalls, one call at a time, sampling the server every `args.every` writes."""
    source = texts(args.writes, offset=args.offset)
    await client.call_tool("recall", {"user_id": "u0", "query": "warm-up"})
    pid = server_pid()
    if pid is None:
        raise RuntimeError("could not find the server process")
    samples.append({"writes": 0, **process_sample(pid), **table_files(data_dir), "load": os.getloadavg()[0]})
    started = time.perf_counter()
    for written in range(1, args.writes + 1):
        user = f"u{written % args.users}"
        outcome = await client.call_tool("remember", {"user_id": user, "content": next(source)})
        assert not outcome.is_error, outcome.content
        if written % args.recall_every == 0:
            outcome = await client.call_tool("recall", {"user_id": user, "query": f"note {written - 3}"})
            assert not outcome.is_error, outcome.content
        if written % args.every == 0 or written == args.writes:
            sample = {"writes": written, **process_sample(pid), **table_files(data_dir)}
            sample |= {"load": os.getloadavg()[0], "wall_s": round(time.perf_counter() - started, 1)}
            samples.append(sample)
            print(
                f"{written:>6} writes  RSS {sample['VmRSS']:>6.0f} MB (anon {sample['RssAnon']:>5.0f}, file "
                f"{sample['RssFile']:>4.0f})  peak {sample['VmHWM']:>6.0f} MB  threads {sample['threads']:>3}  "
                f"CPU {sample['cpu_s']:>7.1f} s  data files {sample['data_files']:>4}  versions "
                f"{sample['versions']:>4}  load {sample['load']:.1f}",
                flush=True,
            )


def main() -> int:
    """Run once and write the curve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=500, help="sample the server every this many writes")
    parser.add_argument("--recall-every", type=int, default=10)
    parser.add_argument("--users", type=int, default=5)
    parser.add_argument("--offset", type=int, default=0, help="start the texts here (to add to --data-dir)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="embedding model; `hash` measures the store alone")
    parser.add_argument("--backend", default="onnx-int8", choices=["torch", "onnx", "onnx-int8"])
    parser.add_argument("--command", default=str(Path(sys.executable).with_name("engram")), help="engram executable")
    parser.add_argument("--data-dir", type=Path, help="use (and keep) this data directory instead of a fresh one")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server (repeatable)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "rss.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="engram-rss-") as scratch:
        data_dir = args.data_dir or Path(scratch) / "data"
        result = anyio.run(measure, args, data_dir)
    growth = result["growth_mb_per_1000_writes"]
    print(f"peak RSS {result['peak_rss_mb']:.0f} MB; growth per 1,000 writes (second half, MB) {growth}")
    write_report(args.out, [result])
    return 0


if __name__ == "__main__":
    sys.exit(main())
