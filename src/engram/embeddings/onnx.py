"""A sentence-transformers model exported once to ONNX, then served by onnxruntime + tokenizers without torch."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import inspect
import json
import logging
import os
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import numpy.typing as npt

from engram.core.errors import BackendUnavailable
from engram.core.ports import Vectors
from engram.embeddings.sentence_transformer import BUNDLED_NAMES, resolve_model_path

if TYPE_CHECKING:
    from tokenizers import Encoding, Tokenizer

logger = logging.getLogger(__name__)

Precision = Literal["fp32", "int8"]
Pooling = Literal["mean", "mean_sqrt_len_tokens", "cls", "max"]

#: Part of the cache key: bump it whenever the exported graph changes, so that old exports are not reused.
EXPORT_FORMAT = 1
#: At most this many texts per onnxruntime call (sentence-transformers' default batch size)...
BATCH_SIZE = 32
#: ...and at most this many padded tokens. Measured on 2 cores (1 MB L2 each), one thread: small batches whose
#: activations stay in cache ran ~1.7x faster than 32 texts (short sentences 140 -> 245/s fp32, 300 -> 500/s
#: int8; whole turns 40 -> 95/s) and peak memory fell from ~1.1-1.5 GB (32 texts of 256 tokens) to ~220 MB.
MAX_BATCH_TOKENS = 128
#: An export is only cached if its vectors agree this closely with sentence-transformers' on the probe texts.
FP32_MIN_COSINE = 0.9999
#: Floor for the int8 variant against fp32 on the probe texts: it catches a broken quantisation, it is not a
#: quality gate (measured on LoCoMo: 0.991 mean, 0.977 at the 1st percentile, 0.955 worst; int8 kernels differ
#: a little between CPUs, hence the margin).
INT8_MIN_COSINE = 0.9
#: ONNX opset of the export; pinned so that an export does not depend on the torch version's default.
OPSET = 18

#: Texts embedded by both implementations before an export is accepted: short, empty, non-ASCII, and one
#: longer than any max_seq_length so that padding and truncation are exercised in the same batch.
_PROBES: tuple[str, ...] = (
    "I can't eat peanuts.",
    "",
    "The train to Lisbon leaves at 09:40 from platform 3, so we should meet at 9.",
    "Ça va? 東京で会いましょう 🙂",
    "remember " * 600,
)
_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
_SUPPORTED_MODULES = {"Transformer", "Pooling", "Normalize"}
_LEGACY_POOLING_KEYS: dict[str, str] = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


@dataclass(frozen=True)
class Pipeline:
    """What sentence-transformers does around the transformer, as read from the model directory's JSON files."""

    model_dir: Path
    transformer_dir: Path
    tokenizer_file: Path
    max_seq_length: int
    do_lower_case: bool
    pooling: Pooling
    dimensions: int
    #: Directories of the non-transformer modules (their files are part of the model's fingerprint).
    module_dirs: tuple[Path, ...]


@dataclass(frozen=True)
class OnnxExport:
    """A cached ONNX export: where it is, the pipeline to run around it, and the model id its vectors carry."""

    path: Path
    pipeline: Pipeline
    model_id: str
    precision: Precision


def _read_json(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict):
        raise BackendUnavailable(f"{path} is not a JSON object.")
    return data


def _pooling_mode(config: dict[str, Any], path: Path) -> Pooling:
    """The single pooling mode of a Pooling config, in the new (`pooling_mode`) or legacy (bool keys) format."""
    mode: Any = config.get("pooling_mode")
    if mode is None:
        active = [name for key, name in _LEGACY_POOLING_KEYS.items() if config.get(key)]
        mode = active if active else "mean"  # sentence-transformers' default when no key is set
    if isinstance(mode, list) and len(mode) == 1:
        mode = mode[0]
    if mode not in ("mean", "mean_sqrt_len_tokens", "cls", "max"):
        raise BackendUnavailable(
            f"Pooling {mode!r} in {path} is not supported by the ONNX backend (mean, mean_sqrt_len_tokens, cls "
            "or max); use ENGRAM_EMBEDDING_BACKEND=torch for this model."
        )
    return cast(Pooling, mode)


def read_pipeline(model_dir: Path) -> Pipeline:
    """Read modules.json, the pooling config and sentence_bert_config.json of a sentence-transformers model dir."""
    modules_file = model_dir / "modules.json"
    if not modules_file.is_file():
        raise BackendUnavailable(
            f"{model_dir} is not a sentence-transformers model directory (no modules.json). The ONNX backend needs "
            "the bundled all-MiniLM-L6-v2 or a local sentence-transformers directory; use "
            "ENGRAM_EMBEDDING_BACKEND=torch for other models."
        )
    with modules_file.open(encoding="utf-8") as handle:
        modules: Any = json.load(handle)
    if not isinstance(modules, list):
        raise BackendUnavailable(f"{modules_file} is not a list of modules.")
    kinds = [str(module.get("type", "")).rsplit(".", 1)[-1] for module in modules]
    unsupported = sorted(set(kinds) - _SUPPORTED_MODULES)
    if unsupported or not kinds or kinds[0] != "Transformer" or "Pooling" not in kinds:
        raise BackendUnavailable(
            f"The ONNX backend runs Transformer → Pooling → Normalize models; {model_dir} has {kinds}. "
            "Use ENGRAM_EMBEDDING_BACKEND=torch for this model."
        )
    transformer_dir = model_dir / str(modules[0].get("path", ""))
    pooling_dir = model_dir / str(modules[kinds.index("Pooling")].get("path", ""))
    pooling_config = _read_json(pooling_dir / "config.json")
    st_config_file = transformer_dir / "sentence_bert_config.json"
    st_config = _read_json(st_config_file) if st_config_file.is_file() else {}
    max_seq_length = st_config.get("max_seq_length")
    if max_seq_length is None:
        # sentence-transformers' fallback: the tokenizer's limit, capped by the position embeddings.
        limits = [int(_read_json(transformer_dir / "tokenizer_config.json").get("model_max_length", 512))]
        positions = _read_json(transformer_dir / "config.json").get("max_position_embeddings")
        if isinstance(positions, int) and positions > 0:
            limits.append(positions)
        max_seq_length = min(limits)
    tokenizer_file = transformer_dir / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise BackendUnavailable(
            f"{transformer_dir} has no tokenizer.json (a fast tokenizer), which the ONNX backend needs."
        )
    dimensions = pooling_config.get("embedding_dimension", pooling_config.get("word_embedding_dimension"))
    if not isinstance(dimensions, int):
        raise BackendUnavailable(f"{pooling_dir / 'config.json'} does not give the embedding dimension.")
    return Pipeline(
        model_dir=model_dir,
        transformer_dir=transformer_dir,
        tokenizer_file=tokenizer_file,
        max_seq_length=int(max_seq_length),
        do_lower_case=bool(st_config.get("do_lower_case", False)),
        pooling=_pooling_mode(pooling_config, pooling_dir / "config.json"),
        dimensions=dimensions,
        module_dirs=tuple(model_dir / str(m.get("path", "")) for m in modules[1:] if m.get("path")),
    )


def _fingerprint_files(pipeline: Pipeline) -> list[Path]:
    """The files sentence-transformers reads: top-level files of the model and transformer dirs, module dirs.

    Subdirectories such as `onnx/` or `openvino/` that hub snapshots carry are left out: they do not change
    the vectors, and hashing them on every start would cost time.
    """
    files = {p for d in {pipeline.model_dir, pipeline.transformer_dir} for p in d.iterdir() if p.is_file()}
    for module_dir in pipeline.module_dirs:
        if module_dir.is_dir():
            files.update(p for p in module_dir.rglob("*") if p.is_file())
    # Hidden files (.gitattributes, editor and lock files) are not part of the model.
    return sorted(p for p in files if not any(part.startswith(".") for part in p.relative_to(pipeline.model_dir).parts))


def model_fingerprint(pipeline: Pipeline) -> str:
    """A content hash of the model's files and the export format: a changed model gets a new cache entry."""
    digest = hashlib.sha256(f"engram-onnx-export-{EXPORT_FORMAT}\0".encode())
    for path in _fingerprint_files(pipeline):
        digest.update(f"{path.relative_to(pipeline.model_dir).as_posix()}\0{path.stat().st_size}\0".encode())
        with path.open("rb") as handle:
            # sha256 runs at ~1 GB/s here: ~0.1 s for MiniLM's 90 MB on every start.
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()[:16]


def base_model_id(name: str) -> str:
    """The model id sentence-transformers vectors of `name` carry (the same rule as the torch backend)."""
    return "all-MiniLM-L6-v2" if name in BUNDLED_NAMES else name


def onnx_model_id(name: str, precision: Precision) -> str:
    """The id recorded with the vectors: the torch backend's, for fp32 and int8 alike.

    fp32 reproduces the torch vectors (largest difference ~3e-7). int8 moves them (cosine 0.991 mean, 0.955 worst
    on LoCoMo) and changes ~12% of top-10 neighbours, but not retrieval quality: on LoCoMo's 1,982 questions,
    evidence recall@10 was 0.314 for fp32, 0.322 for int8 and 0.320 for int8 queries searching fp32-built
    memories (benchmarks/embeddings.py). A distinct id would make a data directory unreadable after switching
    precision (there is no re-embedding), for no measured gain.
    """
    del precision  # deliberately not part of the id, see above
    return base_model_id(name)


def cache_paths(pipeline: Pipeline, model_id: str, cache_dir: Path) -> tuple[Path, Path]:
    """The cached fp32 and int8 files of a model: `<model id>-<content hash>[.int8].onnx` under `cache_dir`."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id).strip("._")[-80:] or "model"
    key = f"{slug}-{model_fingerprint(pipeline)}"
    return cache_dir / f"{key}.onnx", cache_dir / f"{key}.int8.onnx"


def export_onnx(name: str, cache_dir: Path, *, precision: Precision = "fp32") -> OnnxExport:
    """Return the cached ONNX export of model `name`, exporting (and quantising) it first if it is not cached.

    Only a missing fp32 export imports torch; quantising an existing fp32 export needs onnxruntime only.
    """
    model_dir = Path(resolve_model_path(name))
    if not model_dir.is_dir():
        raise BackendUnavailable(
            f"The ONNX backend needs the bundled all-MiniLM-L6-v2 or a local sentence-transformers directory; "
            f"'{name}' is neither. Use ENGRAM_EMBEDDING_BACKEND=torch for models in the Hugging Face cache."
        )
    pipeline = read_pipeline(model_dir)
    fp32_path, int8_path = cache_paths(pipeline, base_model_id(name), cache_dir)
    target = fp32_path if precision == "fp32" else int8_path
    if not target.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with _exclusive(cache_dir / f"{fp32_path.stem}.lock") as locked:
            if locked:
                # Holding the lock, no other exporter is writing these files: temp files are leftovers of a crash.
                for stale in cache_dir.glob(f"{glob.escape(fp32_path.stem)}.*.tmp"):
                    stale.unlink(missing_ok=True)
            # Checked again under the lock: another process may have finished the export while we waited.
            if not fp32_path.is_file():
                _export_fp32(pipeline, fp32_path)
            if precision == "int8" and not int8_path.is_file():
                _quantize_int8(pipeline, fp32_path, int8_path)
    return OnnxExport(path=target, pipeline=pipeline, model_id=onnx_model_id(name, precision), precision=precision)


def load_onnx_embedder(name: str, *, cache_dir: Path, precision: Precision = "fp32", threads: int = 1) -> OnnxEmbedder:
    """Export `name` to `cache_dir` unless cached, then load it for serving (no torch when it is cached)."""
    export = export_onnx(name, cache_dir, precision=precision)
    try:
        embedder = OnnxEmbedder(export.path, export.pipeline, model_id=export.model_id, threads=threads)
    except Exception as exc:
        raise BackendUnavailable(
            f"Could not load the cached ONNX model {export.path} ({exc}); delete it to export it again."
        ) from exc
    logger.info(
        "embedding model %s loaded with onnxruntime (%s, %d dimensions, %d thread(s))",
        export.model_id,
        precision,
        embedder.dimensions,
        threads,
    )
    return embedder


class OnnxEmbedder:
    """Tokenises with `tokenizers`, runs the ONNX transformer with onnxruntime, pools and normalises with numpy."""

    def __init__(self, onnx_path: Path, pipeline: Pipeline, *, model_id: str, threads: int = 1) -> None:
        import onnxruntime as ort

        self._model_id = model_id
        self._dimensions = pipeline.dimensions
        self._pooling = pipeline.pooling
        self._encoder = _Encoder(pipeline)

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle pool threads spin-wait by default; on a small, busy machine that steals the other core.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # onnxruntime's graph-optimisation notices are not actionable
        self._session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"])
        inputs = {i.name for i in self._session.get_inputs()}
        if not {"input_ids", "attention_mask"} <= inputs or not inputs <= set(_INPUT_NAMES):
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


class _Encoder:
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
    config = _read_json(config_file) if config_file.is_file() else {}
    token = config.get("pad_token")
    if isinstance(token, dict):
        token = token.get("content")
    pad_id = tokenizer.token_to_id(token) if isinstance(token, str) else None
    if pad_id is None:
        raise BackendUnavailable(f"Cannot find the padding token of the tokenizer in {pipeline.transformer_dir}.")
    return pad_id, 0, config.get("padding_side") == "left"


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[bool]:
    """Hold an exclusive lock on `lock_path` (POSIX); yields whether a lock is actually held.

    The lock only avoids doing the same export twice: correctness comes from renaming finished files into
    place, so where flock does not exist (Windows) exports simply run unlocked.
    """
    with lock_path.open("a") as handle:
        if sys.platform == "win32":
            yield False
            return
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield True  # released when the file is closed


@contextlib.contextmanager
def _atomic_file(dest: Path) -> Iterator[Path]:
    """Yield a temporary path beside `dest`; if the block succeeds, fsync it and rename it onto `dest`.

    Readers therefore see either no file or a complete one, even if the process is killed mid-write.
    """
    fd, name = tempfile.mkstemp(prefix=f"{dest.name.removesuffix('.onnx')}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with tmp.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    if sys.platform != "win32":
        # Make the rename itself durable, so that a power cut cannot lose a file readers were told exists.
        dir_fd = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _min_cosine(a: Vectors, b: Vectors) -> float:
    return float(np.min(np.sum(a * b, axis=1)))


def _export_fp32(pipeline: Pipeline, dest: Path) -> None:
    """Export the transformer with torch's exporter, check it against sentence-transformers, then cache it."""
    # Never reach for a model hub: the weights are local files.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    started = time.perf_counter()
    logger.info("exporting %s to ONNX (one-time; imports torch, takes ~20 s)", pipeline.model_dir)
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    # "torchvision is not installed" warnings from the exporter's registry: torchvision ops are not used here.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
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
    names = [n for n in _INPUT_NAMES if n in inspect.signature(encoder.forward).parameters]

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
    encoder_input = _Encoder(pipeline)
    features = encoder_input.features(encoder_input.encode(["an example sentence to export with", "short"]))
    example = tuple(torch.from_numpy(features[name]) for name in names)
    batch, tokens = torch.export.Dim("batch"), torch.export.Dim("tokens")
    with _atomic_file(dest) as tmp, warnings.catch_warnings():
        # torch.export-based exporter: the legacy TorchScript one (dynamo=False) still works in torch 2.13 but is
        # deprecated, and tracing freezes data-dependent branches of the attention-mask code (TracerWarnings).
        # Its own warnings (deprecations inside torch, unused axis names) are not actionable here; the result
        # is checked numerically below instead.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            TokenEmbeddings().eval(),
            example,
            str(tmp),
            input_names=names,
            output_names=["token_embeddings"],
            opset_version=OPSET,
            dynamo=True,
            external_data=False,  # one file, renamed into place atomically (limits models to 2 GB)
            dynamic_shapes={name: {0: batch, 1: tokens} for name in names},
            verbose=False,
        )
        expected = model.encode(list(_PROBES), batch_size=BATCH_SIZE, normalize_embeddings=True, convert_to_numpy=True)
        got = OnnxEmbedder(tmp, pipeline, model_id="export-check").embed(_PROBES)
        if _min_cosine(got, np.asarray(expected, dtype=np.float32)) < FP32_MIN_COSINE:
            raise BackendUnavailable(f"The ONNX export of {pipeline.model_dir} does not reproduce its vectors.")
    logger.info("exported %s to %s in %.1f s", pipeline.model_dir, dest, time.perf_counter() - started)


class _QuietQuantizer(logging.Filter):
    """Drops what onnxruntime.quantization logs on the root logger: a line per skipped tensor at INFO, and advice
    to pre-process, which fails on torch.export graphs and changed neither quality nor speed when forced."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "root" and "onnxruntime" in Path(record.pathname).parts)


def _quantize_int8(pipeline: Pipeline, fp32_path: Path, dest: Path) -> None:
    """Write the dynamic int8 quantisation of an fp32 export, check it against fp32, then cache it."""
    started = time.perf_counter()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quiet = _QuietQuantizer()
    logging.getLogger().addFilter(quiet)
    try:
        with _atomic_file(dest) as tmp:
            # Per-channel scales: per-tensor int8 moved vectors to ~0.95 cosine of fp32 (top-10 overlap ~0.8);
            # per-channel gives ~0.99. reduce_range (7-bit weights) avoids overflow on CPUs without VNNI.
            quantize_dynamic(str(fp32_path), str(tmp), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)
            reference = OnnxEmbedder(fp32_path, pipeline, model_id="export-check").embed(_PROBES)
            got = OnnxEmbedder(tmp, pipeline, model_id="export-check").embed(_PROBES)
            if _min_cosine(got, reference) < INT8_MIN_COSINE:
                raise BackendUnavailable(f"The int8 quantisation of {pipeline.model_dir} is too far from fp32.")
    finally:
        logging.getLogger().removeFilter(quiet)
    logger.info("quantised %s to int8 in %.1f s", fp32_path.name, time.perf_counter() - started)
