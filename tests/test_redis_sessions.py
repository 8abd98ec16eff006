"""Working and short-term memory in a real Redis: native expiry, replicas sharing sessions, erasure down to the AOF."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from engram.config import Settings
from engram.core.models import Role, Turn
from engram.storage.redis_sessions import KEY_PREFIX, RedisSessionStore
from tests.engines import RedisEngine
from tests.helpers import connected, ok

pytestmark = pytest.mark.distributed

T0 = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)
MARKER = "Zorblatt"


def _store(engine: RedisEngine, *, rewrite: bool = True, working_turns: int = 3) -> RedisSessionStore:
    return RedisSessionStore.from_url(
        engine.url,
        working_turns=working_turns,
        working_ttl=timedelta(hours=2),
        short_term_turns=50,
        short_term_ttl=timedelta(days=7),
        rewrite_after_erasure=rewrite,
    )


@pytest.fixture
def client(redis_engine: RedisEngine) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_engine.url, decode_responses=True) as connection:
        connection.flushdb()
        yield connection


def _turn(n: int, content: str | None = None) -> Turn:
    role = Role.USER if n % 2 == 0 else Role.ASSISTANT
    return Turn(memory_id=f"m{n}", seq=0, role=role, content=content or f"turn {n}", created_at=T0)


def test_each_tier_expires_natively_with_its_own_ttl(redis_engine: RedisEngine, client: redis.Redis) -> None:
    store = _store(redis_engine)
    store.append_turn("k-a", "s", _turn(0), T0)
    hour = 3600 * 1000
    assert 1.9 * hour < client.pttl(f"{KEY_PREFIX}wm|k-a|s") <= 2 * hour
    assert 6.9 * 24 * hour < client.pttl(f"{KEY_PREFIX}st|k-a|s") <= 7 * 24 * hour
    assert client.pttl(f"{KEY_PREFIX}tt|k-a|s") > 6.9 * 24 * hour  # turns live as long as the longer tier
    client.delete(f"{KEY_PREFIX}wm|k-a|s")  # what Redis does when the working TTL runs out
    assert store.working("k-a", "s") == [] and [t.memory_id for t in store.transcript("k-a", "s") or []] == ["m0"]
    store.close()


def test_two_replicas_appending_to_one_session_lose_no_turn(redis_engine: RedisEngine, client: redis.Redis) -> None:
    replicas = [_store(redis_engine), _store(redis_engine)]
    start = threading.Barrier(2)

    def write(replica: RedisSessionStore, offset: int) -> None:
        start.wait()
        for n in range(offset, 40, 2):
            replica.append_turn("k-a", "s", _turn(n), T0)

    threads = [threading.Thread(target=write, args=(replicas[i], i)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    transcript = replicas[0].transcript("k-a", "s") or []
    assert sorted(t.memory_id for t in transcript) == sorted(f"m{n}" for n in range(40))  # no turn lost
    assert [t.seq for t in transcript] == list(range(40))  # every position given out once
    assert replicas[1].sessions("k-a")[0].turns == 40
    for replica in replicas:
        replica.close()


def _aof_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in directory.rglob("*") if p.is_file() and p.suffix != ".log")


def _wait_for_rewrite(client: redis.Redis) -> None:
    """Until Redis reports no AOF rewrite running or scheduled (synchronises on the server's state, not a time)."""
    while True:
        info = client.info("persistence")
        if not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]:
            return
        threading.Event().wait(0.05)


def test_forget_user_deletes_the_keys_and_rewrites_the_aof(redis_engine: RedisEngine, client: redis.Redis) -> None:
    store = _store(redis_engine)
    for n in range(4):
        store.append_turn("k-forgotten", f"s{n % 2}", _turn(n, f"{MARKER} note {n}"), T0)
    store.append_turn("k-kept", "s", _turn(0, "kept note"), T0)
    _wait_for_rewrite(client)
    assert MARKER.encode() in _aof_bytes(redis_engine.directory)
    assert store.forget_user("k-forgotten") == (2, 2)
    _wait_for_rewrite(client)
    assert store.traces_of("k-forgotten") == []
    assert not [k for k in client.scan_iter(match="*") if "k-forgotten" in k]
    files = _aof_bytes(redis_engine.directory)
    assert MARKER.encode() not in files and b"k-forgotten" not in files
    assert b"kept note" in files
    store.close()


def test_without_the_rewrite_the_aof_keeps_the_erased_bytes(redis_engine: RedisEngine, client: redis.Redis) -> None:
    """Why forget_user rewrites: a deleted key's value stays in the append-only file until a rewrite."""
    store = _store(redis_engine, rewrite=False)
    _wait_for_rewrite(client)
    store.append_turn("k-forgotten", "s", _turn(0, f"{MARKER} unrewritten"), T0)
    store.forget_user("k-forgotten")
    assert store.traces_of("k-forgotten") == []
    assert f"{MARKER} unrewritten".encode() in _aof_bytes(redis_engine.directory)
    assert store.rewrite_persistence() == ["BGREWRITEAOF"]
    _wait_for_rewrite(client)
    assert MARKER.encode() not in _aof_bytes(redis_engine.directory)
    store.close()


@pytest.mark.anyio
async def test_the_server_keeps_sessions_in_redis_when_told_to(
    tmp_path: Path, redis_engine: RedisEngine, client: redis.Redis
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        embedding_model="hash",
        sessions_url=redis_engine.url,
        user_id_key="a-test-key-of-sixteen-chars-or-more",
    )
    async with connected(settings) as mcp:
        for n in range(3):
            ok(await mcp.call_tool("remember", {"user_id": "ann", "content": f"note {n}", "session_id": "s"}))
        hits = ok(await mcp.call_tool("recall", {"user_id": "ann", "query": "note 2", "session_id": "s"}))
        assert hits
    assert any(key.startswith(f"{KEY_PREFIX}wm|") for key in client.scan_iter(match="*"))
    assert not (settings.data_dir / "sessions").exists()  # nothing of the sessions on this machine


def test_distributed_settings_without_a_shared_user_key_are_refused(tmp_path: Path, redis_engine: RedisEngine) -> None:
    from engram.core.errors import InvalidInput
    from engram.embeddings.hashing import HashEmbedder
    from engram.runtime import open_memory

    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash", sessions_url=redis_engine.url)
    with pytest.raises(InvalidInput, match="ENGRAM_USER_ID_KEY"):
        open_memory(settings, HashEmbedder())
