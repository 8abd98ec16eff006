"""Start-up latency of `engram serve` over stdio, measured through a real MCP client.

For each run a fresh server process is spawned on an empty temporary data directory, and the wall time
from spawn is taken at four points:

* ``initialize``: the client's connection handshake completed;
* ``tools_list``: the first ``tools/list`` answered (the target is well under 2 s: the embedding
  model loads in a background thread, so listing must not wait for it);
* ``first_recall``: the first ``recall`` answered (this one waits for the model);
* ``shutdown``: time from closing the client until the process is gone (not counted from spawn).

Usage::

    .venv/bin/python benchmarks/startup.py --runs 5
    .venv/bin/python benchmarks/startup.py --model hash --out /tmp/startup-hash.json
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

import anyio
from machine import machine_info  # benchmarks/machine.py (scripts run from this folder)
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "startup.json"
DEFAULT_MODEL = "all-MiniLM-L6-v2"  # the bundled model, as engram.config.DEFAULT_EMBEDDING_MODEL
TOOLS_LIST_TARGET_S = 2.0
METRICS = ("initialize", "tools_list", "first_recall", "shutdown")


def server_command() -> list[str]:
    """`<venv>/bin/engram serve` next to this interpreter, else `python -m engram serve`."""
    script = Path(sys.executable).parent / ("engram.exe" if os.name == "nt" else "engram")
    if script.exists():
        return [str(script), "serve"]
    return [sys.executable, "-m", "engram", "serve"]


def server_env(data_dir: Path, model: str) -> dict[str, str]:
    """The caller's environment without its own ENGRAM_* settings, plus this run's data dir and model."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ENGRAM_")}
    env.update(
        {
            "ENGRAM_DATA_DIR": str(data_dir),
            "ENGRAM_EMBEDDING_MODEL": model,
            "HF_HUB_OFFLINE": "1",
        }
    )
    return env


async def one_run(command: list[str], model: str, log_path: Path, timeout: float) -> dict[str, float]:
    """Spawn one server on a fresh data dir and time it; the server's stderr goes to `log_path`."""
    with tempfile.TemporaryDirectory(prefix="engram-bench-") as tmp, log_path.open("a") as log:
        log.write(f"\n===== run at {datetime.now(UTC).isoformat()} =====\n")
        log.flush()
        params = StdioServerParameters(command=command[0], args=command[1:], env=server_env(Path(tmp), model))
        sample: dict[str, float] = {}
        with anyio.fail_after(timeout):
            start = time.perf_counter()
            async with Client(stdio_client(params, errlog=log)) as client:
                sample["initialize"] = time.perf_counter() - start
                listed = await client.list_tools()
                sample["tools_list"] = time.perf_counter() - start
                if not listed.tools:
                    raise RuntimeError("tools/list returned no tools")
                result = await client.call_tool("recall", {"user_id": "bench", "query": "what does she like to eat?"})
                sample["first_recall"] = time.perf_counter() - start
                if result.is_error:
                    raise RuntimeError(f"recall failed: {result.content}")
                closing = time.perf_counter()
            sample["shutdown"] = time.perf_counter() - closing
    return sample


def print_table(samples: list[dict[str, float]], medians: dict[str, float]) -> None:
    header = f"{'run':>4}  " + "  ".join(f"{name + ' (s)':>17}" for name in METRICS)
    print(header)
    print("-" * len(header))
    for index, sample in enumerate(samples, 1):
        print(f"{index:>4}  " + "  ".join(f"{sample[name]:>17.3f}" for name in METRICS))
    print("-" * len(header))
    print(f"{'med':>4}  " + "  ".join(f"{medians[name]:>17.3f}" for name in METRICS))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="server processes to spawn (default 5)")
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"ENGRAM_EMBEDDING_MODEL for the server (default {DEFAULT_MODEL})"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per run (default 120)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    out: Path = args.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    log_path = out.with_suffix(".server.log")
    log_path.write_text("")
    command = server_command()
    print(f"command: {' '.join(command)}  model: {args.model}  runs: {args.runs}")
    print(f"server stderr: {log_path}")

    samples: list[dict[str, float]] = []
    for index in range(args.runs):
        sample = anyio.run(one_run, command, args.model, log_path, args.timeout)
        samples.append(sample)
        print(
            f"  run {index + 1}/{args.runs}: tools/list {sample['tools_list']:.3f} s, "
            f"first recall {sample['first_recall']:.3f} s",
            flush=True,
        )

    medians = {name: statistics.median(s[name] for s in samples) for name in METRICS}
    print()
    print_table(samples, medians)
    met = medians["tools_list"] < TOOLS_LIST_TARGET_S
    verdict = f"target < {TOOLS_LIST_TARGET_S} s: {'OK' if met else 'OVER TARGET'}"
    print(f"\nmedian spawn -> tools/list:   {medians['tools_list']:.3f} s  ({verdict})")
    print(f"median spawn -> first recall: {medians['first_recall']:.3f} s")

    report = {
        "benchmark": "startup",
        "timestamp": datetime.now(UTC).isoformat(),
        "command": command,
        "model": args.model,
        "runs": args.runs,
        "units": "seconds",
        "metrics": {
            "initialize": "spawn -> MCP connection initialised",
            "tools_list": "spawn -> first tools/list answered",
            "first_recall": "spawn -> first recall answered (waits for the embedding model)",
            "shutdown": "client close -> server process gone",
        },
        "target": {"tools_list_median_below": TOOLS_LIST_TARGET_S, "met": met},
        "samples": samples,
        "medians": medians,
        "machine": machine_info(),
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
