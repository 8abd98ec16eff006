"""Issue #16's acceptance on loopback: three replicas on one Redis and one radosgw bucket behind haproxy.

1. Eight authenticated clients with mixed calls: none fails, each acknowledged memory is stored exactly once, and a
   memory acknowledged by one replica is recalled through another right after (read-your-writes across replicas).
2. One replica SIGKILLed ten times under that load (restarted each time): nothing acknowledged is lost or doubled,
   and the calls the dead replica would have taken go to the others.
3. forget_user through one replica: no object in the bucket and no Redis key or value holds the user afterwards.

Bounded for a two-core machine: correctness, not throughput (benchmarks/distributed.py measures that).
"""

from __future__ import annotations

import signal
import subprocess
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import lance
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

from engram.config import aws_storage_options
from engram.core.identity import Pseudonymizer
from engram.storage.location import ObjectStore, s3_client
from tests.engines import SCRIPTS, RedisEngine, ensure_installed, redis_contents
from tests.http_server import RunningServer, free_port, issue_token, spawn

pytestmark = [pytest.mark.distributed, pytest.mark.slow, pytest.mark.anyio]

CLIENTS = 8
ROUNDS = 4  # per client in the first phase
KILLS = 10
KEY = "acceptance-key-of-sixteen-chars"
#: Transport failures a client retries (any client behind a load balancer does): the replica died under the call.
ATTEMPTS = 4


@dataclass
class Tally:
    """What the clients saw: acknowledged ids per user, failed calls, and how many calls needed a retry."""

    acknowledged: dict[str, set[str]] = field(default_factory=dict)
    forgotten: dict[str, set[str]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    retried: int = 0
    calls: int = 0


@dataclass
class Cluster:
    """The running replicas (restartable), haproxy in front of them, and what each client needs."""

    replicas: list[RunningServer]
    ports: list[int]
    balancer: str
    env: dict[str, str]
    tokens: dict[str, str]
    admin: str
    store_uri: str
    root: Path

    def restart(self, index: int) -> None:
        """Start replica `index` again on its port (haproxy sends it traffic once its /healthz says 200)."""
        self.replicas[index] = spawn(
            self.root / f"replica-{index}", "streamable-http", env=self.env, port=self.ports[index]
        )


def _text(result: CallToolResult) -> str:
    block = result.content[0] if result.content else None
    return block.text if isinstance(block, TextContent) else ""


@asynccontextmanager
async def _client(url: str, token: str) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(120.0)) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client,
    ):
        yield client


async def _call(tally: Tally, url: str, token: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """One tool call on a fresh connection, retried on transport failures only; a tool error is a failure."""
    tally.calls += 1
    last = ""
    for attempt in range(ATTEMPTS):
        try:
            async with _client(url, token) as client:
                result = await client.call_tool(tool, arguments)
        except Exception as exc:  # the replica died under the call: the client tries again
            while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
                exc = exc.exceptions[0]
            last = f"{type(exc).__name__}: {exc}"
            tally.retried += 1
            continue
        if result.is_error:
            if attempt and tool == "summarize_session" and "nothing" in _text(result).lower():
                return {}  # the first attempt did it before its replica died
            tally.failures.append(f"{tool}: {_text(result)}")
            return {}
        assert result.structured_content is not None
        return result.structured_content
    tally.failures.append(f"{tool}: {ATTEMPTS} attempts failed, last {last}")
    return {}


async def _client_rounds(cluster: Cluster, user: str, tally: Tally, rounds: int, stop: threading.Event | None) -> None:
    """Mixed calls of one client: remember, read-your-writes through another replica, summarize, forget."""
    token = cluster.tokens[user]
    acked = tally.acknowledged.setdefault(user, set())
    forgotten = tally.forgotten.setdefault(user, set())
    done = 0
    while done < rounds or (stop is not None and not stop.is_set() and done < 200):
        # Distinct per phase: the same text again would be the same content-addressed memory (one forgotten before).
        phase = "a" if stop is None else "b"
        marker = f"{user} fact {phase}{done} zq{phase}{done}x"
        if stop is None:
            # Read-your-writes: written through one replica, recalled at once through the next one.
            writer, reader = cluster.replicas[done % 3].base, cluster.replicas[(done + 1) % 3].base
        else:
            writer = reader = cluster.balancer
        written = await _call(tally, writer, token, "remember", {"content": marker, "session_id": f"s-{user}"})
        if written:
            acked.add(written["id"])
            found = await _call(tally, reader, token, "recall", {"query": marker, "detail": "full", "top_k": 20})
            ids = [hit["memory"]["id"] for hit in found.get("memories", [])]
            if written["id"] not in ids:
                tally.failures.append(f"read-your-writes: {marker} not recalled through {reader}")
        if done % 2 == 1:
            await _call(
                tally, cluster.balancer, token, "summarize_session", {"session_id": f"s-{user}", "keep_recent": 1}
            )
        if done % 4 == 3 and acked - forgotten:
            victim = sorted(acked - forgotten)[0]
            if await _call(tally, cluster.balancer, token, "forget_memory", {"memory_id": victim}):
                forgotten.add(victim)
        done += 1


def _stored_ids(uri: str) -> Counter[str]:
    dataset = lance.dataset(f"{uri}/lancedb/memories.lance", storage_options=aws_storage_options())
    return Counter(str(i) for i in dataset.to_table(columns=["id"]).column("id").to_pylist())


def _check_stored(cluster: Cluster, tally: Tally) -> None:
    stored = _stored_ids(cluster.store_uri)
    doubled = {memory_id: n for memory_id, n in stored.items() if n > 1}
    assert not doubled, f"stored more than once: {doubled}"
    for user, acked in tally.acknowledged.items():
        missing = acked - tally.forgotten[user] - set(stored)
        assert not missing, f"{len(missing)} acknowledged memories of {user} lost"
        assert not tally.forgotten[user] & set(stored), f"forgotten memories of {user} still stored"


@pytest.fixture
def cluster(tmp_path: Path, s3_bucket: str, redis_engine: RedisEngine) -> Iterator[Cluster]:
    ensure_installed({"haproxy": "haproxy"})
    import redis

    with redis.Redis.from_url(redis_engine.url) as raw:
        raw.flushdb()
    shared = tmp_path / "shared"  # the tokens file on storage every replica mounts
    shared.mkdir()
    users = [f"user{n}" for n in range(CLIENTS)]
    tokens = {user: issue_token(shared, [user], ["read", "write"]) for user in users}
    admin = issue_token(shared, [], ["admin"])
    env = {
        "ENGRAM_STORAGE_URI": s3_bucket,
        "ENGRAM_SESSIONS_URL": redis_engine.url,
        "ENGRAM_USER_ID_KEY": KEY,
        "ENGRAM_TOKENS_FILE": str(shared / "tokens.json"),
        "ENGRAM_ENRICHMENT": "false",
        "ENGRAM_TOOLS": "graph",  # the everyday tools and the graph tools
    }
    ports = [free_port() for _ in range(3)]
    replicas = [spawn(tmp_path / f"replica-{i}", "streamable-http", env=env, port=ports[i]) for i in range(3)]
    lb_port = free_port()
    lb_dir = tmp_path / "haproxy"
    started = subprocess.run(
        [str(SCRIPTS / "haproxy-engine.sh"), "start", str(lb_dir), str(lb_port), *map(str, ports)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert started.returncode == 0, started.stderr
    built = Cluster(replicas, ports, f"http://127.0.0.1:{lb_port}", env, tokens, admin, s3_bucket, tmp_path)
    yield built
    subprocess.run([str(SCRIPTS / "haproxy-engine.sh"), "stop", str(lb_dir)], check=False)
    for replica in built.replicas:
        replica.stop(signal.SIGKILL)


async def test_three_replicas_behind_haproxy_survive_kills_and_erase_everywhere(
    cluster: Cluster, redis_engine: RedisEngine
) -> None:
    # 1. Mixed load, read-your-writes across replicas.
    tally = Tally()
    async with anyio.create_task_group() as clients:
        for user in cluster.tokens:
            clients.start_soon(_client_rounds, cluster, user, tally, ROUNDS, None)
    assert tally.failures == [], tally.failures[:5]
    _check_stored(cluster, tally)

    # 2. The same load through haproxy while one replica at a time is SIGKILLed and restarted, ten times.
    stop = threading.Event()

    def kill_and_restart() -> None:
        try:
            for n in range(KILLS):
                index = n % 3
                cluster.replicas[index].stop(signal.SIGKILL)
                cluster.restart(index)
        finally:
            stop.set()

    async with anyio.create_task_group() as load:
        for user in cluster.tokens:
            load.start_soon(_client_rounds, cluster, user, tally, 2, stop)
        await anyio.to_thread.run_sync(kill_and_restart)
    assert tally.failures == [], tally.failures[:5]
    _check_stored(cluster, tally)

    # The graph is shared like the rest: what one replica adds, another finds at once (and step 3 erases it).
    for user in ("user0", "user1"):
        entity = {"name": f"{user} garden", "entityType": "place", "observations": [f"{user} fact: roses by the gate"]}
        await _call(tally, cluster.replicas[0].base, cluster.tokens[user], "create_entities", {"entities": [entity]})
        found = await _call(tally, cluster.replicas[2].base, cluster.tokens[user], "search_nodes", {"query": "garden"})
        assert [node["name"] for node in found.get("entities", [])] == [f"{user} garden"], (found, tally.failures)

    # 3. forget_user through one replica: nothing of the user in any object or any Redis key or value.
    gone = "user0"
    receipt = await _call(
        tally, cluster.replicas[1].base, cluster.admin, "forget_user", {"user_id": gone, "confirm": True}
    )
    assert receipt and tally.failures == [], tally.failures
    pseudonym = Pseudonymizer(KEY.encode())(gone)
    needles = [f"{gone} fact", gone, pseudonym]
    store, client = ObjectStore(cluster.store_uri), s3_client()
    for key, _ in store.objects():
        body = client.get_object(Bucket=store.bucket, Key=key)["Body"].read()
        for needle in needles:
            assert needle.encode() not in body, f"{needle!r} left in s3 object {key}"
    remaining = _stored_ids(cluster.store_uri)
    assert remaining and not tally.acknowledged[gone] & set(remaining)
    for key, value in redis_contents(redis_engine.url).items():
        for needle in needles:
            assert needle not in key and needle not in value, f"{needle!r} left in Redis key {key}"
