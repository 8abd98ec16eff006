"""The retrieval evaluation: format reading, scoring arithmetic, and the `engram eval` command end to end."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from engram.cli import cli
from engram.config import Settings
from engram.core.errors import InvalidInput
from engram.evaluation import _score_ranking, _Scores, load_conversations

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "bench" / "locomo10.jsonl"


def _conversation(conv_id: str) -> dict[str, object]:
    topics = ["volcano hiking in Iceland", "sourdough baking", "learning the cello", "restoring a sailboat"]
    turns = [
        {
            "id": f"D{s}:{i}",
            "session_id": f"session_{s}",
            "speaker": "Ana" if i % 2 else "Ben",
            "text": f"Let me tell you about {topic}, part {i}.",
            "timestamp": f"2024-0{s}-01T10:00:00",
        }
        for s, topic in enumerate(topics, start=1)
        for i in range(1, 4)
    ]
    questions = [
        {
            "qid": f"{conv_id}/q{s}",
            "question": f"What about {topic}?",
            "answer": "-",
            "category": "single-hop" if s % 2 else "temporal",
            "evidence_turn_ids": [f"D{s}:1", f"D{s}:2", f"D{s}:3"],
            "evidence_session_ids": [f"session_{s}"],
        }
        for s, topic in enumerate(topics, start=1)
    ]
    questions.append(
        {"qid": f"{conv_id}/none", "question": "Unanswerable?", "answer": "-", "category": "adversarial",
         "evidence_turn_ids": [], "evidence_session_ids": []}
    )  # fmt: skip
    return {"conv_id": conv_id, "dataset": "synthetic", "speakers": ["Ana", "Ben"], "turns": turns,
            "questions": questions, "extra_field": "ignored"}  # fmt: skip


@pytest.fixture
def bench_file(tmp_path: Path) -> Path:
    path = tmp_path / "bench.jsonl.gz"
    with gzip.open(path, "wt") as out:
        for conv_id in ("conv-a", "conv-b"):
            out.write(json.dumps(_conversation(conv_id)) + "\n")
    return path


def test_scoring_arithmetic() -> None:
    scores = _Scores()
    _score_ranking("turn", ["x", "a", "y", "b"], frozenset({"a", "b"}), scores)
    means = scores.means()
    assert means["turn_recall@1"] == 0.0 and means["turn_recall@5"] == 1.0
    assert means["turn_mrr"] == 0.5
    ideal = 1 + 1 / 1.5849625
    assert means["turn_ndcg@10"] == pytest.approx((1 / 1.5849625 + 1 / 2.3219281) / ideal, abs=1e-4)


def test_gzip_files_load_and_bad_lines_are_reported(bench_file: Path, tmp_path: Path) -> None:
    conversations = load_conversations(bench_file)
    assert [c.conv_id for c in conversations] == ["conv-a", "conv-b"] and len(conversations[0].turns) == 12
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"conv_id": "x"}\n')
    with pytest.raises(InvalidInput, match="line 1"):
        load_conversations(broken)


def test_engram_eval_ingests_asks_and_reports(bench_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    env = {"ENGRAM_EMBEDDING_MODEL": "hash", "ENGRAM_DATA_DIR": str(tmp_path / "untouched")}
    result = CliRunner().invoke(cli, ["eval", str(bench_file), "--out", str(out)], env=env)
    assert result.exit_code == 0, result.output
    assert "overall" in result.stdout and "single-hop" in result.stdout
    report = json.loads(out.read_text())
    assert report["questions"] == 10 and report["questions_scored"] == 8
    assert report["timings"]["ingest"]["turns"] == 24
    assert report["timings"]["ingest"]["path"] == "remember_many"
    # Each question shares its topic words with exactly the three turns of its session.
    assert report["overall"]["session_recall@1"] == 1.0
    assert report["overall"]["turn_recall@5"] == 1.0
    assert set(report["per_category"]) == {"single-hop", "temporal"}
    assert not (tmp_path / "untouched").exists()  # the user's data directory is never used


def test_engram_eval_scores_several_rankings_from_one_ingest(bench_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    env = {"ENGRAM_EMBEDDING_MODEL": "hash", "ENGRAM_DATA_DIR": str(tmp_path / "untouched")}
    args = ["eval", str(bench_file), "--out", str(out), "--every", "2", "--compare", "neighbor_weight=0,passages=0"]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["dataset"]["conv_ids"] == ["conv-a"], "every second conversation, from the first"
    assert report["timings"]["ingest"]["turns"] == 12, "ingested once for both rankings"
    assert list(report["variants"]) == ["default", "neighbor_weight=0.0,passages=0.0"]
    assert report["variants"]["neighbor_weight=0.0,passages=0.0"]["ranking"]["neighbor_weight"] == 0.0
    assert report["variants"]["default"]["overall"] == report["overall"]
    assert "ranking variants, one ingest" in result.stdout and "neighbor_weight=0.0,passages=0.0" in result.stdout
    bad = CliRunner().invoke(cli, ["eval", str(bench_file), "--compare", "neighbour=1"], env=env)
    assert bad.exit_code == 2 and "NAME one of" in bad.output


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DATA.exists(), reason=f"benchmark data not present at {SHARED_DATA}")
def test_real_model_on_one_locomo_conversation_beats_bm25(tmp_path: Path) -> None:
    out = tmp_path / "locomo.json"
    result = CliRunner().invoke(cli, ["eval", str(SHARED_DATA), "--conversations", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    overall = json.loads(out.read_text())["overall"]
    # Published BM25 numbers over all ten conversations: turn R@10 0.570, session R@5 0.824.
    assert overall["turn_recall@10"] > 0.70 and overall["session_recall@5"] > 0.85


def _history() -> list[dict[str, object]]:
    """Two sessions between user and assistant: a long answer (with passages), a repeated turn, a caption."""
    long_answer = " ".join(f"step{i} of the sourdough method" for i in range(120))
    said = [
        ("s1", "user", "How do I start a sourdough starter?", None),
        ("s1", "assistant", long_answer, None),
        ("s1", "user", "Thanks!", None),
        ("s2", "user", "I baked my first loaf last Saturday.", "a photo of a loaf"),
        ("s2", "assistant", "Congratulations on the loaf!", None),
        ("s2", "user", "Thanks!", None),
    ]
    return [
        {"id": f"t{i}", "session_id": session, "speaker": speaker, "text": text,
         "timestamp": f"2024-0{1 + i // 3}-0{1 + i % 3}T09:00:00", **({"image_caption": cap} if cap else {})}
        for i, (session, speaker, text, cap) in enumerate(said)
    ]  # fmt: skip


def _stored(data_dir: Path, ids: list[str]) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """Every stored memory row and passage row, their ids and user keys (secret per data directory) replaced by the
    number of the first turn stored as that memory, so that two stores can be compared."""
    import lancedb

    db = lancedb.connect(Settings(data_dir=data_dir).long_term_dir)
    turn = {memory: ids.index(memory) for memory in ids}
    memories = [
        {**row, "id": turn[str(row["id"])], "user_id": None} for row in db.open_table("memories").to_arrow().to_pylist()
    ]
    passages = [
        {**row, "id": None, "memory_id": turn[str(row["memory_id"])], "user_id": None}
        for row in db.open_table("passages").to_arrow().to_pylist()
    ]
    return sorted(memories, key=lambda r: int(r["id"])), sorted(passages, key=lambda r: (r["memory_id"], r["position"]))


@pytest.mark.anyio
async def test_batched_ingest_stores_what_per_turn_remember_stores(tmp_path: Path) -> None:
    """The evaluation imports a history as a client would, through remember_many: it stores what remember would."""
    from engram.embeddings.hashing import HashEmbedder
    from engram.evaluation import _ingest
    from engram.runtime import open_memory

    def clock() -> datetime:  # one fixed now: the two ways of storing read the clock a different number of times
        return datetime(2025, 3, 1, tzinfo=UTC)

    turns = _history()
    stores: dict[bool, tuple[object, ...]] = {}
    for per_turn in (True, False):
        settings = Settings(data_dir=tmp_path / str(per_turn), embedding_model="hash")
        memory = open_memory(settings, HashEmbedder(), clock=clock)
        try:
            ids = await _ingest(memory, "u1", turns, per_turn, batch=4)  # a batch boundary inside a session
            turn = {memory: ids.index(memory) for memory in ids}
            transcripts = [(await memory.transcript("u1", s)).turns for s in ("s1", "s2")]
            transcripts = [[t.model_copy(update={"memory_id": turn[t.memory_id]}) for t in ts] for ts in transcripts]
        finally:
            memory.close()
        stores[per_turn] = ([ids.index(i) for i in ids], transcripts, *_stored(settings.data_dir, ids))
    one_by_one, batched = stores[True], stores[False]
    assert one_by_one[0] == batched[0] == [0, 1, 2, 3, 4, 2], "the repeated turn is the same memory both ways"
    assert one_by_one[1] == batched[1], "the same session transcripts"
    assert one_by_one[2] == batched[2], "the same memory rows: content, role, speaker, dates, index text, vector"
    assert one_by_one[3] == batched[3] and batched[3], "the same passages of the long answer"


def test_embedding_cache_gives_back_the_models_vectors(tmp_path: Path) -> None:
    from engram.embeddings.hashing import HashEmbedder
    from engram.embeddings.remembered import RememberedEmbedder

    model = HashEmbedder()
    texts = ["sourdough starter", "a loaf on Saturday", "sourdough starter"]
    first = RememberedEmbedder(model, tmp_path / "vectors.sqlite")
    assert (first.embed(texts) == model.embed(texts)).all() and first.misses == 3
    first.close()
    again = RememberedEmbedder(model, tmp_path / "vectors.sqlite")
    assert (again.embed([*texts, "new"]) == model.embed([*texts, "new"])).all()
    assert (again.hits, again.misses) == (3, 1), "texts seen before are read back, not computed"
    again.close()
