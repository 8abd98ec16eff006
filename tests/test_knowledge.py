"""Knowledge memory with the hash embedder: parsing, chunking, incremental re-ingest, scoping, erasure, MCP surface."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import lance
import pytest
from mcp import Client
from mcp.types import TextContent, TextResourceContents

from engram.config import Settings
from engram.core.errors import InvalidInput
from engram.core.knowledge_chunking import chunk_document, estimate_tokens
from engram.core.knowledge_models import Block, DocumentFormat, ParsedDocument
from engram.core.service import MemoryService
from engram.embeddings.hashing import HashEmbedder
from engram.ingest import parse_document
from engram.runtime import open_memory
from engram.server.app import build_server
from tests.helpers import error, ok, stepping_clock
from tests.knowledge_docs import EXPENSES_HTML, LEAVE_POLICY, CountingEmbedder, make_pdf, write_folder

pytestmark = pytest.mark.anyio


def _rows(settings: Settings) -> list[dict[str, Any]]:
    table = lance.dataset(str(settings.knowledge_dir / "knowledge.lance")).to_table()
    rows: list[dict[str, Any]] = table.drop_columns(["vector"]).to_pylist()
    return rows


@pytest.fixture
def counting() -> CountingEmbedder:
    return CountingEmbedder(HashEmbedder())


@pytest.fixture
def memory(settings: Settings, counting: CountingEmbedder) -> Any:
    service = open_memory(settings, counting, clock=stepping_clock)
    yield service
    service.close()


def _knowledge(memory: MemoryService) -> Any:
    assert memory.knowledge is not None
    return memory.knowledge


# --- parsing and chunking -----------------------------------------------------------------------------------------


def test_markdown_keeps_headings_and_ignores_hashes_in_code() -> None:
    document = parse_document(LEAVE_POLICY.encode(), DocumentFormat.MARKDOWN)
    assert document.title == "Leave policy"
    headings = [(b.heading_level, b.text) for b in document.blocks if b.is_heading]
    assert headings == [(1, "Leave policy"), (2, "Sick leave"), (2, "Annual holiday")]
    assert any(b.text.startswith("# this line is inside a code block") and not b.is_heading for b in document.blocks)


def test_html_drops_scripts_and_styles_and_reads_the_title() -> None:
    document = parse_document(EXPENSES_HTML.encode(), DocumentFormat.HTML)
    assert document.title == "Travel and expenses"
    text = " ".join(b.text for b in document.blocks)
    assert "tracking" not in text and "font-family" not in text
    assert [b.text for b in document.blocks if b.heading_level == 2] == ["Trains and flights", "Meals"]


def test_text_refuses_binary_and_accepts_latin1() -> None:
    from engram.core.errors import UnreadableDocument

    with pytest.raises(UnreadableDocument, match="binary"):
        parse_document(b"\x00\x01garbage", DocumentFormat.TEXT)
    assert parse_document("Café menu".encode("latin-1"), DocumentFormat.TEXT).blocks[0].text == "Café menu"


def test_chunks_follow_sections_stay_in_budget_and_overlap() -> None:
    sentences = [f"Sentence number {i} talks about topic {i % 7} in some detail." for i in range(60)]
    document = ParsedDocument(
        title="Doc",
        blocks=[
            Block("Doc", heading_level=1),
            Block("Short intro."),
            Block("Part A", heading_level=2),
            Block(" ".join(sentences[:30])),
            Block(" ".join(sentences[30:])),
            Block("Part B", heading_level=2),
            Block("Only one paragraph here."),
        ],
    )
    chunks = chunk_document(document, budget=60, overlap=15)
    assert [c.position for c in chunks] == list(range(len(chunks)))
    assert all(estimate_tokens(c.content) <= 60 for c in chunks)
    assert chunks[0].heading_path == ["Doc"] and chunks[0].content == "Short intro."
    assert chunks[-1].heading_path == ["Doc", "Part B"] and chunks[-1].content == "Only one paragraph here."
    part_a = [c for c in chunks if c.heading_path == ["Doc", "Part A"]]
    assert len(part_a) >= 4
    for first, second in itertools.pairwise(part_a):
        last_sentence = first.content.split(". ")[-1].rstrip(".")
        assert last_sentence in second.content  # the next chunk repeats the previous one's last sentence
    # Every sentence is somewhere: nothing is lost between chunks.
    joined = " ".join(c.content for c in part_a)
    assert all(s in joined for s in sentences)


# --- ingest, incremental re-ingest, interruption --------------------------------------------------------------


async def test_reingest_skips_unchanged_replaces_edited_and_removes_deleted(
    tmp_path: Path, settings: Settings, memory: MemoryService, counting: CountingEmbedder
) -> None:
    files = write_folder(tmp_path / "docs")
    knowledge = _knowledge(memory)
    first = await knowledge.ingest_paths(None, [tmp_path / "docs"])
    assert {c.source for c in first.changed} == {str(p) for p in files.values()}
    assert first.failed == [] and first.chunks_embedded == first.chunks_written == len(_rows(settings))
    before = {r["id"]: r for r in _rows(settings)}

    counting.texts.clear()
    again = await knowledge.ingest_paths(None, [tmp_path / "docs"])
    assert again.unchanged == 4 and again.changed == [] and again.chunks_embedded == 0 and counting.texts == []

    files["wifi"].write_text(files["wifi"].read_text().replace("twenty-four hours", "one week"))
    counting.texts.clear()
    edited = await knowledge.ingest_paths(None, [tmp_path / "docs"])
    assert [(c.source, c.status) for c in edited.changed] == [(str(files["wifi"]), "updated")]
    assert edited.unchanged == 3
    # Only the edited chunk went to the model; the wifi file's unchanged chunk reused its stored vector.
    assert counting.texts and all("one week" in t for t in counting.texts)
    after = {r["id"]: r for r in _rows(settings)}
    others = {i for i, r in before.items() if r["source"] != str(files["wifi"])}
    assert others <= set(after)  # untouched files: the very same rows
    wifi_after = [r for r in after.values() if r["source"] == str(files["wifi"])]
    assert any("one week" in r["content"] for r in wifi_after)
    assert not any("twenty-four" in r["content"] for r in wifi_after)
    assert len(after) == len(before)  # replaced, not duplicated

    files["expenses"].unlink()
    removed = await knowledge.ingest_paths(None, [tmp_path / "docs"])
    assert removed.removed == [str(files["expenses"])]
    assert not any(r["source"] == str(files["expenses"]) for r in _rows(settings))
    listed = await knowledge.sources(None)
    assert sorted(s.source for s in listed) == sorted(str(files[k]) for k in ("leave", "wifi", "safety"))
    assert all(s.chunks == sum(1 for r in _rows(settings) if r["source"] == s.source) for s in listed)


async def test_an_ingest_interrupted_midway_is_finished_by_running_it_again(tmp_path: Path, settings: Settings) -> None:
    files = write_folder(tmp_path / "docs")

    class Failing(HashEmbedder):
        def embed(self, texts: Any) -> Any:
            if self.calls >= 2:
                raise KeyboardInterrupt  # like Ctrl-C in the middle of the third write
            return super().embed(texts)

    from engram.core.knowledge import KnowledgePolicy

    service = open_memory(settings, Failing(), clock=stepping_clock)
    knowledge = _knowledge(service)
    knowledge.policy = KnowledgePolicy(write_batch_chunks=1)  # one file per commit
    with pytest.raises(KeyboardInterrupt):
        await knowledge.ingest_paths(None, [tmp_path / "docs"])
    service.close()
    committed = {r["source"] for r in _rows(settings)}
    assert 0 < len(committed) < 4

    service = open_memory(settings, HashEmbedder(), clock=stepping_clock)
    try:
        report = await _knowledge(service).ingest_paths(None, [tmp_path / "docs"])
        assert report.unchanged == len(committed)
        assert {c.source for c in report.changed} == {str(p) for p in files.values()} - committed
        rows = _rows(settings)
        assert len({r["id"] for r in rows}) == len(rows)
        for source in {str(p) for p in files.values()}:
            positions = sorted(r["position"] for r in rows if r["source"] == source)
            assert positions == list(range(len(positions))) and positions
    finally:
        service.close()


async def test_unreadable_files_are_reported_and_the_rest_ingested(tmp_path: Path, memory: MemoryService) -> None:
    files = write_folder(tmp_path / "docs")
    (tmp_path / "docs" / "scan.pdf").write_bytes(make_pdf([["ok"]], "x")[:60])  # truncated: malformed
    (tmp_path / "docs" / "gone.md").symlink_to(tmp_path / "nowhere.md")  # a dangling link: unreadable
    (tmp_path / "docs" / "blob.txt").write_bytes(b"\x00\x01\x02 binary")
    (tmp_path / "docs" / "image.png").write_bytes(b"\x89PNG")  # unsupported: not even considered
    report = await _knowledge(memory).ingest_paths(None, [tmp_path / "docs"])
    failed = {Path(p.source).name: p.reason for p in report.failed}
    assert set(failed) == {"scan.pdf", "gone.md", "blob.txt"}
    assert "No such file" in failed["gone.md"] and "binary" in failed["blob.txt"]
    assert {c.source for c in report.changed} == {str(p) for p in files.values()}


async def test_include_and_exclude_globs(tmp_path: Path, memory: MemoryService) -> None:
    files = write_folder(tmp_path / "docs")
    report = await _knowledge(memory).ingest_paths(None, [tmp_path / "docs"], include=["*.md", "*.txt"])
    assert {c.source for c in report.changed} == {str(files["leave"]), str(files["wifi"])}
    report = await _knowledge(memory).ingest_paths(None, [tmp_path / "docs"], exclude=["hr/*"])
    assert {c.source for c in report.changed} == {str(files["expenses"]), str(files["safety"])}
    assert report.removed == []  # the excluded file still exists: it is left alone, not removed


# --- scope and erasure ----------------------------------------------------------------------------------------


async def test_user_knowledge_is_private_and_global_knowledge_shared(tmp_path: Path, memory: MemoryService) -> None:
    knowledge = _knowledge(memory)
    await knowledge.ingest_text(
        "alice",
        "alice/diary.md",
        "# Garden\n\nThe zucchini bed gets compost in April.",
        DocumentFormat.MARKDOWN,
    )
    await knowledge.ingest_text(None, "faq.md", "# FAQ\n\nThe zucchini festival is in August.", DocumentFormat.MARKDOWN)
    alice = await memory.recall("alice", "zucchini", scope="knowledge")
    bob = await memory.recall("bob", "zucchini", scope="knowledge")
    assert {h.citation.source for h in alice.knowledge} == {"alice/diary.md", "faq.md"}
    assert {h.citation.source for h in bob.knowledge} == {"faq.md"}
    assert {h.citation.scope for h in alice.knowledge} == {"user", "global"}
    assert [s.source for s in await knowledge.sources("bob")] == ["faq.md"]
    with pytest.raises(InvalidInput, match="no user knowledge source"):
        await knowledge.remove_source("bob", "alice/diary.md")


async def test_knowledge_resolves_a_users_key_itself(settings: Settings, memory: MemoryService) -> None:
    # Adapters pass the raw id; the stored owner is the same pseudonym the memory service uses, never the id.
    await _knowledge(memory).ingest_text("alice", "notes.md", "Tomatoes like sun.", DocumentFormat.TEXT)
    (owner,) = {r["owner"] for r in _rows(settings)}
    assert owner == memory.user_key("alice") != "alice"
    with pytest.raises(InvalidInput, match="user_id"):
        await _knowledge(memory).sources("x' OR '1'='1")


async def test_forget_user_erases_the_users_knowledge_without_trace(settings: Settings, memory: MemoryService) -> None:
    knowledge = _knowledge(memory)
    key = memory.user_key("alice")
    await knowledge.ingest_text(
        "alice", "notes.md", "# Secret\n\nQuuxberry recipe with plenty of sugar.", DocumentFormat.MARKDOWN
    )
    await knowledge.ingest_text(None, "faq.md", "# FAQ\n\nRecipes live in the cookbook.", DocumentFormat.MARKDOWN)
    await memory.remember("alice", "likes quuxberries")
    receipt = await memory.forget_user("alice", confirm=True)
    assert receipt.knowledge == 1 and receipt.long_term == 1
    raw = b"".join(p.read_bytes() for p in settings.knowledge_dir.rglob("*") if p.is_file())
    assert key.encode() not in raw and b"quuxberr" not in raw.lower()
    assert {r["source"] for r in _rows(settings)} == {"faq.md"}
    assert (await memory.recall("bob", "recipes cookbook", scope="knowledge")).knowledge[0].citation.source == "faq.md"


async def test_recall_scope_selects_memories_knowledge_or_both(memory: MemoryService) -> None:
    await memory.remember("alice", "The team offsite is in Porto", session_id="s1")
    await _knowledge(memory).ingest_text(
        None, "travel.md", "# Travel\n\nThe offsite hotel in Porto is booked.", DocumentFormat.MARKDOWN
    )
    both = await memory.recall("alice", "offsite Porto", session_id="s1")
    assert both.memories and both.knowledge and both.working
    only_memories = await memory.recall("alice", "offsite Porto", scope="memories")
    assert only_memories.memories and only_memories.knowledge == []
    only_knowledge = await memory.recall("alice", "offsite Porto", session_id="s1", scope="knowledge")
    assert only_knowledge.knowledge and only_knowledge.memories == [] and only_knowledge.working == []
    cited = only_knowledge.knowledge[0].citation
    assert (cited.source, cited.title, cited.heading_path, cited.position, cited.chunks) == (
        "travel.md", "Travel", ["Travel"], 0, 1,
    )  # fmt: skip


async def test_ingest_text_validates_its_input(memory: MemoryService) -> None:
    knowledge = _knowledge(memory)
    with pytest.raises(InvalidInput, match="source"):
        await knowledge.ingest_text(None, "bad\nname", "text", DocumentFormat.TEXT)
    with pytest.raises(InvalidInput, match="PDF"):
        await knowledge.ingest_text(None, "doc.pdf", "text", DocumentFormat.PDF)
    first = await knowledge.ingest_text(None, "doc", "one two three", DocumentFormat.TEXT)
    again = await knowledge.ingest_text(None, "doc", "one two three", DocumentFormat.TEXT)
    assert first.chunks_written == 1 and again.unchanged == 1 and again.chunks_written == 0


# --- MCP surface ------------------------------------------------------------------------------------------------


async def test_path_ingest_over_mcp_is_refused_without_roots(client: Client, tmp_path: Path) -> None:
    write_folder(tmp_path / "docs")
    # Without roots ingest_files could refuse every path: it is not even listed, so no model is tempted by it.
    assert "ingest_files" not in {tool.name for tool in (await client.list_tools()).tools}
    message = error(await client.call_tool("ingest_files", {"user_id": "alice", "paths": [str(tmp_path / "docs")]}))
    assert "Unknown tool: ingest_files" in message


async def test_mcp_ingest_is_confined_to_roots_reports_progress_and_is_listed(tmp_path: Path) -> None:
    root = tmp_path / "allowed"
    files = write_folder(root)
    (tmp_path / "secret.md").write_text("# Secret\n\nThe server's private notes.")
    (root / "escape.md").symlink_to(tmp_path / "secret.md")
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash", knowledge_roots=[root], tools="all")
    server = build_server(settings, embedder=HashEmbedder(), clock=stepping_clock)
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async with Client(server, raise_exceptions=True) as client:
        outside = error(
            await client.call_tool("ingest_files", {"user_id": "alice", "paths": [str(tmp_path / "secret.md")]})
        )
        assert "outside the folders" in outside
        assert "not a file or folder" in error(
            await client.call_tool("ingest_files", {"user_id": "alice", "paths": [str(root) + "\x00x"]})
        )
        sneaky = str(root / ".." / "secret.md")
        assert "outside the folders" in error(
            await client.call_tool("ingest_files", {"user_id": "alice", "paths": [sneaky]})
        )

        report = ok(
            await client.call_tool(
                "ingest_files", {"user_id": "alice", "paths": [str(root)]}, progress_callback=on_progress
            )
        )
        assert report["scope"] == "user"
        assert {c["source"] for c in report["changed"]} == {str(p) for p in files.values()}
        assert [Path(p["source"]).name for p in report["failed"]] == ["escape.md"]  # a link out of the root
        assert len(progress) >= 5 and progress[-1][0] == progress[-1][1]
        assert [p[0] for p in progress] == sorted(p[0] for p in progress)

        text_report = ok(
            await client.call_tool(
                "ingest_text",
                {
                    "user_id": "alice",
                    "source": "notes/standup.md",
                    "text": "# Standup\n\nDaily at 9:15 in room Kepler.",
                },
            )
        )
        assert text_report["changed"] == [{"source": "notes/standup.md", "status": "added", "chunks": 1}]

        recalled = ok(
            await client.call_tool(
                "recall", {"detail": "full", "user_id": "alice", "query": "standup room", "scope": "knowledge"}
            )
        )
        assert recalled["memories"] == []
        top = recalled["knowledge"][0]
        assert top["tier"] == "knowledge" and top["citation"]["source"] == "notes/standup.md"
        assert top["citation"]["heading_path"] == ["Standup"] and "Kepler" in top["content"]
        assert (
            ok(await client.call_tool("recall", {"detail": "full", "user_id": "bob", "query": "standup room"}))[
                "knowledge"
            ]
            == []
        )

        resource = await client.read_resource("engram://users/alice/knowledge")
        content = resource.contents[0]
        assert isinstance(content, TextResourceContents)
        listed = {s["source"]: s for s in json.loads(content.text)}
        assert set(listed) == {*(str(p) for p in files.values()), "notes/standup.md"}
        assert listed["notes/standup.md"]["chunks"] == 1 and listed["notes/standup.md"]["ingested_at"]

        removed = ok(await client.call_tool("forget_source", {"user_id": "alice", "source": "notes/standup.md"}))
        assert removed == {"source": "notes/standup.md", "scope": "user", "chunks": 1}
        assert "no user knowledge source" in error(
            await client.call_tool("forget_source", {"user_id": "alice", "source": "notes/standup.md"})
        )
        gone = ok(
            await client.call_tool(
                "recall", {"detail": "full", "user_id": "alice", "query": "standup Kepler", "scope": "knowledge"}
            )
        )
        assert all(h["citation"]["source"] != "notes/standup.md" for h in gone["knowledge"])


async def test_global_knowledge_over_mcp_is_shared(client: Client) -> None:
    ok(
        await client.call_tool(
            "ingest_text",
            {"user_id": "admin", "scope": "global", "source": "policy", "text": "Badges must be worn at all times."},
        )
    )
    for user in ("alice", "bob"):
        hits = ok(await client.call_tool("recall", {"detail": "full", "user_id": user, "query": "badges worn"}))[
            "knowledge"
        ]
        assert hits[0]["citation"]["scope"] == "global"
    prompt = await client.get_prompt("layered_context", {"user_id": "alice", "message": "Do I need my badge?"})
    content = prompt.messages[0].content
    assert isinstance(content, TextContent)
    assert (
        "## Relevant knowledge" in content.text and "- [policy (policy, chunk 1/1)] Badges must be worn" in content.text
    )


def test_cli_ingest_lists_and_removes_sources(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from engram.cli import cli

    files = write_folder(tmp_path / "docs")
    (tmp_path / "docs" / "broken.pdf").write_bytes(b"%PDF-1.4 garbage")
    env = {"ENGRAM_DATA_DIR": str(tmp_path / "data"), "ENGRAM_EMBEDDING_MODEL": "hash"}

    def run(*args: str) -> Any:
        return CliRunner().invoke(cli, list(args), env=env)

    first = run("ingest", str(tmp_path / "docs"))
    assert first.exit_code == 1  # a file failed: reported, the rest ingested
    assert "failed   " in first.stderr and "broken.pdf" in first.stderr
    assert all("added" in first.stdout and str(p) in first.stdout for p in files.values())
    assert "5 files: 4 ingested, 0 unchanged" in first.stderr
    second = run("ingest", str(tmp_path / "docs"), "--exclude", "broken.*")
    assert second.exit_code == 0 and "4 files: 0 ingested, 4 unchanged" in second.stderr

    listed = run("sources", "--json")
    assert {s["source"] for s in json.loads(listed.stdout)} == {str(p) for p in files.values()}
    recalled = run("recall", "carol", "meal allowance on business trips", "--scope", "knowledge")
    assert recalled.exit_code == 0 and "expenses.html" in recalled.stdout.splitlines()[0]
    removed = run("forget-source", str(files["expenses"]))
    assert removed.exit_code == 0 and '"scope": "global"' in removed.stdout
    assert str(files["expenses"]) not in run("sources").stdout
    mine = run("ingest", str(files["wifi"]), "--user", "carol")
    assert mine.exit_code == 0
    assert "user" in run("sources", "--user", "carol").stdout and "user " not in run("sources").stdout


async def test_a_recall_with_no_knowledge_stored_searches_no_knowledge(
    memory: MemoryService, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _knowledge(memory).store
    searched: list[str] = []
    for name in ("vector_search", "keyword_search"):
        real = getattr(store, name)
        monkeypatch.setattr(store, name, lambda *a, _real=real, _name=name: searched.append(_name) or _real(*a))
    await memory.remember("alice", "the travel policy says economy class for short flights")
    assert (await memory.recall("alice", "travel policy")).memories
    assert searched == []  # an empty knowledge table is not searched at all

    await _knowledge(memory).ingest_text(None, "travel", "Book economy class for short flights.", DocumentFormat.TEXT)
    found = await memory.recall("alice", "travel policy economy")
    assert sorted(searched) == ["keyword_search", "vector_search"] and found.knowledge


async def test_a_sibling_folder_sharing_the_roots_name_as_prefix_is_outside(tmp_path: Path) -> None:
    # "/x/allowed-evil" starts with "/x/allowed" as a string, yet is not inside it: roots compare whole path parts.
    root, sibling = tmp_path / "allowed", tmp_path / "allowed-evil"
    write_folder(root)
    sibling.mkdir()
    (sibling / "secret.md").write_text("# Secret\n\nThe server's private notes.")
    (root / "to-sibling.md").symlink_to(sibling / "secret.md")
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash", knowledge_roots=[root], tools="all")
    async with Client(build_server(settings, embedder=HashEmbedder(), clock=stepping_clock)) as client:
        for path in (sibling, sibling / "secret.md", root / ".." / "allowed-evil" / "secret.md"):
            message = error(await client.call_tool("ingest_files", {"user_id": "alice", "paths": [str(path)]}))
            assert "outside the folders" in message, path
        report = ok(await client.call_tool("ingest_files", {"user_id": "alice", "paths": [str(root)]}))
        assert [Path(p["source"]).name for p in report["failed"]] == ["to-sibling.md"]  # the link leads outside
        found = ok(
            await client.call_tool(
                "recall", {"detail": "full", "user_id": "alice", "query": "private notes", "top_k": 50}
            )
        )
        assert all("private notes" not in hit["content"] for hit in found["knowledge"])
