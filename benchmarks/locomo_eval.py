"""Retrieval quality on LoCoMo: the same evaluation as `engram eval`, with the report written as JSON.

Usage: python benchmarks/locomo_eval.py [PATH] [--out FILE] [--conversations N]
PATH defaults to ../shared/bench/locomo10.jsonl (evaluation-only data, not shipped with Engram).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engram.config import Settings
from engram.evaluation import run_evaluation

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "bench" / "locomo10.jsonl"


def main() -> int:
    """Run the evaluation and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "locomo.json")
    parser.add_argument("--conversations", type=int, default=None)
    args = parser.parse_args()
    if not args.path.exists():
        print(f"benchmark data not found at {args.path}; pass its path", file=sys.stderr)
        return 2
    _, table = run_evaluation(Settings(), args.path, limit=args.conversations, out=args.out)
    print(table)
    print(f"report written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
