"""The retrieval evaluation: format reading, scoring arithmetic, and the `engram eval` command end to end."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from engram.cli import cli
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
    assert report["timings"]["ingest"]["count"] == 24
    # Each question shares its topic words with exactly the three turns of its session.
    assert report["overall"]["session_recall@1"] == 1.0
    assert report["overall"]["turn_recall@5"] == 1.0
    assert set(report["per_category"]) == {"single-hop", "temporal"}
    assert not (tmp_path / "untouched").exists()  # the user's data directory is never used


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DATA.exists(), reason=f"benchmark data not present at {SHARED_DATA}")
def test_real_model_on_one_locomo_conversation_beats_bm25(tmp_path: Path) -> None:
    out = tmp_path / "locomo.json"
    result = CliRunner().invoke(cli, ["eval", str(SHARED_DATA), "--conversations", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    overall = json.loads(out.read_text())["overall"]
    # Published BM25 numbers over all ten conversations: turn R@10 0.570, session R@5 0.824.
    assert overall["turn_recall@10"] > 0.70 and overall["session_recall@5"] > 0.85
