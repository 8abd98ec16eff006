"""The ceiling arithmetic of benchmarks/retrieval_ceiling.py: oracles and re-ranker bounds from known ranks."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "retrieval_ceiling.py"


@pytest.fixture(scope="module")
def ceiling() -> ModuleType:
    spec = importlib.util.spec_from_file_location("retrieval_ceiling", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["retrieval_ceiling"] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def _ranks(module: ModuleType, by_signal: dict[str, dict[str, int | None]]) -> dict[str, dict[str, int | None]]:
    """Every signal the summary reads, absent (None) unless given."""
    gold = next(iter(by_signal.values())).keys()
    names = [*module.RAW, "shipped", *module.VARIANTS]
    return {name: by_signal.get(name, dict.fromkeys(gold)) for name in names}


def test_oracle_and_rerank_bounds_count_each_evidence_turn_at_its_best_signal(ceiling: ModuleType) -> None:
    # Turn a: BM25 rank 3; turn b: MiniLM rank 40 only; turn c: nowhere. Shipped holds a at 12 and b at 45.
    ranks = _ranks(
        ceiling,
        {
            "bm25": {"a": 3, "b": None, "c": None},
            "dense": {"a": 60, "b": 40, "c": None},
            "shipped": {"a": 12, "b": 45, "c": None},
            "fusion=keyword": {"a": 2, "b": None, "c": None},
        },
    )
    question = ceiling.QuestionRanks("q1", "multi-hop", ["a", "b", "c"], ranks, union_size=90)
    signals = [*ceiling.RAW, "shipped"]
    means = ceiling.summarise([question], signals, ["shipped", *ceiling.VARIANTS])["means"]["multi-hop"]

    assert means["shipped:R@10"] == 0.0
    assert means["best_variant:R@10"] == pytest.approx(1 / 3, abs=1e-4)  # fusion=keyword holds a in its top 10
    assert means["oracle_any:R@10"] == pytest.approx(1 / 3, abs=1e-4)
    assert means["oracle_any:R@50"] == pytest.approx(2 / 3, abs=1e-4)
    assert means["rerank_union50:R@10"] == pytest.approx(2 / 3, abs=1e-4)  # a and b are candidates; c is in no list
    assert means["rerank_union50:all@10"] == 0.0
    assert means["rerank_shipped50:R@10"] == pytest.approx(2 / 3, abs=1e-4)
    assert means["rerank_bm25_dense50:R@10"] == pytest.approx(2 / 3, abs=1e-4)
    assert means["union50_memories"] == 90.0


def test_a_perfect_reranker_fits_at_most_ten_evidence_turns_in_the_top_ten(ceiling: ModuleType) -> None:
    gold = [f"t{i}" for i in range(12)]
    ranks = _ranks(ceiling, {"bm25": {t: i + 1 for i, t in enumerate(gold)}})
    question = ceiling.QuestionRanks("q2", "open-domain", gold, ranks)
    means = ceiling.summarise([question], [*ceiling.RAW, "shipped"], ["shipped"])["means"]["overall"]

    assert means["rerank_union50:R@10"] == pytest.approx(10 / 12, abs=1e-4)
    assert means["rerank_union50:all@10"] == 0.0


def test_cooccurrence_expansion_adds_words_that_share_turns_with_the_question(ceiling: ModuleType) -> None:
    # "weekend" is in every turn: it meets "swimming" as often as "kids" and "lake" do, but says nothing about it.
    turns = [
        "This weekend I went swimming with the kids at the lake",
        "The kids loved swimming this weekend, the lake was warm",
        "Swimming at the lake again with the kids, a fine weekend",
        "My pottery class made a bowl this weekend",
        "Pottery is relaxing, I made a vase at the weekend",
        "Another pottery bowl, weekend again",
    ]
    words = ceiling.Cooccurrence(turns).expand("Where does she go swimming?", 3)

    assert words[:2] in (["kids", "lake"], ["lake", "kids"])
    assert "weekend" not in words[:2]
