"""What a benchmark's numbers depend on: the machine, the interpreter and the package versions."""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

PACKAGES = (
    "engram-mcp",
    "mcp",
    "lancedb",
    "torch",
    "sentence-transformers",
    "transformers",
    "onnxruntime",
    "tokenizers",
    "onnx",
)


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """CPU count and affinity, load, Python and platform, and the versions of the packages that matter."""
    return {
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "packages": {name: _version(name) for name in PACKAGES},
    }


def write_report(out: Path, results: list[dict[str, Any]], **context: Any) -> None:
    """Write a benchmark's results as JSON, with what they depend on (the machine) and when they were taken."""
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"results": results, **context, "machine": machine_info(), "finished_at": datetime.now(UTC).isoformat()}
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)
