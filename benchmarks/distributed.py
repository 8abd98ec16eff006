"""`remember` and `recall` latency and throughput: the embedded default vs one replica on Redis + radosgw vs three
replicas behind haproxy, all on this machine's loopback.

Each configuration gets fresh engines (scripts/redis-engine.sh, scripts/radosgw-engine.sh, scripts/haproxy-engine.sh;
the Debian packages must be installed, as the tests install them) and real `engram serve --transport
streamable-http` processes. `--clients` concurrent MCP clients, each with its own user and token, first make
`--calls` `remember` calls each, then `--calls` `recall` calls each. Printed per configuration and operation: the
median and 95th-percentile latency of a call and the calls per second of all clients together.

On a two-core machine the three replicas, Redis and the Ceph daemons share the same two cores as the clients: the
numbers say what the storage path costs, not how the design scales on real machines. Compare ratios.

Usage::

    .venv/bin/python benchmarks/distributed.py                       # 4 clients x 50 calls, the bundled model
    .venv/bin/python benchmarks/distributed.py --clients 2 --calls 3 --model hash   # a quick check that it runs
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.engines import start_radosgw, start_redis, stop_radosgw, stop_redis  # noqa: E402
from tests.http_server import free_port, issue_token, spawn  # noqa: E402

KEY = "benchmark-key-of-sixteen-characters"


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _run_clients(url: str, tokens: list[str], calls: int) -> dict[str, dict[str, float]]:
    """Every client remembers `calls` facts, then recalls `calls` times; per operation: latency and throughput."""
    latencies: dict[str, list[float]] = {"remember": [], "recall": []}
    spans: dict[str, float] = {}

    async def one_client(n: int, token: str, operation: str) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(300.0)) as http,
            Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client,
        ):
            for i in range(calls):
                if operation == "remember":
                    arguments = {"content": f"client {n} fact {i}: the meeting moved to room {i * 7 % 13}"}
                else:
                    arguments = {"query": f"where did the meeting of fact {i} move", "top_k": 5}
                started = time.perf_counter()
                result = await client.call_tool(operation, arguments)
                latencies[operation].append(time.perf_counter() - started)
                if result.is_error:
                    raise RuntimeError(f"{operation} failed: {result.content}")

    for operation in ("remember", "recall"):
        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            for n, token in enumerate(tokens):
                group.start_soon(one_client, n, token, operation)
        spans[operation] = time.perf_counter() - started
    return {
        operation: {
            "p50_ms": round(1000 * statistics.median(values), 1),
            "p95_ms": round(1000 * _percentile(values, 0.95), 1),
            "calls_per_s": round(len(values) / spans[operation], 2),
        }
        for operation, values in latencies.items()
    }


def _configuration(
    name: str, root: Path, replicas: int, shared: bool, model: str, clients: int, calls: int, stack: ExitStack
) -> dict[str, Any]:
    env: dict[str, str] = {"ENGRAM_ENRICHMENT": "false"}
    if shared:
        redis = start_redis(root / "redis")
        stack.callback(stop_redis, redis)
        s3 = start_radosgw(root / "radosgw")
        stack.callback(stop_radosgw, s3)
        os.environ.update(s3.environment())  # the spawned servers and boto3 read them
        from engram.storage.location import s3_client

        s3_client().create_bucket(Bucket="bench")
        env |= {"ENGRAM_STORAGE_URI": "s3://bench/engram", "ENGRAM_SESSIONS_URL": redis.url, "ENGRAM_USER_ID_KEY": KEY}
    tokens_dir = root / "tokens"
    tokens_dir.mkdir(parents=True)
    tokens = [issue_token(tokens_dir, [f"user{n}"], ["read", "write"]) for n in range(clients)]
    env["ENGRAM_TOKENS_FILE"] = str(tokens_dir / "tokens.json")
    ports = [free_port() for _ in range(replicas)]
    for index, port in enumerate(ports):
        server = spawn(root / f"replica-{index}", "streamable-http", env=env, port=port, model=model)
        stack.callback(server.stop, signal.SIGTERM)
    url = f"http://127.0.0.1:{ports[0]}"
    if replicas > 1:
        lb_port, lb_dir = free_port(), root / "haproxy"
        script = str(ROOT / "scripts" / "haproxy-engine.sh")
        subprocess.run([script, "start", str(lb_dir), str(lb_port), *map(str, ports)], check=True, capture_output=True)
        stack.callback(lambda: subprocess.run([script, "stop", str(lb_dir)], check=False))
        url = f"http://127.0.0.1:{lb_port}"
    results = anyio.run(_run_clients, url, tokens, calls)
    return {"configuration": name, "replicas": replicas, **results}


def main() -> None:
    """Run the three configurations and print a table (and JSON with --out)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--calls", type=int, default=50, help="remember calls, then recall calls, per client")
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "distributed.json")
    args = parser.parse_args()
    plans: list[tuple[str, int, bool]] = [
        ("embedded (local LanceDB + journal, diskcache)", 1, False),
        ("1 replica on Redis + radosgw", 1, True),
        ("3 replicas on Redis + radosgw behind haproxy", 3, True),
    ]
    rows: list[dict[str, Any]] = []
    for name, replicas, shared in plans:
        with tempfile.TemporaryDirectory(prefix="engram-bench-") as scratch, ExitStack() as stack:
            saved = dict(os.environ)
            stack.callback(_restore(saved))
            rows.append(
                _configuration(name, Path(scratch), replicas, shared, args.model, args.clients, args.calls, stack)
            )
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n{args.clients} clients x {args.calls} calls, model {args.model}, {os.cpu_count()} CPUs")
    print(f"{'configuration':48} {'op':8} {'p50 ms':>8} {'p95 ms':>8} {'calls/s':>8}")
    for row in rows:
        for operation in ("remember", "recall"):
            r = row[operation]
            print(f"{row['configuration']:48} {operation:8} {r['p50_ms']:8} {r['p95_ms']:8} {r['calls_per_s']:8}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"clients": args.clients, "calls": args.calls, "model": args.model, "rows": rows}))


def _restore(saved: dict[str, str]) -> Callable[[], None]:
    def restore() -> None:
        os.environ.clear()
        os.environ.update(saved)

    return restore


if __name__ == "__main__":
    main()
