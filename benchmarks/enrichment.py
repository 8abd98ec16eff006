"""What metadata extraction costs on write: `remember` latency with and without it, and each extractor's share.

Two MemoryServices (real all-MiniLM-L6-v2, real LanceDB and diskcache in temp dirs) take the same texts, one with
enrichment and one without; calls alternate between them so that load on the machine hits both alike. Then the
extractors run alone on the same texts. Prints medians and writes JSON.

Batches (`remember_many` of BATCH items) are compared the same way.

Usage: python benchmarks/enrichment.py [--count 300] [--backend torch|onnx|onnx-int8] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
from machine import machine_info  # benchmarks/machine.py (scripts run from this folder)

from engram.config import Settings
from engram.core.models import RememberItem
from engram.core.service import MemoryService
from engram.embeddings import load_embedder
from engram.enrichment import MetadataEnricher
from engram.runtime import open_memory

ROOT = Path(__file__).resolve().parent.parent
BATCH = 100
BATCHES = 4
LOCOMO = ROOT.parent / "shared" / "bench" / "locomo10.jsonl"
SUPPORT = [
    "Hi, I was charged twice for my Premium subscription this month and I want a refund.",
    "My iPhone 15 keeps crashing every time I open the app since the latest update.",
    "Thanks so much, Sarah from support sorted everything out in minutes. Great service!",
    "Please always reply in French; I prefer email over phone calls.",
    "I moved to Lisbon last March and need to change the billing address on my account.",
    "I can't log in to my account, the password reset email never arrives.",
    "My order 4471 still hasn't arrived, the tracking number shows it stuck in Chicago since Monday.",
    "Remind me to call Dr. Patel about the appointment on March 3rd.",
]


def texts(count: int) -> list[str]:
    """Distinct realistic texts: LoCoMo turns when available, else support messages; numbered to stay unique."""
    base = list(SUPPORT)
    if LOCOMO.exists():
        base = [turn["text"] for line in LOCOMO.read_text().splitlines() for turn in json.loads(line)["turns"]]
    picked = random.Random(7).sample(base, min(count, len(base)))
    return [f"{text} (#{i})" for i, text in enumerate(picked * (count // len(picked) + 1))][:count]


def _ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 2),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 2),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 2),
    }


async def _remember(service: MemoryService, user: str, text: str) -> float:
    started = time.perf_counter()
    await service.remember(user, text, session_id="bench")
    return time.perf_counter() - started


async def _remember_many(service: MemoryService, user: str, batch: list[str]) -> float:
    started = time.perf_counter()
    await service.remember_many(user, [RememberItem(content=text, session_id="batch") for text in batch])
    return time.perf_counter() - started


async def measure(count: int, backend: str) -> dict[str, Any]:
    """Run the comparison and the per-extractor breakdown; return the numbers."""
    data = texts(count)
    started = time.perf_counter()
    embedder = load_embedder("all-MiniLM-L6-v2", threads=1, backend=backend)
    load_seconds = time.perf_counter() - started
    started = time.perf_counter()
    extractor = MetadataEnricher(embedder)  # cold: imports the libraries, loads place names, embeds the labels
    enricher_build_seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        enriched = open_memory(Settings(data_dir=root / "on", embedding_backend=backend), embedder)
        plain = open_memory(Settings(data_dir=root / "off", embedding_backend=backend, enrichment=False), embedder)
        try:
            for warm in range(5):  # first calls pay for index creation and lazy imports
                await _remember(enriched, "warm", f"warm-up {warm}")
                await _remember(plain, "warm", f"warm-up {warm}")
            with_, without = [], []
            for i, text in enumerate(data):
                pair = ((enriched, with_), (plain, without))
                for service, out in pair if i % 2 == 0 else pair[::-1]:
                    out.append(await _remember(service, "user", text))
            batch_with, batch_without = [], []
            extra = texts(count + BATCH * BATCHES)[count:]
            for b in range(BATCHES):
                batch = extra[b * BATCH : (b + 1) * BATCH]
                pair = ((enriched, batch_with), (plain, batch_without))
                for service, out in pair if b % 2 == 0 else pair[::-1]:
                    out.append(await _remember_many(service, "batcher", batch))
        finally:
            enriched.close()
            plain.close()
    vectors = embedder.embed(data)
    per_text: list[float] = []
    for i, text in enumerate(data):
        started = time.perf_counter()
        extractor.enrich([text], vectors[i : i + 1])
        per_text.append(time.perf_counter() - started)
    on, off = statistics.median(with_), statistics.median(without)
    return {
        "count": count,
        "backend": backend,
        "model_load_s": round(load_seconds, 2),
        "enricher_build_s": round(enricher_build_seconds, 2),
        "remember_with_enrichment": _ms(with_),
        "remember_without_enrichment": _ms(without),
        "added_median_ms": round((on - off) * 1000, 2),
        "added_fraction_of_median": round((on - off) / off, 3),
        "remember_many_per_item_with_enrichment_ms": round(statistics.median(batch_with) / BATCH * 1000, 2),
        "remember_many_per_item_without_enrichment_ms": round(statistics.median(batch_without) / BATCH * 1000, 2),
        "extraction_per_memory": _ms(per_text),
        "extractor_mean_ms": {name: round(s / count * 1000, 3) for name, s in extractor.seconds.items()},
        "mean_text_chars": round(statistics.fmean(len(t) for t in data), 1),
    }


def main() -> None:
    """Parse arguments, measure, print and write the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--backend", default="torch", choices=["torch", "onnx", "onnx-int8"])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "enrichment.json")
    args = parser.parse_args()
    result = anyio.run(measure, args.count, args.backend)
    result["machine"] = machine_info()
    result["finished_at"] = datetime.now(UTC).isoformat()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    on, off = result["remember_with_enrichment"], result["remember_without_enrichment"]
    print(f"remember, {args.count} calls each ({args.backend}, mean text {result['mean_text_chars']} chars)")
    print(f"  without enrichment: median {off['median_ms']} ms, p90 {off['p90_ms']} ms")
    print(f"  with enrichment:    median {on['median_ms']} ms, p90 {on['p90_ms']} ms")
    print(f"  added: {result['added_median_ms']} ms ({result['added_fraction_of_median']:.1%} of the median)")
    batch_on = result["remember_many_per_item_with_enrichment_ms"]
    batch_off = result["remember_many_per_item_without_enrichment_ms"]
    print(f"remember_many of {BATCH}: {batch_off} ms per item without, {batch_on} ms with enrichment")
    print(f"extraction alone: median {result['extraction_per_memory']['median_ms']} ms per memory; mean per extractor:")
    for name, ms in result["extractor_mean_ms"].items():
        print(f"  {name:10s} {ms} ms")
    print(f"enricher built in {result['enricher_build_s']} s (cold, in a fresh process); written to {args.out}")


if __name__ == "__main__":
    main()
