"""Start-up latency of `engram serve` over stdio, measured through a real MCP client.

For each run a fresh server process is spawned on an empty temporary data directory (or, with ``--data-dir``, on
a fresh copy of an existing one), and the wall time
from spawn is taken at four points:

* ``initialize``: the client's connection handshake completed;
* ``tools_list``: the first ``tools/list`` answered (target: under 1 s; the embedding model loads in a
  background thread, so listing must not wait for it);
* ``first_recall``: the first ``recall`` answered (this one waits for the model; target: under 2.5 s);
* ``shutdown``: time from closing the client until the process is gone (not counted from spawn);
* ``cpu_tools_list`` / ``cpu_first_recall``: CPU seconds the server had used at those two points (from
  ``/proc/<pid>/stat``): the work done, which a busy machine does not inflate the way it inflates wall time.

Just before shutdown the server's peak resident memory (``VmHWM`` in ``/proc/<pid>/status``, Linux; target:
under 400 MB) is read, and whether a torch library is mapped into it (``/proc/<pid>/maps``).

The default (the bundled model on ``onnx-int8``) ships built: no run exports anything. Other backends and models
read their ONNX build from a models directory shared by every run (``--models-dir``, default a temporary one);
it is made once before the runs by ``engram prepare``, timed as ``prepare_s``. With ``--fresh-models`` each run
gets its own empty models directory as well (a brand-new user: nothing prepared, nothing cached), and every run
records whether its server built a model (``exported``; for the default it must be false: no export on the
request path).

Usage::

    .venv/bin/python benchmarks/startup.py --runs 5
    .venv/bin/python benchmarks/startup.py --backend torch --runs 3 --out /tmp/startup-torch.json
    .venv/bin/python benchmarks/startup.py --model hash --out /tmp/startup-hash.json
    .venv/bin/python benchmarks/startup.py --fresh-models --runs 5
    .venv/bin/python benchmarks/startup.py --data-dir /path/to/a/10000-memory/data --runs 5
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
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
DEFAULT_BACKEND = "onnx-int8"  # as engram.config.Settings.embedding_backend
TARGETS = {"tools_list": 1.0, "first_recall": 2.5, "peak_rss_mb": 400.0}
METRICS = ("initialize", "tools_list", "first_recall", "shutdown", "peak_rss_mb", "cpu_tools_list", "cpu_first_recall")


def engram_command(*args: str) -> list[str]:
    """`<venv>/bin/engram ARGS` next to this interpreter, else `python -m engram ARGS`."""
    script = Path(sys.executable).parent / ("engram.exe" if os.name == "nt" else "engram")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "engram", *args]


def server_env(data_dir: Path, model: str, backend: str, models_dir: Path) -> dict[str, str]:
    """The caller's environment without its own ENGRAM_* settings, plus this run's data dir, model and backend."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ENGRAM_")}
    env.update(
        {
            "ENGRAM_DATA_DIR": str(data_dir),
            "ENGRAM_EMBEDDING_MODEL": model,
            "ENGRAM_EMBEDDING_BACKEND": backend,
            "ENGRAM_MODELS_DIR": str(models_dir),
            "HF_HUB_OFFLINE": "1",
        }
    )
    return env


def spawned_server() -> int | None:
    """The pid of the `engram serve` process this process spawned (Linux /proc), if there is exactly one."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if parent == os.getpid() and b"serve" in command:
            found.append(int(stat.parent.name))
    return found[0] if len(found) == 1 else None


def cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) the process has used so far: on a busy machine, a measure of the work done that
    other jobs do not inflate the way they inflate wall time (NaN off Linux)."""
    if pid is None:
        return float("nan")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_of(pid: int | None) -> tuple[float, bool | None]:
    """Peak RSS in MB (VmHWM) of `pid`, and whether a torch library is mapped into it (NaN/None off Linux)."""
    if pid is None:
        return float("nan"), None
    status = Path(f"/proc/{pid}/status").read_text()
    peak_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    return peak_kb / 1024, "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def prepare(model: str, backend: str, models_dir: Path) -> float:
    """Run `engram prepare` once (the export, for the ONNX backends); return its wall time."""
    env = server_env(models_dir.parent, model, backend, models_dir)
    started = time.perf_counter()
    subprocess.run(engram_command("prepare"), env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - started


#: What the server logs when it builds a model into the cache (engram.embeddings.onnx_cache).
EXPORT_MARKERS = ("building the ONNX graph", "exporting it again", "to ONNX in ")


async def one_run(
    command: list[str],
    env: dict[str, str],
    log_path: Path,
    timeout: float,
    *,
    fresh_models: bool = False,
    data_dir: Path | None = None,
    user: str = "bench",
) -> tuple[dict[str, float], bool | None]:
    """Spawn one server on a fresh data dir, or a fresh copy of `data_dir` (and models dir, if `fresh_models`) and
    time it; its stderr goes to `log_path`; sample["exported"] is 1.0 if the server built a model during the run."""
    with tempfile.TemporaryDirectory(prefix="engram-bench-") as tmp, log_path.open("a") as log:
        if data_dir is not None:
            shutil.copytree(data_dir, Path(tmp) / "data")
        log.write(f"\n===== run at {datetime.now(UTC).isoformat()} =====\n")
        log.flush()
        started_at = log.tell()
        run_env = {**env, "ENGRAM_DATA_DIR": str(Path(tmp) / "data")}
        if fresh_models:
            run_env["ENGRAM_MODELS_DIR"] = str(Path(tmp) / "models")
        params = StdioServerParameters(command=command[0], args=command[1:], env=run_env)
        sample: dict[str, float] = {}
        with anyio.fail_after(timeout):
            start = time.perf_counter()
            async with Client(stdio_client(params, errlog=log)) as client:
                sample["initialize"] = time.perf_counter() - start
                listed = await client.list_tools()
                sample["tools_list"] = time.perf_counter() - start
                server = spawned_server()
                sample["cpu_tools_list"] = cpu_seconds(server)
                if not listed.tools:
                    raise RuntimeError("tools/list returned no tools")
                result = await client.call_tool("recall", {"user_id": user, "query": "what does she like to eat?"})
                sample["first_recall"] = time.perf_counter() - start
                if result.is_error:
                    raise RuntimeError(f"recall failed: {result.content}")
                sample["cpu_first_recall"] = cpu_seconds(server)
                sample["peak_rss_mb"], torch_loaded = memory_of(server)
                closing = time.perf_counter()
            sample["shutdown"] = time.perf_counter() - closing
        with log_path.open() as written:
            written.seek(started_at)
            text = written.read()
        sample["exported"] = float(any(marker in text for marker in EXPORT_MARKERS))
    return sample, torch_loaded


def print_table(samples: list[dict[str, float]], medians: dict[str, float]) -> None:
    header = f"{'run':>4}  " + "  ".join(f"{name + (' (s)' if name != 'peak_rss_mb' else ''):>17}" for name in METRICS)
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
    parser.add_argument(
        "--backend",
        default=DEFAULT_BACKEND,
        choices=("torch", "onnx", "onnx-int8"),
        help=f"ENGRAM_EMBEDDING_BACKEND for the server (default {DEFAULT_BACKEND})",
    )
    parser.add_argument("--models-dir", type=Path, help="ONNX exports shared by the runs (default: a temporary dir)")
    parser.add_argument(
        "--fresh-models",
        action="store_true",
        help="give every run its own empty models dir too, and skip engram prepare (a brand-new user)",
    )
    parser.add_argument(
        "--data-dir", type=Path, help="start every run on a fresh copy of this data directory (default: an empty one)"
    )
    parser.add_argument(
        "--user", default="bench", help="whose memories the first recall asks for (rss.py writes u0..u4; default bench)"
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
    command = engram_command("serve")
    print(f"command: {' '.join(command)}  model: {args.model}  backend: {args.backend}  runs: {args.runs}")
    print(f"server stderr: {log_path}")

    with tempfile.TemporaryDirectory(prefix="engram-bench-models-") as scratch:
        models_dir = (args.models_dir or Path(scratch) / "models").resolve()
        prepare_s = 0.0 if args.fresh_models else prepare(args.model, args.backend, models_dir)
        if not args.fresh_models:
            print(f"engram prepare (one-time export, or a check of an existing one): {prepare_s:.1f} s", flush=True)
        env = server_env(Path(scratch) / "unused", args.model, args.backend, models_dir)
        samples: list[dict[str, float]] = []
        torch_seen: list[bool | None] = []
        for index in range(args.runs):
            sample, torch_loaded = anyio.run(
                functools.partial(
                    one_run,
                    command,
                    env,
                    log_path,
                    args.timeout,
                    fresh_models=args.fresh_models,
                    data_dir=args.data_dir,
                    user=args.user,
                )
            )
            samples.append(sample)
            torch_seen.append(torch_loaded)
            print(
                f"  run {index + 1}/{args.runs}: tools/list {sample['tools_list']:.3f} s, "
                f"first recall {sample['first_recall']:.3f} s, peak RSS {sample['peak_rss_mb']:.0f} MB"
                + (", built a model during the run" if sample["exported"] else ""),
                flush=True,
            )

    medians = {name: statistics.median(s[name] for s in samples) for name in METRICS}
    print()
    print_table(samples, medians)
    met = {name: medians[name] < limit for name, limit in TARGETS.items()}
    for name, limit in TARGETS.items():
        unit = "MB" if name == "peak_rss_mb" else "s"
        verdict = "OK" if met[name] else "OVER TARGET"
        print(f"median {name:<13} {medians[name]:8.3f} {unit}  (target < {limit} {unit}: {verdict})")
    print(f"torch mapped into the server: {torch_seen}")
    exports = [bool(sample["exported"]) for sample in samples]
    print(f"a model was built during the run (export on the request path): {exports}")

    report = {
        "benchmark": "startup",
        "timestamp": datetime.now(UTC).isoformat(),
        "command": command,
        "model": args.model,
        "backend": args.backend,
        "runs": args.runs,
        "units": {"peak_rss_mb": "MB", "other": "seconds"},
        "metrics": {
            "prepare_s": "engram prepare before the runs: the one-time ONNX export (0-ish if already exported)",
            "initialize": "spawn -> MCP connection initialised",
            "tools_list": "spawn -> first tools/list answered",
            "first_recall": "spawn -> first recall answered (waits for the embedding model)",
            "shutdown": "client close -> server process gone",
            "peak_rss_mb": "the server's peak resident memory (VmHWM) after the first recall",
            "cpu_tools_list": "CPU seconds (user + system, all threads) the server had used when tools/list returned",
            "cpu_first_recall": "CPU seconds the server had used when the first recall returned",
            "torch_loaded": "a libtorch library was mapped into the server process",
            "exported": "1 if the server built a model into its models dir during the run (logged by onnx_cache)",
        },
        "prepare_s": prepare_s,
        "fresh_models": args.fresh_models,
        "data_dir": None if args.data_dir is None else str(args.data_dir),
        "user": args.user,
        "exported_during_run": exports,
        "targets": {"median_below": TARGETS, "met": met},
        "torch_loaded": torch_seen,
        "samples": samples,
        "medians": medians,
        "machine": {**machine_info(), "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None},
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
