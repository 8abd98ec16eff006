"""Knowledge memory acceptance with the real all-MiniLM-L6-v2: ingest a folder, recall with citations, re-ingest."""

from __future__ import annotations

from pathlib import Path

import lance
import pytest

from engram.config import Settings
from engram.core.ports import Embedder
from engram.runtime import open_memory
from tests.helpers import stepping_clock
from tests.knowledge_docs import CountingEmbedder, make_pdf, write_folder

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

QUESTIONS = {
    "leave": ("How many paid sick days does an employee get each year?", ["Leave policy", "Sick leave"], "ten paid"),
    "wifi": ("What is the name of the wireless network for visitors?", [], "Northwind-Guest"),
    "expenses": ("How much can I spend on food per day on a business trip?", ["Travel and expenses", "Meals"], "45"),
    "safety": ("Where should we gather after evacuating the building?", [], "car park"),
}


def _sources(settings: Settings) -> dict[str, list[int]]:
    table = lance.dataset(str(settings.knowledge_dir / "knowledge.lance")).to_table(columns=["source", "position"])
    found: dict[str, list[int]] = {}
    for row in table.to_pylist():
        found.setdefault(row["source"], []).append(row["position"])
    return {source: sorted(positions) for source, positions in found.items()}


async def test_folder_ingest_recall_cites_each_file_and_reingest_is_incremental(
    tmp_path: Path, real_embedder: Embedder
) -> None:
    files = write_folder(tmp_path / "docs")
    (tmp_path / "docs" / "scanned.pdf").write_bytes(make_pdf([["x"]], "x")[:80])  # malformed: cut short
    (tmp_path / "docs" / "moved.md").symlink_to(tmp_path / "elsewhere.md")  # unreadable: the target is gone
    settings = Settings(data_dir=tmp_path / "data")
    counting = CountingEmbedder(real_embedder)
    memory = open_memory(settings, counting, clock=stepping_clock)
    try:
        assert memory.knowledge is not None
        await memory.remember("dana", "I am planning a business trip to Oslo next month.")
        counting.texts.clear()
        counting.calls = 0
        report = await memory.knowledge.ingest_paths(None, [tmp_path / "docs"])

        # 3. The malformed PDF and the unreadable file are reported and skipped; the rest is ingested.
        assert sorted(Path(p.source).name for p in report.failed) == ["moved.md", "scanned.pdf"]
        assert {c.source for c in report.changed} == {str(p) for p in files.values()}
        # Batched: several chunks per model call, never one call per chunk.
        assert report.chunks_embedded == len(counting.texts) and counting.calls < report.chunks_embedded

        # 1. Each question finds its file's passage first, with its citation.
        for name, (question, heading_path, words) in QUESTIONS.items():
            result = await memory.recall("dana", question)
            top = result.knowledge[0]
            assert top.citation.source == str(files[name]), (question, [h.citation.source for h in result.knowledge])
            assert words in top.content
            assert top.citation.heading_path == heading_path
            assert 0 <= top.citation.position < top.citation.chunks
            assert top.citation.scope == "global"
        pdf_hit = (await memory.recall("dana", QUESTIONS["safety"][0])).knowledge[0]
        assert pdf_hit.citation.title == "Fire safety" and pdf_hit.citation.page == 1
        trip = await memory.recall("dana", "What is the meal allowance on my trip?")
        assert trip.memories[0].memory.content.startswith("I am planning a business trip")
        assert trip.knowledge[0].citation.source == str(files["expenses"])

        # 2. Editing one file replaces exactly its chunks; untouched files are not embedded again.
        before = _sources(settings)
        files["wifi"].write_text(
            "Office network notes\n\nThe guest wireless network was renamed Northwind-Visitors in May.\n"
        )
        counting.texts.clear()
        edited = await memory.knowledge.ingest_paths(None, [tmp_path / "docs"])
        assert [(c.source, c.status) for c in edited.changed] == [(str(files["wifi"]), "updated")]
        assert edited.unchanged == 3
        assert counting.texts and all("Northwind-Visitors" in t or "Office network notes" in t for t in counting.texts)
        for untouched in ("sick days", "meal allowance", "assembly point"):
            assert not any(untouched in t for t in counting.texts)
        after = _sources(settings)
        assert {s: p for s, p in after.items() if s != str(files["wifi"])} == {
            s: p for s, p in before.items() if s != str(files["wifi"])
        }
        renamed = (await memory.recall("dana", QUESTIONS["wifi"][0])).knowledge[0]
        assert renamed.citation.source == str(files["wifi"]) and "Northwind-Visitors" in renamed.content
        assert all(
            "Northwind-Guest" not in h.content for h in (await memory.recall("dana", "Northwind-Guest")).knowledge
        )

        # Deleting a file and re-ingesting the folder removes its chunks.
        files["expenses"].unlink()
        counting.texts.clear()
        removed = await memory.knowledge.ingest_paths(None, [tmp_path / "docs"])
        assert removed.removed == [str(files["expenses"])] and counting.texts == []
        assert str(files["expenses"]) not in _sources(settings)
        meals = await memory.recall("dana", QUESTIONS["expenses"][0], scope="knowledge")
        assert all(h.citation.source != str(files["expenses"]) for h in meals.knowledge)
    finally:
        memory.close()
