"""Load on a remote Engram: N concurrent authenticated MCP clients doing a remember + recall mix over HTTP.

A fresh `engram serve --transport streamable-http` (or sse) is spawned on a free port with an empty data directory;
each client gets its own user and bearer token, and the clients share a fixed number of calls (a fraction of them
`remember`, the rest `recall`). Printed and written as JSON: throughput, latency p50/p95/p99 per operation and
overall, and the number of errors (the target is zero at 16 clients).

Usage::

    .venv/bin/python benchmarks/load.py                       # 16 clients, 800 calls, hash embedder
    .venv/bin/python benchmarks/load.py --clients 32 --calls 2000 --model all-MiniLM-L6-v2
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx2
from machine import machine_info  # benchmarks/machine.py (scripts run from this folder)
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from engram.auth.tokens import TokenFile

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "load.json"
TOPICS = ["tea", "hiking", "piano", "taxes", "garden", "chess", "flights", "recipes", "dentist", "budget"]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(latencies: list[float]) -> dict[str, float]:
    """Count and p50/p95/p99/mean in milliseconds."""
    ms = [value * 1000 for value in latencies]
    return {
        "count": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "mean_ms": round(statistics.fmean(ms), 2) if ms else float("nan"),
    }


def spawn(data_dir: Path, transport: str, port: int, model: str, log: Path) -> subprocess.Popen[bytes]:
    """Start the server and wait until /healthz says the model and stores are ready."""
    script = Path(sys.executable).parent / "engram"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "engram"]
    env = {key: value for key, value in os.environ.items() if not key.startswith("ENGRAM_")}
    env |= {"ENGRAM_DATA_DIR": str(data_dir), "ENGRAM_EMBEDDING_MODEL": model, "HF_HUB_OFFLINE": "1"}
    with log.open("ab") as out:
        process = subprocess.Popen(
            [*command, "serve", "--transport", transport, "--port", str(port)], env=env, stdout=out, stderr=out
        )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}; see {log}")
        try:
            if httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return process
        except httpx2.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"the server was not ready in time; see {log}")


async def one_client(
    index: int,
    endpoint: str,
    transport: str,
    secret: str,
    calls: int,
    remember_share: float,
    samples: dict[str, list[float]],
    errors: list[str],
) -> None:
    """One client acting for its own user: `calls` calls, remembers first so that recalls find something."""
    rng = random.Random(index)
    headers = {"Authorization": f"Bearer {secret}"}
    stored = 0

    async def run(client: Client) -> None:
        nonlocal stored
        await client.list_tools()
        for call in range(calls):
            topic = rng.choice(TOPICS)
            if stored == 0 or rng.random() < remember_share:
                name = "remember"
                arguments: dict[str, Any] = {
                    "content": f"Client {index} note {call}: about {topic}, worth keeping ({rng.random():.6f}).",
                    "session_id": f"load-{index}",
                }
            else:
                name = "recall"
                arguments = {"query": f"what about {topic}?", "top_k": 5}
            started = time.perf_counter()
            try:
                result = await client.call_tool(name, arguments)
            except Exception as exc:  # a transport failure counts as an error, the run goes on
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
                continue
            elapsed = time.perf_counter() - started
            if result.is_error:
                errors.append(f"{name}: {result.content[0].text if result.content else '?'}")  # type: ignore[union-attr]
                continue
            samples[name].append(elapsed)
            stored += name == "remember"

    if transport == "sse":
        async with Client(sse_client(endpoint, headers=headers, timeout=60)) as client:
            await run(client)
    else:
        async with (
            httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(120.0)) as http,
            Client(streamable_http_client(endpoint, http_client=http)) as client,
        ):
            await run(client)


async def drive(
    endpoint: str, transport: str, secrets: list[str], calls: int, remember_share: float
) -> tuple[dict[str, list[float]], list[str], float]:
    """Run every client at once; return the latency samples, the errors and the wall time."""
    samples: dict[str, list[float]] = {"remember": [], "recall": []}
    errors: list[str] = []
    per_client = [calls // len(secrets) + (1 if i < calls % len(secrets) else 0) for i in range(len(secrets))]
    started = time.perf_counter()
    async with anyio.create_task_group() as tasks:
        for index, (secret, count) in enumerate(zip(secrets, per_client, strict=True)):
            tasks.start_soon(one_client, index, endpoint, transport, secret, count, remember_share, samples, errors)
    return samples, errors, time.perf_counter() - started


def main() -> None:
    """Parse arguments, run the load, print and write the results."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--calls", type=int, default=800, help="Total calls across all clients.")
    parser.add_argument("--remember-share", type=float, default=0.3, help="Fraction of calls that are remember.")
    parser.add_argument("--transport", choices=["streamable-http", "sse"], default="streamable-http")
    parser.add_argument("--model", default="hash", help="ENGRAM_EMBEDDING_MODEL of the server (default: hash).")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    args.out.parent.mkdir(parents=True, exist_ok=True)
    log = args.out.with_suffix(".server.log")
    with tempfile.TemporaryDirectory(prefix="engram-load-") as tmp:
        data_dir = Path(tmp) / "data"
        tokens = TokenFile(data_dir / "tokens.json")
        secrets = [tokens.create(users=[f"user{i}"], scopes=["read", "write"])[1] for i in range(args.clients)]
        port = free_port()
        process = spawn(data_dir, args.transport, port, args.model, log)
        try:
            endpoint = f"http://127.0.0.1:{port}" + ("/mcp" if args.transport == "streamable-http" else "/sse")
            samples, errors, wall = anyio.run(drive, endpoint, args.transport, secrets, args.calls, args.remember_share)
        finally:
            process.terminate()
            process.wait(60)

    done = sum(len(values) for values in samples.values())
    report = {
        "benchmark": "load",
        "finished_at": datetime.now(UTC).isoformat(),
        "machine": machine_info(),
        "transport": args.transport,
        "model": args.model,
        "clients": args.clients,
        "calls": args.calls,
        "remember_share": args.remember_share,
        "wall_s": round(wall, 3),
        "throughput_calls_per_s": round(done / wall, 1),
        "errors": len(errors),
        "error_examples": errors[:5],
        "all": summary(samples["remember"] + samples["recall"]),
        "remember": summary(samples["remember"]),
        "recall": summary(samples["recall"]),
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"{args.clients} clients, {done}/{args.calls} calls ok, {len(errors)} errors, "
        f"{report['throughput_calls_per_s']} calls/s over {args.transport} ({args.model})"
    )
    for name in ("all", "remember", "recall"):
        s = report[name]
        print(f"  {name:8s} n={s['count']:5d}", *(f"{q} {s[q + '_ms']:8.1f} ms" for q in ("p50", "p95", "p99")))
    print(f"written to {args.out}")
    if errors:
        print("first errors:", *errors[:5], sep="\n  ")
        sys.exit(1)


if __name__ == "__main__":
    main()
