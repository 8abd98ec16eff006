"""Session turns reach LanceDB in batches (#15): a burst of turns is one commit, a read moves what waits first, a
server killed after acknowledging a turn loses nothing, and another server on the directory sees waiting turns."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from mcp import Client, StdioServerParameters

from engram.config import Settings
from engram.core.models import Memory, Role
from engram.core.service import MemoryService
from engram.embeddings.hashing import HashEmbedder
from engram.runtime import open_memory
from engram.storage.flush_policy import FlushPolicy, FlushWindow
from engram.storage.indexed_long_term import IndexedLongTermStore
from engram.storage.journal import WriteJournal
from engram.storage.journaled import JournaledLongTermStore
from tests.helpers import TEST_NOW, ok, stepping_clock
from tests.test_crash import _server_pid, _stored_ids

pytestmark = pytest.mark.anyio

#: Flush bounds no test run reaches: only a read, a full batch or closing moves journalled writes.
NEVER = {"journal_quiet_seconds": 3600.0, "journal_max_wait_seconds": 3600.0}
CONVERSATION = [
    "We adopted a puppy called Biscuit last week.",
    "Oh lovely, what breed is Biscuit?",
    "A beagle, and he already chewed my violin case.",
    "Beagles are curious; keep the case up high.",
    "Good idea, I will put it on the wardrobe.",
    "Does he sleep through the night yet?",
    "Not yet, he howls at the neighbours' cat.",
    "A covered crate often calms them down.",
    "We ordered one, it arrives on Friday.",
    "Tell me how the first night in it goes.",
]


class ManualClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_of_writes_waits_for_a_pause_an_age_or_a_full_batch() -> None:
    window = FlushWindow(FlushPolicy(quiet_s=0.5, max_wait_s=10.0, batch_rows=5))
    assert not window.due(0.0) and window.wait_s(0.0) is None
    # Writes 0.3 s apart never pause for 0.5 s: nothing is due while they keep coming.
    for second in (0.0, 0.3, 0.6, 0.9):
        window.written(1, second)
        assert not window.due(second + 0.29)
    assert window.wait_s(1.0) == pytest.approx(0.4)
    assert window.due(1.4)  # the pause
    window.moved()
    assert not window.due(100.0) and window.wait_s(100.0) is None
    # A steady stream moves at the oldest write's age...
    steady = FlushWindow(FlushPolicy(quiet_s=0.5, max_wait_s=10.0, batch_rows=1000))
    for tenth in range(0, 120, 3):
        steady.written(1, tenth / 10)
        assert steady.due(tenth / 10) == (tenth / 10 >= 10.0)
    # ...and a full batch at once.
    full = FlushWindow(FlushPolicy(quiet_s=0.5, max_wait_s=10.0, batch_rows=5))
    full.written(4, 0.0)
    assert not full.due(0.0)
    full.written(1, 0.1)
    assert full.due(0.1)


def test_turns_written_while_a_conversation_goes_on_make_no_commit_until_a_read(tmp_path: Path) -> None:
    # The default policy on a clock the test moves: a turn every 0.3 s for 3 s (half a second after the first
    # one, the flusher used to commit).
    clock = ManualClock()
    table = IndexedLongTermStore(tmp_path / "lancedb", dimensions=3, model_id="fake", index_bytes=1 << 20)
    store = JournaledLongTermStore(table, WriteJournal(tmp_path / "lancedb" / "journal.sqlite"), clock=clock)
    try:
        commits = table.commits
        for i in range(10):
            clock.now = 0.3 * i
            turn = Memory(id=f"{i:032x}", user_id="alice", content=f"turn {i}", created_at=TEST_NOW, turn_index=i)
            assert store.add(turn, turn.content, np.full(3, 3**-0.5, dtype=np.float32))
        assert table.commits == commits
        # A read moves what waits, in one commit, and sees it.
        assert len(store.get("alice", [f"{i:032x}" for i in range(10)])) == 10
        assert table.commits == commits + 1
    finally:
        store.close()


@pytest.fixture
def memory(tmp_path: Path) -> Iterator[MemoryService]:
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash", **NEVER)  # type: ignore[arg-type]
    service = open_memory(settings, HashEmbedder(), stepping_clock)
    yield service
    service.close()


def _table_of(service: MemoryService) -> IndexedLongTermStore:
    table = service.long_term.inner.store  # type: ignore[attr-defined]
    assert isinstance(table, IndexedLongTermStore)
    return table


async def test_ten_session_turns_make_at_most_one_lancedb_write_between_recalls(memory: MemoryService) -> None:
    table = _table_of(memory)
    await memory.recall("ann", "anything")
    commits = table.commits
    for i, content in enumerate(CONVERSATION):
        await memory.remember("ann", content, session_id="s1", role=Role.USER if i % 2 == 0 else Role.ASSISTANT)
    assert table.commits == commits  # every turn is waiting in the journal
    # The recall right after the turns finds the last one (it moved them into the table first, in one commit).
    found = await memory.recall("ann", "when does the crate arrive", scope="memories")
    assert "We ordered one, it arrives on Friday." in [hit.memory.content for hit in found.memories]
    assert table.commits == commits + 1
    await memory.recall("ann", "what breed is the puppy", scope="memories")
    assert table.commits == commits + 1  # nothing new waited


def _server(data_dir: Path, **settings: str) -> StdioServerParameters:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    env |= {"ENGRAM_DATA_DIR": str(data_dir), "ENGRAM_EMBEDDING_MODEL": "hash", "ENGRAM_LOG_LEVEL": "WARNING"}
    env |= {f"ENGRAM_{name.upper()}": value for name, value in settings.items()}
    return StdioServerParameters(command=sys.executable, args=["-m", "engram", "serve"], env=env)


def _turn(i: int) -> dict[str, object]:
    return {"user_id": "ann", "content": CONVERSATION[i], "session_id": "s1", "role": ["user", "assistant"][i % 2]}


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the server's pid through /proc")
async def test_a_server_killed_after_acknowledging_turns_loses_none_of_them(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    never = {name: str(value) for name, value in NEVER.items()}
    async with Client(_server(data_dir, **never)) as client:
        ok(await client.call_tool("recall", {"user_id": "ann", "query": "anything"}))  # the table exists
        ids = [ok(await client.call_tool("remember", _turn(i)))["id"] for i in range(3)]
        assert not set(ids) & set(_stored_ids(data_dir))  # acknowledged from the journal alone
        os.kill(_server_pid(data_dir), signal.SIGKILL)
    async with Client(_server(data_dir)) as client:
        found = ok(await client.call_tool("recall", {"user_id": "ann", "query": "violin case", "detail": "full"}))
        assert "A beagle, and he already chewed my violin case." in [m["memory"]["content"] for m in found["memories"]]
    stored = _stored_ids(data_dir)
    assert set(ids) <= set(stored) and len(stored) == len(set(stored))  # each once


@pytest.mark.slow
async def test_another_server_on_the_directory_recalls_turns_still_waiting_in_the_journal(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    never = {name: str(value) for name, value in NEVER.items()}
    async with Client(_server(data_dir, **never)) as writer:
        ok(await writer.call_tool("recall", {"user_id": "ann", "query": "anything"}))
        for i in range(4):
            ok(await writer.call_tool("remember", _turn(i)))
        assert _stored_ids(data_dir) == []  # still waiting in the journal
        async with Client(_server(data_dir, **never)) as reader:
            found = ok(await reader.call_tool("recall", {"user_id": "ann", "query": "beagle", "detail": "full"}))
            contents = [m["memory"]["content"] for m in found["memories"]]
            assert "A beagle, and he already chewed my violin case." in contents
