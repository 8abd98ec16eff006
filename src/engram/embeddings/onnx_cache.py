"""The cache of ONNX exports: one directory per model and content hash, published whole, checked before use.

Layout under the models directory (`ENGRAM_MODELS_DIR`, else the user's cache dir, e.g. ~/.cache/engram/models)::

    all-MiniLM-L6-v2-<content hash>/   model.onnx, model.int8.onnx, manifest.json (sizes and SHA-256 of both)
    .all-MiniLM-L6-v2-<content hash>.lock      held by the one process exporting that model
    .tmp-all-MiniLM-L6-v2-<content hash>-*/    an export in progress (or left by a killed one)
    .fingerprints.json                          content hash of each model dir, keyed by its files' stat data

An export is written into a temporary directory and renamed into place once complete, so readers see either no
entry or a whole one. The export itself runs in a separate process (`python -m engram.embeddings.onnx_export`),
because it imports onnx (and torch, for a model that is not BERT), which the serving process must never import.
The default int8 all-MiniLM-L6-v2 needs no entry: it ships built (`bundled`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from engram.core.errors import BackendUnavailable
from engram.embeddings.pipeline import (
    EXPORT_FORMAT,
    Pipeline,
    base_model_id,
    local_model_dir,
    read_pipeline,
    remembered_fingerprint,
)
from engram.embeddings.threads import native_thread_env

logger = logging.getLogger(__name__)

Precision = Literal["fp32", "int8"]

#: The file of each precision inside an entry; an export always produces both.
FILES: dict[Precision, str] = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
MANIFEST = "manifest.json"
#: Remembers each model's content hash with its files' stat data, so a start does not hash the weights again.
FINGERPRINT_MEMO = ".fingerprints.json"
#: The exporter's last stderr line starts with this when it fails on purpose; the rest is the message.
ERROR_PREFIX = "engram-export-error: "
#: Time allowed for a whole export (BERT from safetensors: ~6 s here; torch's exporter: 20-60 s, minutes when busy).
EXPORT_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class CacheEntry:
    """Where the export of one model (at one content hash) lives, and the pipeline to run around it."""

    models_dir: Path
    key: str
    pipeline: Pipeline
    fingerprint: str
    model_id: str

    @property
    def path(self) -> Path:
        """The entry's directory."""
        return self.models_dir / self.key

    @property
    def lock_path(self) -> Path:
        """The lock file exporters of this entry take turns on."""
        return self.models_dir / f".{self.key}.lock"

    @property
    def temp_prefix(self) -> str:
        """Name prefix of this entry's in-progress export directories."""
        return f".tmp-{self.key}-"

    def file(self, precision: Precision) -> Path:
        """The ONNX file of `precision` inside the entry."""
        return self.path / FILES[precision]


def cache_entry(name: str, models_dir: Path) -> CacheEntry:
    """The cache entry of model `name` (bundled name or local directory): `<model id>-<content hash>`."""
    pipeline = read_pipeline(local_model_dir(name))
    model_id = base_model_id(name)
    fingerprint = remembered_fingerprint(pipeline, models_dir / FINGERPRINT_MEMO)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id).strip("._-")[-80:] or "model"
    return CacheEntry(models_dir, f"{slug}-{fingerprint}", pipeline, fingerprint, model_id)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, streamed (~1 GB/s here: ~25 ms for the int8 model, ~90 ms for fp32)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def entry_problem(entry: CacheEntry, precisions: tuple[Precision, ...]) -> str | None:
    """None if the entry holds intact files of `precisions`; else what is wrong with it, in a few words."""
    if not entry.path.is_dir():
        return "not exported yet"
    try:
        manifest: Any = json.loads((entry.path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "no manifest (an incomplete export)"
    except (OSError, ValueError) as exc:
        return f"unreadable manifest ({exc})"
    if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
        return f"manifest of another export format (expected {EXPORT_FORMAT})"
    if manifest.get("fingerprint") != entry.fingerprint:
        return "manifest of another model"
    files = manifest.get("files")
    for precision in precisions:
        name = FILES[precision]
        recorded = files.get(name) if isinstance(files, dict) else None
        if not isinstance(recorded, dict):
            return f"{name} is not in the manifest"
        path = entry.path / name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return f"{name} is missing"
        if size != recorded.get("bytes"):
            return f"{name} has {size} bytes, the manifest says {recorded.get('bytes')}"
        if file_sha256(path) != recorded.get("sha256"):
            return f"{name} does not match its SHA-256 in the manifest (corrupted)"
    return None


def write_manifest(directory: Path, entry: CacheEntry, details: Mapping[str, object]) -> None:
    """Record sizes and hashes of the exported files (and how they were made) in `directory`'s manifest."""
    files = {
        name: {"bytes": (directory / name).stat().st_size, "sha256": file_sha256(directory / name)}
        for name in FILES.values()
    }
    manifest = {
        "format": EXPORT_FORMAT,
        "model_id": entry.model_id,
        "fingerprint": entry.fingerprint,
        "source": str(entry.pipeline.model_dir),
        "files": files,
        **details,
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


@contextlib.contextmanager
def exclusive(lock_path: Path) -> Iterator[bool]:
    """Hold an exclusive lock on `lock_path` (POSIX `flock`); yields whether a lock is actually held.

    The lock only avoids doing the same export twice at once: correctness comes from renaming a finished
    directory into place, so where flock does not exist (Windows) exports simply run unlocked.
    """
    with lock_path.open("a") as handle:
        if sys.platform == "win32":
            yield False
            return
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield True  # released when the file is closed


def export_command(name: str, models_dir: Path, *, threads: int) -> list[str]:
    """The command that exports model `name` into `models_dir` in a fresh interpreter (never a fork)."""
    if not sys.executable:
        raise BackendUnavailable("Cannot find the Python interpreter to run the ONNX export in.")
    return [
        sys.executable,
        "-m",
        "engram.embeddings.onnx_export",
        "--model",
        name,
        "--models-dir",
        str(models_dir),
        "--threads",
        str(threads),
    ]


def export_environment(threads: int) -> dict[str, str]:
    """The exporter's environment: this one, offline, with native thread pools capped at `threads`."""
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        **native_thread_env(threads),
    }


def run_export(
    name: str, models_dir: Path, *, threads: int = 1, timeout: float = EXPORT_TIMEOUT_S, show_log: bool = False
) -> dict[str, Any]:
    """Export model `name` into `models_dir` in a child process, unless an intact export is there already.

    Returns the exporter's report (`path`, `exported`, `seconds`). The child's log is copied to this process's
    stderr when `show_log`; either way its tail is quoted if the export fails. stdin is closed and stdout
    captured: on a stdio server both carry the MCP protocol.
    """
    command = export_command(name, models_dir, threads=threads)
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=export_environment(threads),
        text=True,
    )
    log: deque[str] = deque(maxlen=40)
    relay = threading.Thread(target=_relay_log, args=(process, log, show_log), name="engram-export-log", daemon=True)
    relay.start()
    try:
        # The child writes one short line on stdout, at the end: waiting before reading it cannot deadlock.
        returncode = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()
        raise BackendUnavailable(
            f"The ONNX export of '{name}' did not finish within {timeout:g} s and was stopped. Run `engram "
            "prepare` to export it with its log on screen, or use ENGRAM_EMBEDDING_BACKEND=torch."
        ) from exc
    finally:
        relay.join(timeout=5)
    assert process.stdout is not None
    stdout = process.stdout.read()
    process.stdout.close()
    if returncode != 0:
        raise BackendUnavailable(_failure_message(name, models_dir, returncode, list(log)))
    lines = stdout.strip().splitlines()
    try:
        report: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, ValueError) as exc:
        raise BackendUnavailable(f"The ONNX exporter of '{name}' printed no report: {stdout[-500:]!r}") from exc
    if report.get("exported"):
        logger.info("exported %s to ONNX in %.1f s: %s", name, time.perf_counter() - started, report.get("path"))
    return report


def _relay_log(process: subprocess.Popen[str], tail: deque[str], show: bool) -> None:
    """Keep the last lines of the exporter's log, and copy them all to our stderr when `show`."""
    assert process.stderr is not None
    with process.stderr:
        for line in process.stderr:
            tail.append(line.rstrip("\n"))
            if show:
                sys.stderr.write(line)
                sys.stderr.flush()


def _failure_message(name: str, models_dir: Path, returncode: int, lines: list[str]) -> str:
    """The exporter's own error line if it gave one, else its exit status and the tail of its log."""
    own = [line.removeprefix(ERROR_PREFIX) for line in lines if line.startswith(ERROR_PREFIX)]
    if own:
        return own[-1]
    tail = "\n".join(lines[-15:]) if lines else "(it wrote no log)"
    return (
        f"The ONNX export of '{name}' into {models_dir} failed (exit status {returncode}). Run `engram prepare` to "
        f"retry with the full log, or use ENGRAM_EMBEDDING_BACKEND=torch. Last lines of the exporter's log:\n{tail}"
    )


def ensure_export(
    name: str, models_dir: Path, precision: Precision, *, threads: int = 1, timeout: float = EXPORT_TIMEOUT_S
) -> CacheEntry:
    """The intact cache entry of model `name`, exporting it in a child process first if it is missing or broken."""
    entry = cache_entry(name, models_dir)
    problem = entry_problem(entry, (precision,))
    if problem is None:
        return entry
    if entry.path.exists():
        logger.warning("the ONNX export in %s is unusable (%s); exporting it again", entry.path, problem)
    else:
        logger.info("building the ONNX graph of %s in a child process (one-time; seconds for a BERT model)", name)
    run_export(name, models_dir, threads=threads, timeout=timeout)
    problem = entry_problem(entry, (precision,))
    if problem is not None:
        raise BackendUnavailable(
            f"The ONNX export of '{name}' in {entry.path} is still unusable after exporting it ({problem}). "
            f"Delete {entry.path} and run `engram prepare`, or use ENGRAM_EMBEDDING_BACKEND=torch."
        )
    return entry
