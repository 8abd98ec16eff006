"""The ONNX embedding backend: same vectors as sentence-transformers, a graph built from the weights without torch
in a child process and cached whole (a damaged entry is detected and made again), the int8 model shipped built,
and no torch in the serving process."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from engram.cli import cli
from engram.config import Settings, default_models_dir
from engram.core.errors import BackendUnavailable
from engram.core.ports import Embedder
from engram.embeddings import load_embedder
from engram.embeddings.bundled import BUNDLE_DIR, INT8_FILE, shipped_int8
from engram.embeddings.onnx import (
    BATCH_SIZE,
    MAX_BATCH_TOKENS,
    OnnxEmbedder,
    _batches,
    load_onnx_embedder,
    onnx_model_id,
    pool,
)
from engram.embeddings.onnx_cache import (
    FILES,
    FINGERPRINT_MEMO,
    MANIFEST,
    CacheEntry,
    cache_entry,
    ensure_export,
    entry_problem,
    run_export,
    write_manifest,
)
from engram.embeddings.pipeline import model_fingerprint, read_pipeline
from engram.embeddings.sentence_transformer import resolve_model_path
from engram.runtime import open_memory
from tests.helpers import stepping_clock

BUNDLED = "all-MiniLM-L6-v2"
HEAVY = ("torch", "transformers", "sentence_transformers", "onnx", "onnxscript")

SENTENCES = [
    "I can't eat peanuts.",
    "She has a severe nut allergy, so keep the satay away from her.",
    "The train to Lisbon leaves at 09:40 from platform 3.",
    "ok",
    "",
    "   leading and trailing spaces   ",
    "What did Caroline do at the LGBTQ support group on 7 May 2023?",
    "Ça va? Je voudrais un café crème, s'il vous plaît.",
    "東京で会いましょう 🙂",
    "SHOUTING IN CAPITALS WITH NUMBERS 12345 AND SYMBOLS #@!",
    "def embed(texts: list[str]) -> np.ndarray: ...",
    "My brother Tom is a carpenter in Leeds; he built our kitchen table in 2019.",
    "word " * 400,
]


# ---- fast: pure functions and configuration ----------------------------------------------------------------


def test_pooling_ignores_padding() -> None:
    hidden = np.array([[[1.0, 0.0], [3.0, 2.0], [100.0, 100.0]], [[2.0, 4.0], [0.0, 0.0], [0.0, 0.0]]], np.float32)
    mask = np.array([[1, 1, 0], [1, 0, 0]], np.int64)
    assert np.allclose(pool(hidden, mask, "mean"), [[2.0, 1.0], [2.0, 4.0]])
    assert np.allclose(pool(hidden, mask, "mean_sqrt_len_tokens"), [[4.0 / np.sqrt(2), 2.0 / np.sqrt(2)], [2.0, 4.0]])
    assert np.allclose(pool(hidden, mask, "max"), [[3.0, 2.0], [2.0, 4.0]])
    assert np.allclose(pool(hidden, mask, "cls"), [[1.0, 0.0], [2.0, 4.0]])
    assert pool(hidden, mask, "mean").dtype == np.float32


def test_batches_cover_every_text_once_within_both_limits() -> None:
    rng = np.random.default_rng(3)
    lengths = [int(n) for n in rng.integers(3, 300, size=500)] + [4] * 100  # long texts and many short ones
    batches = list(_batches(lengths))
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        width = max(lengths[i] for i in batch)
        assert lengths[batch[0]] == width  # longest first, so the first text sets the padded width
        assert len(batch) == 1 or (len(batch) <= BATCH_SIZE and len(batch) * width <= MAX_BATCH_TOKENS)
    assert max(len(batch) for batch in batches) == min(BATCH_SIZE, MAX_BATCH_TOKENS // 4)
    assert list(_batches([])) == []


def test_bundled_model_pipeline_is_read_from_its_config_files() -> None:
    pipeline = read_pipeline(Path(resolve_model_path(BUNDLED)))
    # tokenizer.json itself says 128 tokens and fixed padding: sentence_bert_config.json's 256 must win.
    assert pipeline.max_seq_length == 256
    assert (pipeline.pooling, pipeline.dimensions, pipeline.do_lower_case) == ("mean", 384, False)


def _fake_model(root: Path, pooling: dict[str, object], modules: list[str] | None = None) -> Path:
    """A directory that looks like a sentence-transformers model to read_pipeline (no weights)."""
    kinds = modules or ["Transformer", "Pooling", "Normalize"]
    paths = {"Transformer": "", "Pooling": "1_Pooling", "Normalize": "2_Normalize", "Dense": "2_Dense"}
    entries = [
        {"idx": i, "name": str(i), "path": paths[k], "type": f"sentence_transformers.models.{k}"}
        for i, k in enumerate(kinds)
    ]
    root.mkdir(parents=True)
    (root / "modules.json").write_text(json.dumps(entries))
    (root / "1_Pooling").mkdir()
    (root / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    (root / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128, "do_lower_case": True}))
    (root / "tokenizer.json").write_text("{}")
    (root / "model.safetensors").write_bytes(b"weights-v1")
    return root


def test_pooling_config_in_new_and_legacy_formats(tmp_path: Path) -> None:
    legacy = _fake_model(tmp_path / "a", {"word_embedding_dimension": 8, "pooling_mode_cls_token": True})
    new = _fake_model(tmp_path / "b", {"embedding_dimension": 16, "pooling_mode": "max"})
    assert (read_pipeline(legacy).pooling, read_pipeline(legacy).dimensions) == ("cls", 8)
    assert (read_pipeline(new).pooling, read_pipeline(new).dimensions) == ("max", 16)
    assert read_pipeline(new).max_seq_length == 128 and read_pipeline(new).do_lower_case


def test_unsupported_models_are_refused_with_a_pointer_to_torch(tmp_path: Path) -> None:
    dense = _fake_model(tmp_path / "dense", {"embedding_dimension": 8}, ["Transformer", "Pooling", "Dense"])
    with pytest.raises(BackendUnavailable, match="ENGRAM_EMBEDDING_BACKEND=torch"):
        read_pipeline(dense)
    weighted = _fake_model(tmp_path / "weighted", {"embedding_dimension": 8, "pooling_mode": "weightedmean"})
    with pytest.raises(BackendUnavailable, match="weightedmean"):
        read_pipeline(weighted)


def test_a_missing_model_is_named_before_anything_is_exported(tmp_path: Path) -> None:
    models = tmp_path / "models"
    with pytest.raises(BackendUnavailable, match="ENGRAM_EMBEDDING_MODEL") as missing:
        load_embedder(str(tmp_path / "no-such-model"), backend="onnx-int8", cache_dir=models)
    assert f"no model directory at {tmp_path / 'no-such-model'}" in str(missing.value)
    with pytest.raises(BackendUnavailable, match="ENGRAM_EMBEDDING_BACKEND=torch") as hub_name:
        load_embedder("some-org/not-a-local-model", backend="onnx", cache_dir=models)
    assert "never downloads" in str(hub_name.value)
    assert not models.exists(), "nothing may be created for a model that does not exist"


def test_the_exporter_process_reports_a_specific_error(tmp_path: Path) -> None:
    # Through the real child process: its message, not a traceback or a bare exit status, reaches the caller.
    not_a_model = tmp_path / "empty-dir"
    not_a_model.mkdir()
    with pytest.raises(BackendUnavailable, match=r"no modules\.json") as failed:
        run_export(str(not_a_model), tmp_path / "models", timeout=120)
    assert "ENGRAM_EMBEDDING_BACKEND=torch" in str(failed.value)
    assert "Traceback" not in str(failed.value)


def test_an_export_that_takes_too_long_is_stopped(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match=r"did not finish within 0.5 s and was stopped") as slow:
        run_export(BUNDLED, tmp_path / "models", timeout=0.5)
    assert "engram prepare" in str(slow.value)
    assert not list((tmp_path / "models").glob("all-MiniLM-L6-v2-*")), "a stopped export published an entry"


def test_a_changed_model_gets_a_new_cache_key(tmp_path: Path) -> None:
    model = _fake_model(tmp_path / "m", {"embedding_dimension": 8})
    before = model_fingerprint(read_pipeline(model))
    (model / ".gitattributes").write_text("ignored: hidden")
    (model / "onnx").mkdir()
    (model / "onnx" / "model.onnx").write_bytes(b"ignored: not read by sentence-transformers")
    assert model_fingerprint(read_pipeline(model)) == before
    (model / "model.safetensors").write_bytes(b"weights-v2")
    assert model_fingerprint(read_pipeline(model)) != before
    (model / "model.safetensors").write_bytes(b"weights-v1")
    (model / "1_Pooling" / "config.json").write_text(json.dumps({"embedding_dimension": 8, "pooling_mode": "cls"}))
    assert model_fingerprint(read_pipeline(model)) != before


def test_the_remembered_fingerprint_follows_the_files(tmp_path: Path) -> None:
    model = _fake_model(tmp_path / "m", {"embedding_dimension": 8})
    cache = tmp_path / "cache"
    first = cache_entry(str(model), cache).fingerprint
    assert first == model_fingerprint(read_pipeline(model))
    memo = cache / FINGERPRINT_MEMO
    stamp = memo.stat().st_mtime_ns
    assert cache_entry(str(model), cache).fingerprint == first and memo.stat().st_mtime_ns == stamp  # reused
    (model / "model.safetensors").write_bytes(b"weights-v2")  # same size, new content
    second = cache_entry(str(model), cache).fingerprint
    assert second != first and second == model_fingerprint(read_pipeline(model))
    memo.write_text("{ not json")
    assert cache_entry(str(model), cache).fingerprint == second  # a damaged memo is recomputed


def test_cache_entries_are_named_by_model_id_and_content_hash(tmp_path: Path) -> None:
    model = _fake_model(tmp_path / "my model", {"embedding_dimension": 8})
    entry = cache_entry(str(model), tmp_path / "cache")
    assert entry.path.parent == tmp_path / "cache"
    assert entry.path.name.endswith(f"-{entry.fingerprint}") and len(entry.fingerprint) == 16
    assert "/" not in entry.path.name and " " not in entry.path.name
    assert entry.model_id == str(model)  # a local path is its own id, as with torch
    bundled = cache_entry(BUNDLED, tmp_path / "cache")
    assert bundled.path.name.startswith("all-MiniLM-L6-v2-") and bundled.model_id == BUNDLED


def _fake_entry(tmp_path: Path) -> tuple[CacheEntry, Path]:
    """A complete-looking cache entry of a fake model (the files are not real ONNX graphs)."""
    entry = cache_entry(str(_fake_model(tmp_path / "m", {"embedding_dimension": 8})), tmp_path / "cache")
    entry.path.mkdir(parents=True)
    for precision, name in FILES.items():
        (entry.path / name).write_bytes(f"{precision} graph ".encode() * 100)
    write_manifest(entry.path, entry, {"created_at": "now"})
    return entry, entry.path


def test_a_damaged_entry_is_detected(tmp_path: Path) -> None:
    entry, path = _fake_entry(tmp_path)
    assert entry_problem(entry, ("fp32", "int8")) is None

    int8 = path / FILES["int8"]
    whole = int8.read_bytes()
    int8.write_bytes(whole[:-7])  # truncated, as by a full disk or a partial copy
    assert "bytes" in str(entry_problem(entry, ("int8",)))
    assert entry_problem(entry, ("fp32",)) is None  # each precision on its own
    int8.write_bytes(whole[:-1] + b"X")  # same size, one byte changed
    assert "SHA-256" in str(entry_problem(entry, ("int8",)))
    int8.write_bytes(whole)
    assert entry_problem(entry, ("int8",)) is None

    manifest = json.loads((path / MANIFEST).read_text())
    (path / MANIFEST).write_text(json.dumps({**manifest, "format": 1}))
    assert "format" in str(entry_problem(entry, ("fp32",)))
    (path / MANIFEST).write_text(json.dumps({**manifest, "fingerprint": "0" * 16}))
    assert "another model" in str(entry_problem(entry, ("fp32",)))
    (path / MANIFEST).write_text("{ half a manif")
    assert "unreadable manifest" in str(entry_problem(entry, ("fp32",)))
    (path / MANIFEST).unlink()
    assert "no manifest" in str(entry_problem(entry, ("fp32",)))
    shutil.rmtree(path)
    assert entry_problem(entry, ("fp32",)) == "not exported yet"


def test_backend_setting_and_load_embedder_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENGRAM_EMBEDDING_BACKEND", raising=False)
    monkeypatch.delenv("ENGRAM_MODELS_DIR", raising=False)
    assert Settings(data_dir=tmp_path).embedding_backend == "onnx-int8"
    # One cache per user, not per data dir: a new data dir reuses what an old one built.
    assert Settings(data_dir=tmp_path).model_cache_dir == default_models_dir()
    assert default_models_dir().parts[-2:] == ("engram", "models") and not default_models_dir().is_relative_to(tmp_path)
    monkeypatch.setenv("ENGRAM_MODELS_DIR", str(tmp_path / "shared-models"))
    monkeypatch.setenv("ENGRAM_EMBEDDING_BACKEND", "onnx")
    assert Settings(data_dir=tmp_path).model_cache_dir == tmp_path / "shared-models"
    assert Settings(data_dir=tmp_path).embedding_backend == "onnx"
    with pytest.raises(ValueError, match="cache_dir"):
        load_embedder(BUNDLED, backend="onnx")
    with pytest.raises(BackendUnavailable, match="CPU only"):
        load_embedder(BUNDLED, backend="onnx", device="cuda", cache_dir=tmp_path)
    assert load_embedder("hash", backend="onnx").model_id == "hash-256"  # hash ignores the backend
    assert onnx_model_id(BUNDLED, "fp32") == onnx_model_id(BUNDLED, "int8") == BUNDLED
    assert onnx_model_id("/models/mine", "int8") == "/models/mine"  # a local path is its own id, as with torch


def test_embeddings_package_and_thread_caps_import_before_numpy() -> None:
    # The CLI caps native thread pools before numpy loads OpenBLAS; that only works if nothing on the way
    # imports numpy.
    code = (
        "import sys, os\n"
        "import engram.cli\n"
        "from engram.embeddings.threads import cap_native_threads\n"
        "assert 'numpy' not in sys.modules, 'numpy was imported too early'\n"
        "cap_native_threads(1)\n"
        "print(os.environ['OPENBLAS_NUM_THREADS'], os.environ['OMP_NUM_THREADS'])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.split() == ["1", "1"]


# ---- slow: the real model, exported once per session (conftest.onnx_models_dir) ----------------------------


@pytest.fixture(scope="session")
def onnx_fp32(onnx_models_dir: Path) -> OnnxEmbedder:
    return load_onnx_embedder(BUNDLED, models_dir=onnx_models_dir, precision="fp32")


@pytest.fixture(scope="session")
def onnx_int8(onnx_models_dir: Path) -> OnnxEmbedder:
    return load_onnx_embedder(BUNDLED, models_dir=onnx_models_dir, precision="int8")


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(np.sum(a * b, axis=1))


@pytest.mark.slow
def test_fp32_matches_sentence_transformers(onnx_fp32: OnnxEmbedder, real_embedder: Embedder) -> None:
    got, expected = onnx_fp32.embed(SENTENCES), real_embedder.embed(SENTENCES)
    assert got.dtype == np.float32 and got.shape == (len(SENTENCES), 384)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert _cosines(got, expected).min() >= 0.9999
    assert np.abs(got - expected).max() < 1e-4
    # Same vectors, so the same model id: a data directory built with one backend opens with the other.
    assert onnx_fp32.model_id == real_embedder.model_id == BUNDLED


@pytest.mark.slow
def test_int8_is_close_to_sentence_transformers(onnx_int8: OnnxEmbedder, real_embedder: Embedder) -> None:
    cosines = _cosines(onnx_int8.embed(SENTENCES), real_embedder.embed(SENTENCES))
    # Measured here: mean 0.988, worst 0.959 ("ok"); per-tensor quantisation gave ~0.95 / ~0.86. The margin
    # allows for int8 kernels that differ between CPUs (VNNI or not).
    assert cosines.mean() > 0.975 and cosines.min() > 0.93
    # Close enough to share the model id (see onnx_model_id): fp32-built memories stay readable with int8.
    assert onnx_int8.model_id == real_embedder.model_id == BUNDLED


@pytest.mark.slow
def test_the_export_records_its_checks(onnx_models_dir: Path) -> None:
    entry = cache_entry(BUNDLED, onnx_models_dir)
    manifest = json.loads((entry.path / MANIFEST).read_text())
    # Built from the safetensors weights (no torch); test_fp32_matches_sentence_transformers checks its vectors.
    assert manifest["builder"] == "bert-graph"
    assert manifest["int8_min_cosine_vs_fp32"] > 0.9
    assert manifest["model_id"] == BUNDLED and "onnx" in manifest["versions"]
    for name in FILES.values():
        assert manifest["files"][name]["sha256"] == hashlib.sha256((entry.path / name).read_bytes()).hexdigest()


@pytest.mark.slow
def test_long_texts_are_truncated_like_sentence_transformers(onnx_fp32: OnnxEmbedder, real_embedder: Embedder) -> None:
    head = " ".join(f"w{i}" for i in range(300))  # far more than 256 tokens
    texts = [head, head + " and a tail that lies past the limit", "short"]
    got = onnx_fp32.embed(texts)
    assert np.allclose(got[0], got[1], atol=1e-6)  # everything after token 256 is cut off
    assert _cosines(got, real_embedder.embed(texts)).min() > 0.999


@pytest.mark.slow
def test_empty_batch_and_batching_keep_shape_and_order(onnx_fp32: OnnxEmbedder) -> None:
    empty = onnx_fp32.embed([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32
    texts = [f"note {i}: " + "x " * (i % 17) for i in range(75)]  # three batches, lengths mixed
    together = onnx_fp32.embed(texts)
    alone = np.vstack([onnx_fp32.embed([t]) for t in texts[::10]])
    assert np.allclose(together[::10], alone, atol=1e-5)


@pytest.mark.slow
def test_embed_is_safe_from_several_threads(onnx_fp32: OnnxEmbedder) -> None:
    inputs = [[f"thread {t} sentence {i} " + "y " * (i % 9) for i in range(40)] for t in range(4)]
    expected = [onnx_fp32.embed(texts) for texts in inputs]
    results: dict[int, np.ndarray] = {}

    def run(t: int) -> None:
        results[t] = onnx_fp32.embed(inputs[t])

    threads = [threading.Thread(target=run, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for t in range(4):
        assert np.allclose(results[t], expected[t], atol=1e-5)


def _stamps(directory: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(directory.iterdir())}


@pytest.mark.slow
def test_second_load_uses_the_cache(onnx_models_dir: Path) -> None:
    entry = cache_entry(BUNDLED, onnx_models_dir)
    before = {"dir": _stamps(onnx_models_dir), "entry": _stamps(entry.path)}
    for precision in ("fp32", "int8"):
        load_onnx_embedder(BUNDLED, models_dir=onnx_models_dir, precision=precision)
    assert ensure_export(BUNDLED, onnx_models_dir, "int8").path == entry.path
    # The exporter itself, asked again, finds the entry intact and does nothing.
    assert run_export(BUNDLED, onnx_models_dir, timeout=120)["exported"] is False
    assert {"dir": _stamps(onnx_models_dir), "entry": _stamps(entry.path)} == before
    assert sorted(p.name for p in onnx_models_dir.iterdir()) == sorted(
        [entry.path.name, entry.lock_path.name, FINGERPRINT_MEMO]
    )


@pytest.mark.slow
@pytest.mark.anyio
async def test_a_data_dir_built_with_torch_is_served_by_both_onnx_backends(
    tmp_path: Path, onnx_models_dir: Path, real_embedder: Embedder
) -> None:
    service = open_memory(Settings(data_dir=tmp_path), real_embedder, clock=stepping_clock)
    try:
        await service.remember("alice", "I am allergic to shellfish.")
        await service.remember("alice", "My flight to Lisbon leaves on March 3rd.")
        await service.remember("alice", "My brother Tom is a carpenter in Leeds.")
    finally:
        service.close()
    query = "what seafood should she avoid?"
    for backend in ("onnx", "onnx-int8"):
        settings = Settings(data_dir=tmp_path, embedding_backend=backend, models_dir=onnx_models_dir)
        service = open_memory(settings)
        try:
            assert service.embedder.model_id == BUNDLED
            result = await service.recall("alice", query)
            assert result.memories[0].memory.content == "I am allergic to shellfish."
        finally:
            service.close()
    assert not (tmp_path / "models").exists(), "ENGRAM_MODELS_DIR was given: nothing is exported under the data dir"


_SERVE = f"""
import json, logging, sys
from pathlib import Path
logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
from engram.embeddings import load_embedder
embedder = load_embedder("all-MiniLM-L6-v2", backend=sys.argv[1], cache_dir=Path(sys.argv[2]))
vectors = embedder.embed(["I can't eat peanuts", "She has a nut allergy"])
heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)
print(json.dumps({{"heavy": heavy, "model_id": embedder.model_id, "vectors": vectors.tolist()}}))
"""


def _serve(backend: str, models_dir: Path) -> subprocess.Popen[str]:
    # -W error: the serving path must not warn either (the server's tests run with warnings as errors).
    return subprocess.Popen(
        [sys.executable, "-W", "error", "-c", _SERVE, backend, str(models_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_serving_a_cached_export_never_imports_torch(onnx_models_dir: Path, backend: str) -> None:
    process = _serve(backend, onnx_models_dir)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-3000:]
    report = json.loads(out)
    assert report["heavy"] == [], f"imported when serving: {report['heavy']}"
    assert np.asarray(report["vectors"]).shape == (2, 384)
    assert report["model_id"] == BUNDLED
    assert "exported" not in err  # the session's export was used as it is


@pytest.mark.slow
def test_a_damaged_or_half_written_cache_is_exported_again_once(
    tmp_path: Path, onnx_models_dir: Path, onnx_fp32: OnnxEmbedder
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    good = cache_entry(BUNDLED, onnx_models_dir)
    entry = cache_entry(BUNDLED, models)
    # What a killed export leaves: a half-written staging directory (never under the entry's own name)...
    stale = models / f"{entry.temp_prefix}killed"
    stale.mkdir()
    (stale / FILES["fp32"]).write_bytes((good.path / FILES["fp32"]).read_bytes()[:1_000_000])
    # ...and an entry damaged afterwards: int8 and the manifest intact (hard links), fp32 truncated.
    entry.path.mkdir()
    for name in (FILES["int8"], MANIFEST):
        os.link(good.path / name, entry.path / name)
    (entry.path / FILES["fp32"]).write_bytes((good.path / FILES["fp32"]).read_bytes()[:-4096])
    assert "bytes" in str(entry_problem(entry, ("fp32",)))

    # Two servers start at once on the damaged cache: both notice, one re-exports (in its child process),
    # the other waits for it and reuses the result; neither imports torch or onnx itself.
    racers = [_serve("onnx", models), _serve("onnx", models)]
    outputs = [racer.communicate(timeout=600) for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0], [err[-3000:] for _, err in outputs]
    reports = [json.loads(out) for out, _ in outputs]
    assert [report["heavy"] for report in reports] == [[], []]
    # The second may start after the first has already repaired the cache (a loaded machine delays it), and then
    # rightly finds nothing wrong: what must hold is that someone noticed and exactly one exported.
    assert any("is unusable" in err for _, err in outputs)
    assert sum(err.count("exported all-MiniLM-L6-v2 to ONNX in") for _, err in outputs) == 1
    assert np.allclose(reports[0]["vectors"], reports[1]["vectors"], atol=1e-6)

    assert entry_problem(entry, ("fp32", "int8")) is None
    assert not stale.exists(), "the killed export's staging directory was not cleaned up"
    assert sorted(p.name for p in models.iterdir()) == sorted([entry.path.name, entry.lock_path.name, FINGERPRINT_MEMO])
    reloaded = load_onnx_embedder(BUNDLED, models_dir=models, precision="fp32")
    assert _cosines(reloaded.embed(SENTENCES), onnx_fp32.embed(SENTENCES)).min() > 0.9999


@pytest.mark.slow
def test_the_graph_is_built_without_torch_in_seconds_of_work(tmp_path: Path) -> None:
    # The exporter's child process, as a server runs it, for the bundled model: it must not load torch at all
    # (a plain install has none), and it builds from the safetensors weights.
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from engram.embeddings.onnx_export import export\n"
        "report = export('all-MiniLM-L6-v2', Path(sys.argv[1]))\n"
        "loaded = sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules)\n"
        "print(json.dumps({'loaded': loaded, 'builder': report['builder'], 'exported': report['exported']}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "models")], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.splitlines()[-1]) == {"loaded": [], "builder": "bert-graph", "exported": True}


@pytest.mark.slow
def test_the_shipped_int8_model_is_served_without_any_cache(tmp_path: Path, onnx_int8: OnnxEmbedder) -> None:
    # The default backend and model: nothing is exported or written, whatever the models dir.
    models = tmp_path / "models"
    embedder = load_onnx_embedder(BUNDLED, models_dir=models, precision="int8")
    assert not models.exists(), "the shipped model needs no cache entry"
    assert shipped_int8() == BUNDLE_DIR / INT8_FILE
    assert np.allclose(embedder.embed(SENTENCES), onnx_int8.embed(SENTENCES), atol=1e-6)


def test_a_damaged_shipped_model_is_not_used(tmp_path: Path) -> None:
    if shipped_int8() is None:
        pytest.fail("the shipped model is missing: run `make model`")
    copy = tmp_path / "minilm"
    shutil.copytree(BUNDLE_DIR, copy)
    assert shipped_int8(copy) == copy / INT8_FILE
    whole = (copy / INT8_FILE).read_bytes()
    (copy / INT8_FILE).write_bytes(whole[:-1] + bytes([whole[-1] ^ 1]))
    assert shipped_int8(copy) is None
    (copy / INT8_FILE).write_bytes(whole[:-10])
    assert shipped_int8(copy) is None


def test_only_the_exporter_and_the_torch_backend_import_torch() -> None:
    # The serving modules may not even import the exporter: it would drag torch into the server.
    source_dir = Path(__file__).resolve().parent.parent / "src" / "engram"
    heavy = {"torch", "transformers", "sentence_transformers", "onnx", "onnxscript", "engram.embeddings.onnx_export"}
    allowed = {
        "embeddings/sentence_transformer.py",
        "embeddings/onnx_export.py",
        "embeddings/bert_graph.py",
        "embeddings/bundle_build.py",
    }
    offenders, seen = {}, {}
    for path in sorted(source_dir.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        names |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        found = {n for n in names if n in heavy or n.split(".")[0] in heavy - {"engram.embeddings.onnx_export"}}
        relative = path.relative_to(source_dir).as_posix()
        seen[relative] = found
        if found and relative not in allowed:
            offenders[relative] = sorted(found)
    assert offenders == {}
    assert "torch" in seen["embeddings/onnx_export.py"]  # the rule sees imports inside functions


def test_prepare_explains_what_it_cannot_do(tmp_path: Path) -> None:
    env = {"ENGRAM_DATA_DIR": str(tmp_path / "data"), "ENGRAM_MODELS_DIR": str(tmp_path / "models")}
    missing = CliRunner().invoke(cli, ["prepare"], env={**env, "ENGRAM_EMBEDDING_MODEL": str(tmp_path / "nope")})
    assert missing.exit_code == 1 and "ENGRAM_EMBEDDING_MODEL" in missing.stderr
    for setting in ({"ENGRAM_EMBEDDING_MODEL": "hash"}, {"ENGRAM_EMBEDDING_BACKEND": "torch"}):
        nothing = CliRunner().invoke(cli, ["prepare"], env={**env, **setting})
        assert nothing.exit_code == 0 and "nothing to prepare" in nothing.stderr
    assert not (tmp_path / "models").exists()


@pytest.mark.slow
def test_prepare_keeps_an_intact_export(tmp_path: Path, onnx_models_dir: Path) -> None:
    entry = cache_entry(BUNDLED, onnx_models_dir)
    before = _stamps(entry.path)
    env = {"ENGRAM_DATA_DIR": str(tmp_path), "ENGRAM_MODELS_DIR": str(onnx_models_dir)}
    result = CliRunner().invoke(cli, ["prepare"], env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"{BUNDLED} (shipped built): {BUNDLE_DIR}"  # the default needs nothing
    fp32 = CliRunner().invoke(cli, ["prepare"], env={**env, "ENGRAM_EMBEDDING_BACKEND": "onnx"})
    assert fp32.exit_code == 0, fp32.output
    assert fp32.stdout.strip() == f"{BUNDLED} (already exported): {entry.path}"
    assert _stamps(entry.path) == before
