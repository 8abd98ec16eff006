"""In-process CPU per `recall` through the real MCP path (in-memory `Client(server)`), and where it goes.

Loads the peer workload (`peer_workload.py`: N memories over U users) into a data directory once, with
`remember_many` (kept for later runs), then asks the workload's questions one at a time through an in-process
MCP client and prints the CPU ms per recall (`time.process_time`, so other load does not count), hit@5, and with
`--profile` the functions that took the CPU (cProfile, cumulative).

Usage: python benchmarks/recall_cpu.py [--n 10000] [--users 10] [--questions 300] [--data DIR] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import Client
from peer_workload import sample as sample_questions
from peer_workload import workload  # benchmarks/ (scripts run from this folder)

from engram.config import Settings
from engram.embeddings.threads import cap_native_threads

TOP_K = 5


async def _load(settings: Settings, items: list, users: int) -> None:
    from engram.runtime import open_memory

    memory = open_memory(settings)
    try:
        from engram.core.models import RememberItem

        for user in range(users):
            mine = [RememberItem(content=i.content) for i in items if i.user == f"user{user}"]
            for start in range(0, len(mine), 100):
                await memory.remember_many(f"user{user}", mine[start : start + 100])
    finally:
        memory.close()


async def _ask(settings: Settings, questions: list, profile: bool) -> tuple[float, float, int]:
    from engram.server.app import build_server

    server = build_server(settings)
    async with Client(server, raise_exceptions=True) as client:
        warm = questions[0]
        await client.call_tool("recall", {"user_id": warm.user, "query": warm.question, "top_k": TOP_K})
        # One warm-up recall per user loads whatever each user's first recall loads.
        for user in sorted({q.user for q in questions}):
            await client.call_tool("recall", {"user_id": user, "query": "warm up", "top_k": TOP_K})
        profiler = cProfile.Profile() if profile else None
        hits = 0
        cpu, wall = time.process_time(), time.perf_counter()
        if profiler is not None:
            profiler.enable()
        for item in questions:
            result = await client.call_tool("recall", {"user_id": item.user, "query": item.question, "top_k": TOP_K})
            hits += any(h.get("content") == item.content for h in (result.structured_content or {}).get("hits", []))
        if profiler is not None:
            profiler.disable()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if profiler is not None:
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(45)
    return cpu, wall, hits


def main() -> int:
    """Load (once) and ask; print CPU per recall."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--data", type=Path, default=None, help="data directory to reuse (loaded when empty)")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    # As `engram serve` does, before numpy loads (the imports above are deferred for it): one thread per native
    # pool. Uncapped, OpenBLAS's idle threads spun on the busy cores, and an in-process recall over 10,000 memories
    # of one user cost ~28 ms of CPU here against ~9 ms with the server's settings (load ~9).
    cap_native_threads(Settings().embedding_threads)
    data = args.data or Path(tempfile.mkdtemp(prefix="engram-recall-cpu-"))
    settings = Settings(data_dir=data, log_level="WARNING")
    items = workload(args.n, args.users)
    if not (data / "lancedb").exists():
        started = time.perf_counter()
        anyio.run(_load, settings, items, args.users)
        print(f"loaded {args.n} memories in {time.perf_counter() - started:.0f} s into {data}")
    questions = list(sample_questions(items, min(args.questions, args.n)))
    cpu, wall, hits = anyio.run(_ask, settings, questions, args.profile)
    count = len(questions)
    print(
        f"{count} recalls at {args.n} memories: CPU {1000 * cpu / count:.1f} ms per recall, "
        f"wall {1000 * wall / count:.1f} ms, hit@5 {hits / count:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
