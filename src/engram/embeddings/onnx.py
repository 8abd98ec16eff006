"""Serving a sentence-transformers model from its ONNX export: onnxruntime + tokenizers + numpy, never torch.

The bundled all-MiniLM-L6-v2 in int8 (the default) is shipped built (`bundled`): nothing is exported. Every other
model or precision is built once into the model cache by `onnx_export` in a child process; `onnx_cache` finds,
checks and, when needed, creates that cached export.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from engram.core.errors import BackendUnavailable
from engram.core.ports import Vectors
from engram.embeddings.onnx_cache import EXPORT_TIMEOUT_S, Precision, ensure_export
from engram.embeddings.pipeline import Pipeline, Pooling, base_model_id, read_json, read_pipeline

if TYPE_CHECKING:
    from tokenizers import Encoding, Tokenizer

logger = logging.getLogger(__name__)

#: At most this many texts per onnxruntime call (sentence-transformers' default batch size)...
BATCH_SIZE = 32
#: ...and at most this many padded tokens. Measured on 2 cores (1 MB L2 each), one thread: small batches whose
#: activations stay in cache ran ~1.7x faster than 32 texts (short sentences 140 -> 245/s fp32, 300 -> 500/s
#: int8; whole turns 40 -> 95/s) and peak memory fell from ~1.1-1.5 GB (32 texts of 256 tokens) to ~220 MB.
MAX_BATCH_TOKENS = 128
#: The inputs a transformer encoder export may take.
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def onnx_model_id(name: str, precision: Precision) -> str:
    """The id recorded with the vectors: the torch backend's, for fp32 and int8 alike.

    fp32 reproduces the torch vectors (largest difference ~3e-7). int8 moves them (cosine 0.991 mean, 0.955 worst
    on LoCoMo) and changes ~12% of top-10 neighbours, but not retrieval quality (see the README's embedding
    section for `engram eval` with each backend). A distinct id would make a data directory unreadable after
    switching precision (there is no re-embedding), for no measured gain.
    """
    del precision  # deliberately not part of the id, see above
    return base_model_id(name)


def load_onnx_embedder(
    name: str,
    *,
    models_dir: Path,
    precision: Precision = "fp32",
    threads: int = 1,
    export_timeout: float = EXPORT_TIMEOUT_S,
) -> OnnxEmbedder:
    """Load the shipped int8 model, or the cached ONNX export of `name`, exported first (child process) if needed."""
    shipped = _shipped(name, precision)
    if shipped is not None:
        path, pipeline, remedy = shipped[0], shipped[1], "reinstall Engram"
    else:
        entry = ensure_export(name, models_dir, precision, threads=threads, timeout=export_timeout)
        path, pipeline = entry.file(precision), entry.pipeline
        remedy = f"delete {entry.path} and run `engram prepare` to export it again"
    try:
        embedder = OnnxEmbedder(path, pipeline, model_id=onnx_model_id(name, precision), threads=threads)
    except BackendUnavailable:
        raise
    except Exception as exc:
        raise BackendUnavailable(
            f"onnxruntime could not load {path} ({exc}): {remedy}, or use ENGRAM_EMBEDDING_BACKEND=torch."
        ) from exc
    logger.info(
        "embedding model %s loaded with onnxruntime (%s, %d dimensions, %d thread(s))",
        embedder.model_id,
        precision,
        embedder.dimensions,
        threads,
    )
    return embedder


def _shipped(name: str, precision: Precision) -> tuple[Path, Pipeline] | None:
    """The int8 all-MiniLM-L6-v2 shipped in the package, when that is what is asked for and it is intact."""
    from engram.embeddings.bundled import BUNDLE_DIR, shipped_int8
    from engram.embeddings.sentence_transformer import BUNDLED_NAMES

    if name not in BUNDLED_NAMES or precision != "int8":
        return None
    path = shipped_int8()
    return None if path is None else (path, read_pipeline(BUNDLE_DIR))


class OnnxEmbedder:
    """Tokenises with `tokenizers`, runs the ONNX transformer with onnxruntime, pools and normalises with numpy."""

    def __init__(self, onnx_path: Path, pipeline: Pipeline, *, model_id: str, threads: int = 1) -> None:
        import onnxruntime as ort

        self._model_id = model_id
        self._dimensions = pipeline.dimensions
        self._pooling = pipeline.pooling
        self._encoder = Encoder(pipeline)

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle pool threads spin-wait by default; on a small, busy machine that steals the other core.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # onnxruntime's graph-optimisation notices are not actionable
        self._session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"])
        inputs = {i.name for i in self._session.get_inputs()}
        if not {"input_ids", "attention_mask"} <= inputs or not inputs <= set(INPUT_NAMES):
            raise BackendUnavailable(f"{onnx_path} has inputs {sorted(inputs)}, not those of a transformer encoder.")
        self._inputs = inputs
        self._output = self._session.get_outputs()[0].name

    @property
    def model_id(self) -> str:
        """Identity recorded with stored vectors."""
        return self._model_id

    @property
    def dimensions(self) -> int:
        """Length of every vector."""
        return self._dimensions

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Return one L2-normalised float32 row per text; safe to call from several threads at once."""
        out = np.empty((len(texts), self._dimensions), dtype=np.float32)
        if not texts:
            return out
        # The tokenizer is only configured in __init__ and encoding does not mutate it, and onnxruntime's
        # InferenceSession.run is thread-safe: concurrent calls need no lock.
        encodings = self._encoder.encode(texts)
        lengths = [len(encoding.ids) for encoding in encodings]
        for rows in _batches(lengths):
            out[rows] = self._embed_batch([encodings[i] for i in rows])
        return out

    def _embed_batch(self, encodings: list[Encoding]) -> Vectors:
        features = self._encoder.features(encodings)
        feed = {name: array for name, array in features.items() if name in self._inputs}
        hidden = np.asarray(self._session.run([self._output], feed)[0], dtype=np.float32)
        pooled = pool(hidden, features["attention_mask"], self._pooling)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        # torch.nn.functional.normalize's epsilon: a zero vector stays zero instead of becoming NaN.
        return np.asarray(pooled / np.maximum(norms, 1e-12), dtype=np.float32)


class Encoder:
    """Tokenises as sentence-transformers does, and pads a batch of encodings to its longest one."""

    def __init__(self, pipeline: Pipeline) -> None:
        # Rust-side tokenizer threads would compete with inference for two cores and warn after a fork.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from tokenizers import Tokenizer, normalizers

        tokenizer = Tokenizer.from_file(str(pipeline.tokenizer_file))
        if pipeline.do_lower_case:
            # As sentence-transformers does for do_lower_case: a Lowercase normalizer in front.
            current = tokenizer.normalizer
            tokenizer.normalizer = (
                normalizers.Sequence([normalizers.Lowercase(), current])
                if current is not None
                else normalizers.Lowercase()
            )
        # tokenizer.json's own settings are not what sentence-transformers uses (MiniLM's truncates at 128 and pads
        # every text to 128): truncate at max_seq_length, and pad in `features`, to the batch's longest text.
        tokenizer.enable_truncation(max_length=pipeline.max_seq_length, strategy="longest_first", direction="right")
        self._pad_id, self._pad_type_id, self._pad_left = _padding(tokenizer, pipeline)
        tokenizer.no_padding()
        self._tokenizer = tokenizer

    def encode(self, texts: Sequence[str]) -> list[Encoding]:
        """Token ids of each text, truncated, unpadded."""
        return self._tokenizer.encode_batch(list(texts))

    def features(self, encodings: list[Encoding]) -> dict[str, npt.NDArray[np.int64]]:
        """input_ids, attention_mask and token_type_ids, padded to the longest encoding."""
        width = max(len(encoding.ids) for encoding in encodings)
        ids = np.full((len(encodings), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        type_ids = np.full((len(encodings), width), self._pad_type_id, dtype=np.int64)
        for row, encoding in enumerate(encodings):
            span = slice(width - len(encoding.ids), width) if self._pad_left else slice(0, len(encoding.ids))
            ids[row, span], mask[row, span], type_ids[row, span] = encoding.ids, 1, encoding.type_ids
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": type_ids}


def _batches(lengths: list[int]) -> Iterator[list[int]]:
    """Group text indices longest first (as sentence-transformers: similar lengths waste less padding), at most
    BATCH_SIZE texts and MAX_BATCH_TOKENS padded tokens per group (always at least one text)."""
    batch: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        # Sorted longest first, so the batch's first text sets its padded width.
        if batch and (len(batch) == BATCH_SIZE or (len(batch) + 1) * lengths[batch[0]] > MAX_BATCH_TOKENS):
            yield batch
            batch = []
        batch.append(index)
    if batch:
        yield batch


def pool(hidden: npt.NDArray[np.float32], mask: npt.NDArray[np.int64], mode: Pooling) -> Vectors:
    """Pool token embeddings (batch, tokens, dims) into one row per text, ignoring padding, as sentence-transformers."""
    weights = mask[..., np.newaxis].astype(np.float32)
    if mode == "cls":
        # The first attended position (0 with right padding), as sentence-transformers computes it.
        pooled = hidden[np.arange(hidden.shape[0]), mask.argmax(axis=1)]
    elif mode == "max":
        pooled = np.where(weights > 0, hidden, -np.inf).max(axis=1)
    else:
        counts = np.clip(weights.sum(axis=1), 1e-9, None)
        pooled = (hidden * weights).sum(axis=1) / (counts if mode == "mean" else np.sqrt(counts))
    return np.asarray(pooled, dtype=np.float32)


def _padding(tokenizer: Tokenizer, pipeline: Pipeline) -> tuple[int, int, bool]:
    """Pad id, pad type id and whether to pad on the left, from tokenizer.json (else tokenizer_config.json)."""
    configured = tokenizer.padding
    if configured:
        return int(configured["pad_id"]), int(configured["pad_type_id"]), configured.get("direction") == "left"
    config_file = pipeline.transformer_dir / "tokenizer_config.json"
    config = read_json(config_file) if config_file.is_file() else {}
    token = config.get("pad_token")
    if isinstance(token, dict):
        token = token.get("content")
    pad_id = tokenizer.token_to_id(token) if isinstance(token, str) else None
    if pad_id is None:
        raise BackendUnavailable(f"Cannot find the padding token of the tokenizer in {pipeline.transformer_dir}.")
    return pad_id, 0, config.get("padding_side") == "left"
