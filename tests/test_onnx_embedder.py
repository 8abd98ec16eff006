"""The ONNX embedding backend: same vectors as sentence-transformers, cached atomic export, no torch when serving."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from engram.config import Settings
from engram.core.errors import BackendUnavailable
from engram.core.ports import Embedder
from engram.embeddings import load_embedder
from engram.embeddings.onnx import (
    BATCH_SIZE,
    MAX_BATCH_TOKENS,
    OnnxEmbedder,
    _atomic_file,
    _batches,
    cache_paths,
    export_onnx,
    load_onnx_embedder,
    model_fingerprint,
    onnx_model_id,
    pool,
    read_pipeline,
)
from engram.embeddings.sentence_transformer import resolve_model_path
from engram.runtime import open_memory

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
    with pytest.raises(BackendUnavailable, match="local sentence-transformers directory"):
        export_onnx("some-org/not-a-local-model", tmp_path / "cache")


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
    fp32, int8 = cache_paths(read_pipeline(model), "/some/local path", tmp_path / "cache")
    assert fp32.parent == tmp_path / "cache" and "/" not in fp32.name and " " not in fp32.name
    assert int8.name == fp32.name.removesuffix(".onnx") + ".int8.onnx"


def test_atomic_file_leaves_nothing_behind_on_failure(tmp_path: Path) -> None:
    dest = tmp_path / "m.onnx"
    with pytest.raises(RuntimeError), _atomic_file(dest) as tmp:
        tmp.write_bytes(b"half a model")
        raise RuntimeError("killed mid-export")
    assert list(tmp_path.iterdir()) == []
    with _atomic_file(dest) as tmp:
        assert not dest.exists()  # readers never see a partial file under the final name
        tmp.write_bytes(b"a whole model")
    assert dest.read_bytes() == b"a whole model" and list(tmp_path.iterdir()) == [dest]


def test_backend_setting_and_load_embedder_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(data_dir=tmp_path).embedding_backend == "torch"
    assert Settings(data_dir=tmp_path).models_dir == tmp_path / "models"
    monkeypatch.setenv("ENGRAM_EMBEDDING_BACKEND", "onnx-int8")
    assert Settings(data_dir=tmp_path).embedding_backend == "onnx-int8"
    with pytest.raises(ValueError, match="cache_dir"):
        load_embedder(BUNDLED, backend="onnx")
    with pytest.raises(BackendUnavailable, match="CPU only"):
        load_embedder(BUNDLED, backend="onnx", device="cuda", cache_dir=tmp_path)
    assert load_embedder("hash", backend="onnx").model_id == "hash-256"  # hash ignores the backend
    assert onnx_model_id(BUNDLED, "fp32") == onnx_model_id(BUNDLED, "int8") == BUNDLED
    assert onnx_model_id("/models/mine", "int8") == "/models/mine"  # a local path is its own id, as with torch


# ---- slow: the real model, exported once per session -------------------------------------------------------


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models directory holding the fp32 and int8 exports of the bundled model (exported once, ~20 s)."""
    cache = tmp_path_factory.mktemp("models")
    export_onnx(BUNDLED, cache, precision="int8")  # exports fp32 first, then quantises it
    return cache


@pytest.fixture(scope="session")
def onnx_fp32(onnx_cache: Path) -> OnnxEmbedder:
    return load_onnx_embedder(BUNDLED, cache_dir=onnx_cache, precision="fp32")


@pytest.fixture(scope="session")
def onnx_int8(onnx_cache: Path) -> OnnxEmbedder:
    return load_onnx_embedder(BUNDLED, cache_dir=onnx_cache, precision="int8")


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(np.sum(a * b, axis=1))


@pytest.mark.slow
def test_fp32_matches_sentence_transformers(onnx_fp32: OnnxEmbedder, real_embedder: Embedder) -> None:
    got, expected = onnx_fp32.embed(SENTENCES), real_embedder.embed(SENTENCES)
    assert got.dtype == np.float32 and got.shape == (len(SENTENCES), 384)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert _cosines(got, expected).min() > 0.999
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


@pytest.mark.slow
def test_second_load_uses_the_cache(onnx_cache: Path) -> None:
    fp32 = export_onnx(BUNDLED, onnx_cache, precision="fp32").path
    int8 = export_onnx(BUNDLED, onnx_cache, precision="int8").path
    stamps = {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in (fp32, int8)}
    load_onnx_embedder(BUNDLED, cache_dir=onnx_cache, precision="fp32")
    load_onnx_embedder(BUNDLED, cache_dir=onnx_cache, precision="int8")
    assert {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in (fp32, int8)} == stamps
    assert sorted(p.suffix for p in onnx_cache.iterdir()) == [".lock", ".onnx", ".onnx"]  # no temp files


@pytest.mark.slow
@pytest.mark.anyio
async def test_a_data_dir_built_with_torch_is_served_by_both_onnx_backends(
    tmp_path: Path, onnx_cache: Path, real_embedder: Embedder
) -> None:
    service = open_memory(Settings(data_dir=tmp_path), real_embedder)
    try:
        await service.remember("alice", "I am allergic to shellfish.")
        await service.remember("alice", "My flight to Lisbon leaves on March 3rd.")
        await service.remember("alice", "My brother Tom is a carpenter in Leeds.")
    finally:
        service.close()
    # Reuse the session's exports (hard links: no copy, no second export) under <data_dir>/models/.
    (tmp_path / "models").mkdir()
    for exported in onnx_cache.glob("*.onnx"):
        os.link(exported, tmp_path / "models" / exported.name)
    for backend in ("onnx", "onnx-int8"):
        service = open_memory(Settings(data_dir=tmp_path, embedding_backend=backend))
        try:
            assert service.embedder.model_id == BUNDLED
            result = await service.recall("alice", "what seafood should she avoid?")
            assert result.memories[0].memory.content == "I am allergic to shellfish."
        finally:
            service.close()


_SERVE = f"""
import json, sys
from pathlib import Path
from engram.embeddings import load_embedder
embedder = load_embedder("all-MiniLM-L6-v2", backend=sys.argv[1], cache_dir=Path(sys.argv[2]))
vectors = embedder.embed(["I can't eat peanuts", "She has a nut allergy"])
heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)
print(json.dumps({{"heavy": heavy, "model_id": embedder.model_id, "shape": list(vectors.shape)}}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_serving_a_cached_export_never_imports_torch(onnx_cache: Path, backend: str) -> None:
    # -W error: the serving path must not warn either (the server's tests run with warnings as errors).
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", _SERVE, backend, str(onnx_cache)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    report = json.loads(result.stdout)
    assert report["heavy"] == [], f"imported when serving: {report['heavy']}"
    assert report["shape"] == [2, 384]
    assert report["model_id"] == BUNDLED


_EXPORT = """
import logging, sys
from pathlib import Path
logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
from engram.embeddings.onnx import export_onnx
print(export_onnx("all-MiniLM-L6-v2", Path(sys.argv[1]), precision="fp32").path)
"""


def _spawn_export(cache: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _EXPORT, str(cache)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.slow
def test_export_survives_a_kill_and_concurrent_exporters(tmp_path: Path, onnx_fp32: OnnxEmbedder) -> None:
    cache = tmp_path / "models"
    victim = _spawn_export(cache)
    deadline = time.monotonic() + 180
    while not list(cache.glob("*.tmp")) and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(cache.glob("*.tmp")), "the export never started writing"
    time.sleep(0.5)  # let it get some way into the write
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate()
    assert not list(cache.glob("*.onnx")), "a killed export left a model under its final name"

    # Two processes at once after the crash: one exports, the other waits for it; both get a whole model.
    racers = [_spawn_export(cache), _spawn_export(cache)]
    outputs = [racer.communicate(timeout=300) for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0], [err[-2000:] for _, err in outputs]
    assert sum(err.count("engram.embeddings.onnx: exporting") for _, err in outputs) == 1
    paths = {out.strip() for out, _ in outputs}
    assert len(paths) == 1
    assert not list(cache.glob("*.tmp")), "the crashed export's temp file was not cleaned up"
    reloaded = load_onnx_embedder(BUNDLED, cache_dir=cache)
    assert Path(paths.pop()) == export_onnx(BUNDLED, cache).path
    assert np.allclose(reloaded.embed(SENTENCES), onnx_fp32.embed(SENTENCES), atol=1e-5)
