"""Erasure that really erases: after forget_user, no byte of the user remains anywhere in the data directory."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import anyio
import diskcache
import lance
import pytest
from mcp import Client

from engram.config import Settings
from engram.core.errors import ErasureBlocked, ErasureIncomplete
from engram.core.filters import MemoryFilters
from engram.core.identity import Pseudonymizer
from engram.core.service import MemoryService
from engram.embeddings.hashing import HashEmbedder
from engram.runtime import open_memory, user_id_key
from engram.server.app import build_server
from engram.storage.session_disk import PlainJSONDisk
from tests.helpers import ok, stepping_clock

pytestmark = pytest.mark.anyio

USER_A = "patient.a-7731"
MARKER = "Quuxtronic"  # a made-up word: any trace of it, raw or as an index token, is A's
EMAIL = "a.patient@example.net"
CARD = "4539 1488 0343 6467"
QUERY = "which Quuxtronic dose did the cardiologist prescribe"


def _decoded_texts(settings: Settings) -> str:
    """Everything the stores hold, decoded: every Lance row of every column, every session-cache key and value."""
    parts: list[str] = []
    table = lance.dataset(str(settings.long_term_dir / "memories.lance")).to_table()
    for column in table.column_names:
        if column != "vector":
            parts += [str(v) for v in table.column(column).to_pylist()]
    with diskcache.Cache(str(settings.session_cache_dir), disk=PlainJSONDisk) as cache:
        for key in cache.iterkeys():
            parts += [str(key), json.dumps(cache.get(key))]
    return "\n".join(parts)


def _raw_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


async def test_forget_user_leaves_no_trace_and_other_users_keep_working(settings: Settings) -> None:
    server = build_server(settings, embedder=HashEmbedder(), clock=stepping_clock)
    async with Client(server, raise_exceptions=True) as client:
        for i in range(12):
            content = f"{MARKER} dose {i}: reach me at {EMAIL}, card {CARD}"
            ok(await client.call_tool("remember", {"user_id": USER_A, "content": content, "session_id": "s1"}))
        for i in range(30):
            content = f"bob's garden journal entry {i} about tomatoes and basil"
            ok(await client.call_tool("remember", {"user_id": "bob", "content": content, "session_id": "g"}))
        ok(await client.call_tool("summarize_session", {"user_id": USER_A, "session_id": "s1", "keep_recent": 2}))
        ok(
            await client.call_tool("recall", {"detail": "full", "user_id": USER_A, "query": QUERY})
        )  # queries are A's data too

        pseudonym = Pseudonymizer(user_id_key(settings))(USER_A)
        decoded = _decoded_texts(settings)
        # Redacted in every stored form before erasure.
        assert EMAIL not in decoded and CARD not in decoded and "[EMAIL]" in decoded
        assert EMAIL.encode() not in _raw_bytes(settings.data_dir)

        receipt = ok(await client.call_tool("forget_user", {"user_id": USER_A, "confirm": True}))
        assert receipt["long_term"] == 13 and receipt["working"] == 1 and receipt["short_term"] == 1
        assert "no row" in receipt["verification"]

        raw = _raw_bytes(settings.data_dir).lower()
        decoded = _decoded_texts(settings).lower()
        query_hash = hashlib.sha256(QUERY.encode()).hexdigest()
        for trace in (MARKER.lower(), "quuxtron", USER_A.lower(), pseudonym.lower(), QUERY.lower(), query_hash):
            assert trace.encode() not in raw, f"{trace!r} left in a file"
            assert trace not in decoded, f"{trace!r} left in the stores"

        everything = {"detail": "full", "user_id": "bob", "query": "garden journal tomatoes", "top_k": 50}
        by_meaning = ok(await client.call_tool("recall", everything))
        assert len(by_meaning["memories"]) == 30  # all of bob's memories survive
        # The rebuilt keyword index still finds "17": in entry 17, and in entry 18, which is indexed with the turn it
        # replies to. The two tie on keywords, so which comes first is left to the hash embedder's meaningless
        # similarity, and only the keyword ranks are checked.
        by_keyword = ok(
            await client.call_tool("recall", {"detail": "full", "user_id": "bob", "query": "entry 17", "top_k": 50})
        )
        top = {
            h["memory"]["content"].split()[4] for h in by_keyword["memories"] if h["scores"]["keyword_rank"] in (1, 2)
        }
        assert top == {"17", "18"}


async def test_a_tagged_version_blocks_erasure_loudly(service: MemoryService) -> None:
    await service.remember("alice", "tagged memory")
    table = service.long_term.inner.store._table  # type: ignore[attr-defined]
    table.tags.create("backup", table.version)
    with pytest.raises(ErasureBlocked, match="backup"):
        await service.forget_user("alice", confirm=True)
    assert service.long_term.count() == 1  # nothing was erased


async def test_forget_memory_and_retention_erase_physically_too(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, embedding_model="hash")
    service = open_memory(settings, HashEmbedder(), clock=stepping_clock)
    try:
        gone = await service.remember("alice", f"{MARKER} single memory")
        await service.remember("alice", "another memory")
        await service.forget_memory("alice", gone.id)
        assert b"quuxtron" not in _raw_bytes(settings.long_term_dir).lower()
        assert MARKER.lower() not in _decoded_texts(settings).lower()
    finally:
        service.close()


def test_readers_of_another_server_keep_working_during_erasure(settings: Settings) -> None:
    # Two stores on one directory stand for two server processes: separate connections, no shared locks.
    writer, reader = (
        open_memory(settings, HashEmbedder(), clock=stepping_clock),
        open_memory(settings, HashEmbedder(), clock=stepping_clock),
    )
    errors: list[BaseException] = []
    done = threading.Event()
    try:
        for user in range(6):
            for i in range(15):
                anyio_run(writer.remember(f"user{user}", f"note {i} of user {user} about {MARKER}"))
        bob = reader.user_key("user5")
        vector = reader.embedder.embed(["note about"])[0]

        def read_continuously() -> None:
            while not done.is_set():
                try:
                    assert reader.long_term.vector_search(bob, vector, MemoryFilters(), 5)
                    assert reader.long_term.keyword_search(bob, "note", MemoryFilters(), 5)
                except BaseException as exc:
                    errors.append(exc)
                    return

        thread = threading.Thread(target=read_continuously)
        thread.start()
        for user in range(5):
            anyio_run(writer.forget_user(f"user{user}", confirm=True))
        done.set()
        thread.join()
        assert errors == []
        assert len(reader.long_term.vector_search(bob, vector, MemoryFilters(), 50)) == 15
    finally:
        done.set()
        writer.close()
        reader.close()


def anyio_run(coroutine):  # type: ignore[no-untyped-def]
    """Run one coroutine to completion from synchronous test code."""

    async def runner():  # type: ignore[no-untyped-def]
        return await coroutine

    return anyio.run(runner)


async def test_forget_user_succeeds_for_a_user_with_nothing_left_in_long_term_memory(service: MemoryService) -> None:
    # A delete that matches nothing still commits a version carrying its filter (the user's key): erasure must
    # skip it, and still remove older versions, or the leftover check fails the call.
    await service.remember("alice", "alice stays")
    carol = await service.remember("carol", "carol's only memory", session_id="s1")
    await service.forget_memory("carol", carol.id)
    await service.remember("alice", "alice writes again")
    receipt = await service.forget_user("carol", confirm=True)
    assert receipt.erased and receipt.long_term == 0 and receipt.working == 1
    assert (await service.forget_user("never-seen", confirm=True)).erased
    assert {m.content for m in (await service.list_memories("alice")).memories} == {"alice stays", "alice writes again"}


def test_an_earlier_versions_query_cache_is_removed_when_memory_opens(settings: Settings) -> None:
    # Earlier versions kept query vectors on disk under a plain SHA-256 of the query: a guessed query could be
    # confirmed from the file, and erasure did not reach it.
    legacy = settings.data_dir / "cache" / "queries"
    with diskcache.Cache(str(legacy)) as cache:
        cache.set(f"hash-embedder:{hashlib.sha256(QUERY.encode()).hexdigest()}", b"\0" * 16)
    service = open_memory(settings, HashEmbedder())
    try:
        anyio_run(service.recall(USER_A, QUERY))
    finally:
        service.close()
    assert not legacy.exists() and not (settings.data_dir / "cache").exists()
    assert hashlib.sha256(QUERY.encode()).hexdigest().encode() not in _raw_bytes(settings.data_dir)


def test_a_commit_of_another_server_after_an_erasure_is_no_trace_of_the_user(settings: Settings) -> None:
    eraser, writer = open_memory(settings, HashEmbedder()), open_memory(settings, HashEmbedder())
    try:
        anyio_run(eraser.remember(USER_A, f"{MARKER} note"))
        key = eraser.user_key(USER_A)
        eraser.long_term.delete_user(key)
        # Another server writes between the erasure and its check: a newer table version, none of it the user's.
        anyio_run(writer.remember("bob", "bob writes right after the erasure"))
        writer.long_term.inner.catch_up()
        assert eraser.long_term.traces_of(key) == []
    finally:
        eraser.close()
        writer.close()


def test_forget_user_succeeds_while_other_servers_keep_writing(settings: Settings) -> None:
    # Separate service instances on one directory stand for separate server processes (own connections, locks,
    # journal flushers); each writer thread writes without pause until every erasure has returned.
    eraser = open_memory(settings, HashEmbedder())
    writers = [open_memory(settings, HashEmbedder()) for _ in range(3)]
    erased_users = [f"{USER_A}-{n}" for n in range(3)]
    stop = threading.Event()
    running = [threading.Event() for _ in writers]
    written = [0 for _ in writers]
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            while not stop.is_set():
                content = f"note {written[n]} of writer {n}"
                anyio_run(writers[n].remember(f"writer{n}", content, session_id="s"))
                written[n] += 1
                running[n].set()
        except BaseException as exc:
            errors.append(exc)
            running[n].set()

    try:
        for user in erased_users:
            for i in range(5):
                anyio_run(eraser.remember(user, f"{MARKER} {i} of {user}", session_id="s1"))
        threads = [threading.Thread(target=write, args=(n,)) for n in range(len(writers))]
        for thread in threads:
            thread.start()
        for event in running:
            event.wait()
        for user in erased_users:
            before = sum(written)
            receipt = anyio_run(eraser.forget_user(user, confirm=True))
            assert receipt.erased and receipt.long_term == 5 and receipt.working == 1
            assert errors == []
            assert sum(written) > before  # the others did write while this erasure ran
        stop.set()
        for thread in threads:
            thread.join()
        assert errors == []
        for n, writer in enumerate(writers):
            assert len(anyio_run(writer.list_memories(f"writer{n}", limit=100)).memories) == min(written[n], 100)
        for user in erased_users:
            key = eraser.user_key(user)
            assert eraser.long_term.traces_of(key) == [] and eraser.sessions.traces_of(key) == []
    finally:
        stop.set()
        for service in [eraser, *writers]:
            service.close()


async def test_a_trace_erasure_cannot_remove_is_named_without_the_users_content(
    service: MemoryService, settings: Settings
) -> None:
    await service.remember(USER_A, f"{MARKER} dose 1")
    # A file that keeps the user's key and content where erasure does not rewrite (a stray copy, say).
    stray = settings.long_term_dir / "stray-copy.bin"
    stray.write_bytes(f"{service.user_key(USER_A)} {MARKER} dose 1".encode())
    with pytest.raises(ErasureIncomplete) as failure:
        await service.forget_user(USER_A, confirm=True)
    message = str(failure.value)
    assert "long-term" in message and "stray-copy.bin" in message
    assert MARKER not in message and USER_A not in message and service.user_key(USER_A) not in message
