"""Server CPU of a conversation turn's `remember` over MCP stdio, early in a session and late in it.

Spawns `engram serve` on a fresh data directory (shipped int8 model), stores one long conversation turn by turn
(LoCoMo's turns, alternating `user` and `assistant`, with `session_id`, `role` and a `speaker`), one call at a
time, and reads the server process tree's CPU time around every call. Prints CPU ms per turn and wall p50 for the
first window of turns and the last (issue #15: at most 20 ms of CPU per turn, the same at turn 5 and turn 500),
and writes JSON.

Usage: python benchmarks/session_turns.py [--turns 500] [--window 50] [--command /other/venv/bin/engram]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from machine import write_report  # benchmarks/machine.py (scripts run from this folder)
from mcp import Client, StdioServerParameters
from peers import children_now, new_child, process_tree_cpu

ROOT = Path(__file__).resolve().parent.parent
LOCOMO = ROOT.parent / "shared" / "bench" / "locomo10.jsonl"


def turns(count: int) -> list[str]:
    """`count` real conversation turns (LoCoMo's, in order, numbered to stay distinct) or synthetic ones."""
    texts: list[str] = []
    if LOCOMO.exists():
        for line in LOCOMO.read_text().splitlines():
            texts += [turn["text"] for turn in json.loads(line)["turns"]]
    if not texts:
        texts = [
            f"I went to the garden with my sister and we talked about the violin lessons, day {i}" for i in range(50)
        ]
    return [f"{texts[i % len(texts)]} ({i})" for i in range(count)]


def window(cpu: list[float], wall: list[float], start: int, size: int) -> dict[str, float]:
    """CPU ms per call (mean) and wall p50 ms over turns start+1 .. start+size."""
    return {
        "first_turn": start + 1,
        "last_turn": start + size,
        "cpu_ms_per_turn": round(1000 * statistics.fmean(cpu[start : start + size]), 2),
        "wall_p50_ms": round(1000 * statistics.median(wall[start : start + size]), 2),
    }


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    """One fresh server, one session of `args.turns` turns; CPU and wall per call."""
    with tempfile.TemporaryDirectory(prefix="engram-turns-") as scratch:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
        env |= {"ENGRAM_DATA_DIR": str(Path(scratch) / "data"), "ENGRAM_LOG_LEVEL": "WARNING", "HF_HUB_OFFLINE": "1"}
        before = children_now()
        async with Client(StdioServerParameters(command=args.command, args=["serve"], env=env)) as client:
            pid = new_child(before)
            await client.call_tool("recall", {"user_id": "u0", "query": "warm-up"})  # the model is loaded
            cpu: list[float] = []
            wall: list[float] = []
            for number, text in enumerate(turns(args.turns)):
                role, speaker = ("user", "Caroline") if number % 2 == 0 else ("assistant", "Melanie")
                arguments = {
                    "user_id": "u0",
                    "content": text,
                    "session_id": "s1",
                    "role": role,
                    "metadata": {"speaker": speaker},
                }
                spent, started = process_tree_cpu(pid), time.perf_counter()
                outcome = await client.call_tool("remember", arguments)
                wall.append(time.perf_counter() - started)
                cpu.append(process_tree_cpu(pid) - spent)
                if outcome.is_error:
                    raise RuntimeError(f"turn {number + 1} failed: {outcome.content}")
    size = min(args.window, args.turns)
    return {
        "turns": args.turns,
        "early": window(cpu, wall, 0, size),
        "late": window(cpu, wall, args.turns - size, size),
        "all_cpu_ms_per_turn": round(1000 * statistics.fmean(cpu), 2),
    }


def main() -> int:
    """Run the measurement, print it and write the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=500)
    parser.add_argument("--window", type=int, default=50, help="turns averaged at the start and at the end")
    parser.add_argument("--command", default=str(Path(sys.executable).with_name("engram")), help="engram executable")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "session_turns.json")
    args = parser.parse_args()
    result = anyio.run(measure, args)
    for name in ("early", "late"):
        part = result[name]
        print(
            f"turns {part['first_turn']:>4}-{part['last_turn']:<4}  CPU {part['cpu_ms_per_turn']:>6.2f} ms/turn"
            f"  wall p50 {part['wall_p50_ms']:>6.2f} ms"
        )
    print(f"all {result['turns']} turns: CPU {result['all_cpu_ms_per_turn']:.2f} ms/turn")
    write_report(args.out, [result])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
