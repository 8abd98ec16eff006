"""Knowledge ingest throughput: chunks per second of `engram ingest` against raw batched embedding of the same chunks.

A corpus of Markdown files is generated (deterministically) from the repository's own documentation: each file
gets sections of shuffled paragraphs under unique headings. Then, per run, in a fresh data directory:

* ``ingest``: KnowledgeService.ingest_paths on the folder (walk, hash, parse, chunk, embed in batches, one commit
  per group of files, final compaction), wall time -> chunks written per second;
* ``raw``: the same chunk texts (what ingest embeds: title > headings + content) sent straight to the same
  embedder in batches of the same size, from a worker thread as the service calls it -> chunks per second;
* ``reingest``: the same folder again, untouched (every file skipped by its hash).

The model is loaded once and shared, so neither side pays for loading it. Runs alternate raw and ingest; the
medians are reported, with their ratio (ingest within 2x of raw is the target).

Usage::

    .venv/bin/python benchmarks/ingest.py [--files 40] [--runs 3] [--backend torch|onnx|onnx-int8]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
from machine import machine_info  # benchmarks/machine.py (scripts run from this folder)

from engram.config import Settings
from engram.core.knowledge import KnowledgeService, chunk_index_text
from engram.core.knowledge_chunking import chunk_document
from engram.core.knowledge_models import DocumentFormat
from engram.core.ports import Embedder
from engram.embeddings import load_embedder
from engram.ingest import parse_document
from engram.runtime import open_memory

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "ingest.json"
SOURCES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT.parent / "shared" / "notes").glob("*.md"))]


def _paragraphs() -> list[str]:
    """Prose paragraphs of the repository's documentation (no tables, code or headings)."""
    found: list[str] = []
    for path in SOURCES:
        if not path.exists():
            continue
        for block in path.read_text().split("\n\n"):
            block = block.strip()
            if len(block.split()) >= 12 and not block.startswith(("#", "|", "```", "    ", "*", "-")):
                found.append(" ".join(block.split()))
    if not found:
        raise SystemExit("no documentation found to build the corpus from")
    return found


def write_corpus(folder: Path, files: int, seed: int = 7) -> None:
    """`files` Markdown documents of 4-7 sections with 3-6 paragraphs each, unique per file."""
    rng = random.Random(seed)
    paragraphs = _paragraphs()
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(files):
        lines = [f"# Handbook volume {number}", ""]
        for section in range(rng.randint(4, 7)):
            lines += [f"## Chapter {number}.{section}: {rng.choice(paragraphs).split()[0]}", ""]
            for _ in range(rng.randint(3, 6)):
                lines += [f"(Ref {number}-{section}) {rng.choice(paragraphs)}", ""]
        (folder / f"volume-{number:03d}.md").write_text("\n".join(lines))


def chunk_texts(folder: Path, knowledge: KnowledgeService) -> list[str]:
    """The exact texts an ingest embeds for the folder's files (title > headings, then content)."""
    texts: list[str] = []
    for path in sorted(folder.glob("*.md")):
        document = parse_document(path.read_bytes(), DocumentFormat.MARKDOWN)
        title = document.title or path.stem
        for draft in chunk_document(document, knowledge.policy.chunk_tokens, knowledge.policy.chunk_overlap):
            texts.append(chunk_index_text(title, draft.heading_path, draft.content))
    return texts


async def raw_throughput(embedder: Embedder, texts: list[str], batch: int) -> float:
    """Chunks per second of the embedder alone, called from a worker thread as the service calls it."""
    started = time.perf_counter()
    for start in range(0, len(texts), batch):
        await anyio.to_thread.run_sync(embedder.embed, texts[start : start + batch])
    return len(texts) / (time.perf_counter() - started)


async def ingest_once(embedder: Embedder, corpus: Path, data_dir: Path) -> dict[str, Any]:
    memory = await anyio.to_thread.run_sync(lambda: open_memory(Settings(data_dir=data_dir), embedder))
    try:
        assert memory.knowledge is not None
        started = time.perf_counter()
        report = await memory.knowledge.ingest_paths(None, [corpus])
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        again = await memory.knowledge.ingest_paths(None, [corpus])
        reingest = time.perf_counter() - started
        assert not report.failed and again.unchanged == report.files_seen
        return {
            "chunks": report.chunks_written,
            "embedded": report.chunks_embedded,
            "seconds": seconds,
            "chunks_per_s": report.chunks_written / seconds,
            "reingest_unchanged_s": reingest,
        }
    finally:
        memory.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backend", choices=["torch", "onnx", "onnx-int8"], default="torch")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="engram-ingest-bench-") as scratch:
        root = Path(scratch)
        corpus = root / "corpus"
        write_corpus(corpus, args.files)
        started = time.perf_counter()
        embedder = load_embedder(
            "all-MiniLM-L6-v2", backend=args.backend, threads=args.threads, cache_dir=root / "models"
        )
        load_s = time.perf_counter() - started
        embedder.embed(["warm-up"])
        memory = open_memory(Settings(data_dir=root / "probe"), embedder)
        assert memory.knowledge is not None
        policy = memory.knowledge.policy
        texts = chunk_texts(corpus, memory.knowledge)
        memory.close()
        print(f"corpus: {args.files} files, {len(texts)} chunks; model loaded in {load_s:.1f} s ({args.backend})")

        raw: list[float] = []
        ingest: list[dict[str, Any]] = []
        for run in range(args.runs):
            # Alternating which goes first spreads the machine's drifting load over both.
            if run % 2:
                ingest.append(anyio.run(ingest_once, embedder, corpus, root / f"data-{run}"))
            raw.append(anyio.run(raw_throughput, embedder, texts, policy.embed_batch))
            if not run % 2:
                ingest.append(anyio.run(ingest_once, embedder, corpus, root / f"data-{run}"))
            print(
                f"run {run + 1}: raw {raw[-1]:.1f} chunks/s, ingest {ingest[-1]['chunks_per_s']:.1f} chunks/s "
                f"({ingest[-1]['chunks']} chunks in {ingest[-1]['seconds']:.1f} s), unchanged re-ingest "
                f"{ingest[-1]['reingest_unchanged_s']:.2f} s",
                flush=True,
            )

    raw_median = statistics.median(raw)
    ingest_median = statistics.median(r["chunks_per_s"] for r in ingest)
    result = {
        "benchmark": "ingest",
        "when": datetime.now(UTC).isoformat(),
        "machine": machine_info(),
        "backend": args.backend,
        "threads": args.threads,
        "files": args.files,
        "chunks": len(texts),
        "embed_batch": policy.embed_batch,
        "chunk_tokens": policy.chunk_tokens,
        "model_load_s": load_s,
        "raw_chunks_per_s": raw,
        "ingest_runs": ingest,
        "median_raw_chunks_per_s": raw_median,
        "median_ingest_chunks_per_s": ingest_median,
        "raw_over_ingest": raw_median / ingest_median,
    }
    print(
        f"median: raw {raw_median:.1f} chunks/s, ingest {ingest_median:.1f} chunks/s, "
        f"ratio raw/ingest {raw_median / ingest_median:.2f} (target <= 2)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
