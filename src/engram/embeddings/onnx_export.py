"""The one-time ONNX export of a sentence-transformers model into the model cache, run as its own process.

    python -m engram.embeddings.onnx_export --model all-MiniLM-L6-v2 --models-dir DIR [--threads N]

A BERT model with safetensors weights (all-MiniLM-L6-v2 and its family) is built directly from its weights with
the `onnx` package in seconds, without torch (`bert_graph`; the test suite checks its vectors against
sentence-transformers'). Any other model is exported with torch's exporter (the `[torch]` extra) and checked
against sentence-transformers' vectors here. Either way the graph is quantised to int8 and checked against fp32,
then both are published with a manifest as one cache entry (see `onnx_cache`). An intact entry already there is
reused; a damaged one is replaced. Prints one JSON line on stdout (`path`, `exported`, `seconds`); logs go to
stderr; a deliberate failure ends with one stderr line starting with `onnx_cache.ERROR_PREFIX`, exit status 2.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import cast

import numpy as np

from engram.core.errors import BackendUnavailable
from engram.core.ports import Vectors
from engram.embeddings.onnx import BATCH_SIZE, INPUT_NAMES, Encoder, OnnxEmbedder
from engram.embeddings.onnx_cache import (
    ERROR_PREFIX,
    FILES,
    CacheEntry,
    cache_entry,
    entry_problem,
    exclusive,
    write_manifest,
)
from engram.embeddings.pipeline import Pipeline

logger = logging.getLogger("engram.embeddings.onnx_export")

#: An export is only published if its vectors agree this closely with sentence-transformers' on the probe texts.
FP32_MIN_COSINE = 0.9999
#: Floor for the int8 variant against fp32 on the probe texts: it catches a broken quantisation, it is not a
#: quality gate (measured on LoCoMo: 0.991 mean, 0.977 at the 1st percentile, 0.955 worst; int8 kernels differ
#: a little between CPUs, hence the margin).
INT8_MIN_COSINE = 0.9
#: ONNX opset of the export; pinned so that an export does not depend on the torch version's default.
OPSET = 18

#: Texts embedded by both implementations before an export is accepted: short, empty, non-ASCII, and one
#: longer than any max_seq_length so that padding and truncation are exercised in the same batch.
PROBES: tuple[str, ...] = (
    "I can't eat peanuts.",
    "",
    "The train to Lisbon leaves at 09:40 from platform 3, so we should meet at 9.",
    "Ça va? 東京で会いましょう 🙂",
    "remember " * 600,
)


def export(name: str, models_dir: Path, *, threads: int = 1) -> dict[str, object]:
    """Make sure `models_dir` holds an intact export of `name`; return where it is and whether it was made now."""
    started = time.perf_counter()
    entry = cache_entry(name, models_dir)
    models_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with exclusive(entry.lock_path) as locked:
        # Checked under the lock: another exporter may have finished while we waited for it.
        problem = entry_problem(entry, ("fp32", "int8"))
        if problem is None:
            return {"path": str(entry.path), "exported": False, "seconds": time.perf_counter() - started}
        if locked:
            # No other exporter of this entry is running: temporary directories are leftovers of killed ones.
            for stale in models_dir.glob(f"{entry.temp_prefix}*"):
                shutil.rmtree(stale, ignore_errors=True)
        if entry.path.exists():
            logger.warning("replacing the damaged ONNX export %s (%s)", entry.path, problem)
            _discard(entry.path)
        staging = Path(tempfile.mkdtemp(prefix=entry.temp_prefix, dir=models_dir))
        try:
            details = _build(entry, staging, threads)
            _publish(staging, entry.path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    seconds = time.perf_counter() - started
    logger.info("exported %s to %s in %.1f s", name, entry.path, seconds)
    return {"path": str(entry.path), "exported": True, "seconds": seconds, **details}


def _build(entry: CacheEntry, staging: Path, threads: int) -> dict[str, object]:
    """Write fp32, int8 and the manifest into `staging`, each checked, all flushed to disk."""
    fp32, int8 = staging / FILES["fp32"], staging / FILES["int8"]
    t0 = time.perf_counter()
    from engram.embeddings.bert_graph import build_bert_graph, supports

    details: dict[str, object] = {}
    if supports(entry.pipeline):
        build_bert_graph(entry.pipeline, fp32)
        details["builder"] = "bert-graph"
    else:
        details["builder"] = "torch.onnx"
        details["fp32_min_cosine_vs_sentence_transformers"] = round(_export_fp32(entry.pipeline, fp32, threads), 6)
    t1 = time.perf_counter()
    int8_cosine = quantize_int8(entry.pipeline, fp32, int8)
    t2 = time.perf_counter()
    details |= {
        "export_seconds": round(t1 - t0, 2),
        "quantize_seconds": round(t2 - t1, 2),
        "int8_min_cosine_vs_fp32": round(int8_cosine, 6),
    }
    write_manifest(
        staging,
        entry,
        {"created_at": datetime.now(UTC).isoformat(timespec="seconds"), "versions": _versions(), **details},
    )
    for path in (fp32, int8, staging / "manifest.json"):
        with path.open("rb") as handle:
            os.fsync(handle.fileno())
    _fsync_dir(staging)
    return details


def _publish(staging: Path, final: Path) -> None:
    """Rename the finished directory into place (atomic); if another exporter got there first, keep theirs."""
    try:
        os.rename(staging, final)
    except OSError:
        if not final.is_dir():
            raise
        logger.info("another process published %s first; keeping it", final)
        return
    _fsync_dir(final.parent)  # make the rename itself durable


def _discard(path: Path) -> None:
    """Move a damaged entry out of the way (one rename, so no reader sees it half deleted), then delete it."""
    trash = Path(tempfile.mkdtemp(prefix=f".trash-{path.name}-", dir=path.parent))
    os.rename(path, trash / path.name)
    shutil.rmtree(trash, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    if sys.platform == "win32":
        return
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _versions() -> dict[str, str]:
    found = {}
    for package in ("torch", "sentence-transformers", "onnx", "safetensors", "onnxruntime", "tokenizers"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def _min_cosine(a: Vectors, b: Vectors) -> float:
    return float(np.min(np.sum(a * b, axis=1)))


def _export_fp32(pipeline: Pipeline, dest: Path, threads: int) -> float:
    """Export the transformer with torch's exporter to `dest`; return its worst cosine to sentence-transformers'."""
    logger.info("exporting %s to ONNX with torch (takes 20-60 s)", pipeline.model_dir)
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailable(
            f"{pipeline.model_dir} is not a BERT model with safetensors weights, so only torch can export it to "
            "ONNX: install Engram with its torch extra (pip install 'engram-server[torch]')."
        ) from exc
    import transformers
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    # "torchvision is not installed" warnings from the exporter's registry: torchvision ops are not used here.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    # The exporter's IR passes log every deduplicated initializer at INFO.
    logging.getLogger("onnx_ir").setLevel(logging.WARNING)
    try:
        model = SentenceTransformer(str(pipeline.model_dir), device="cpu")
    except Exception as exc:
        raise BackendUnavailable(f"Could not load {pipeline.model_dir} for the ONNX export ({exc}).") from exc
    model.eval()
    if model.max_seq_length != pipeline.max_seq_length:
        raise BackendUnavailable(
            f"sentence-transformers truncates {pipeline.model_dir} at {model.max_seq_length} tokens, but its config "
            f"files say {pipeline.max_seq_length}; use ENGRAM_EMBEDDING_BACKEND=torch for this model."
        )
    encoder = cast(torch.nn.Module, model[0].auto_model)
    names = [n for n in INPUT_NAMES if n in inspect.signature(encoder.forward).parameters]

    class TokenEmbeddings(torch.nn.Module):
        """The transformer alone, with tensor inputs and the last hidden state as the only output."""

        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
        ) -> torch.Tensor:
            given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return cast(torch.Tensor, self.encoder(**{n: given[n] for n in names}).last_hidden_state)

    # Two rows of the model's own tokens, the second padded: torch.export would specialise sizes of 0 or 1, and
    # padding takes the attention-mask path that real batches take.
    tokens = Encoder(pipeline)
    features = tokens.features(tokens.encode(["an example sentence to export with", "short"]))
    example = tuple(torch.from_numpy(features[name]) for name in names)
    batch, length = torch.export.Dim("batch"), torch.export.Dim("tokens")
    with warnings.catch_warnings():
        # torch.export-based exporter: the legacy TorchScript one (dynamo=False) still works in torch 2.13 but is
        # deprecated, and tracing freezes data-dependent branches of the attention-mask code (TracerWarnings).
        # Its own warnings (deprecations inside torch, unused axis names) are not actionable here; the result
        # is checked numerically below instead.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            TokenEmbeddings().eval(),
            example,
            str(dest),
            input_names=names,
            output_names=["token_embeddings"],
            opset_version=OPSET,
            dynamo=True,
            external_data=False,  # one file per precision (limits models to 2 GB)
            dynamic_shapes={name: {0: batch, 1: length} for name in names},
            verbose=False,
        )
        expected = model.encode(
            list(PROBES),
            batch_size=BATCH_SIZE,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
    got = OnnxEmbedder(dest, pipeline, model_id="export-check").embed(PROBES)
    cosine = _min_cosine(got, np.asarray(expected, dtype=np.float32))
    if cosine < FP32_MIN_COSINE:
        raise BackendUnavailable(
            f"The ONNX export of {pipeline.model_dir} does not reproduce its vectors (worst cosine {cosine:.6f}, "
            f"needs {FP32_MIN_COSINE}); use ENGRAM_EMBEDDING_BACKEND=torch for this model."
        )
    return cosine


class _QuietQuantizer(logging.Filter):
    """Drops what onnxruntime.quantization logs on the root logger: a line per skipped tensor at INFO, and advice
    to pre-process, which fails on torch.export graphs and changed neither quality nor speed when forced."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "root" and "onnxruntime" in Path(record.pathname).parts)


def quantize_int8(pipeline: Pipeline, fp32_path: Path, dest: Path) -> float:
    """Write the dynamic int8 quantisation of an fp32 export; return its worst cosine to fp32 on the probes."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quiet = _QuietQuantizer()
    logging.getLogger().addFilter(quiet)
    try:
        # Per-channel scales: per-tensor int8 moved vectors to ~0.95 cosine of fp32 (top-10 overlap ~0.8);
        # per-channel gives ~0.99. reduce_range (7-bit weights) avoids overflow on CPUs without VNNI.
        quantize_dynamic(str(fp32_path), str(dest), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)
    finally:
        logging.getLogger().removeFilter(quiet)
    reference = OnnxEmbedder(fp32_path, pipeline, model_id="export-check").embed(PROBES)
    got = OnnxEmbedder(dest, pipeline, model_id="export-check").embed(PROBES)
    cosine = _min_cosine(got, reference)
    if cosine < INT8_MIN_COSINE:
        raise BackendUnavailable(
            f"The int8 quantisation of {pipeline.model_dir} is too far from fp32 (worst cosine {cosine:.3f}); "
            "use ENGRAM_EMBEDDING_BACKEND=onnx for this model."
        )
    return cosine


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: export, print a JSON report on stdout, exit 0 (2 on a known failure)."""
    parser = argparse.ArgumentParser(prog="python -m engram.embeddings.onnx_export", description=__doc__)
    parser.add_argument("--model", required=True, help="bundled model name or local sentence-transformers dir")
    parser.add_argument("--models-dir", required=True, type=Path, help="the cache of ONNX exports")
    parser.add_argument("--threads", type=int, default=1, help="torch and onnxruntime threads")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        report = export(args.model, args.models_dir, threads=max(1, args.threads))
    except BackendUnavailable as exc:
        print(f"{ERROR_PREFIX}{exc}", file=sys.stderr, flush=True)
        return 2
    except Exception as exc:
        logger.exception("the ONNX export failed")
        print(
            f"{ERROR_PREFIX}The ONNX export of '{args.model}' into {args.models_dir} failed ({type(exc).__name__}: "
            f"{exc}). Run `engram prepare` to retry with the full log, or use ENGRAM_EMBEDDING_BACKEND=torch.",
            file=sys.stderr,
            flush=True,
        )
        return 1
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip the interpreter's teardown (seconds with torch on a busy machine): everything is on disk already.
    os._exit(status)
