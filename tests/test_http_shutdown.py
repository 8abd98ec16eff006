"""Graceful shutdown over HTTP with the real model: SIGTERM lets an in-flight call finish, then the stores close.

The bundled all-MiniLM-L6-v2 takes several seconds to load on this machine, and a `remember` sent right after
start waits for it: that call is certainly in flight when SIGTERM arrives a moment later.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, MCPError
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import ok
from tests.http_server import connect, issue_token, spawn

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

CALL_TIMEOUT_S = 150


def in_flight(base: str, scraper: str) -> float:
    """The server's own count of MCP requests it is handling."""
    text = httpx2.get(f"{base}/metrics", headers={"Authorization": f"Bearer {scraper}"}).text
    for family in text_string_to_metric_families(text):
        if family.name == "engram_requests_in_flight":
            return family.samples[0].value
    raise AssertionError("no engram_requests_in_flight in /metrics")


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_sigterm_lets_the_in_flight_call_finish_and_closes_the_stores(tmp_path: Path, transport: str) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    secret = issue_token(data_dir, ["pia"], ["read", "write"])
    scraper = issue_token(data_dir, [], ["metrics"])
    # A generous grace period: on a loaded machine the model alone can take half a minute to load.
    grace = {"ENGRAM_SHUTDOWN_GRACE_SECONDS": str(CALL_TIMEOUT_S)}
    server = spawn(data_dir, transport, model="all-MiniLM-L6-v2", wait_ready=False, env=grace)
    outcome: dict[str, Any] = {}

    async def remember(client: Client) -> None:
        outcome["result"] = await client.call_tool("remember", {"content": "Pia's flight lands at 6 pm."})
        outcome["done_at"] = time.monotonic()

    try:
        try:
            async with connect(server, secret) as client:
                assert httpx2.get(f"{server.base}/healthz").json()["status"] == "loading"
                # The client checks a result against the tool's output schema, fetching tools/list if it has not
                # yet: done here, so that nothing but the call itself needs the server once it is stopping.
                await client.list_tools()
                with anyio.fail_after(CALL_TIMEOUT_S):
                    async with anyio.create_task_group() as tasks:
                        tasks.start_soon(remember, client)
                        while in_flight(server.base, scraper) < 1:  # the server is handling the call
                            await anyio.sleep(0.05)
                        assert "result" not in outcome
                        health = httpx2.get(f"{server.base}/healthz").json()
                        assert health["model_loaded"] is False, "the model loaded too fast to test an in-flight call"
                        server.process.terminate()  # SIGTERM
                        outcome["signalled_at"] = time.monotonic()
        except* (httpx2.TransportError, MCPError) as closing:
            # Closing the client after the server went away may fail; the call itself must not have.
            assert "result" in outcome, f"the in-flight call failed: {closing.exceptions!r}\n{server.log()}"
        assert ok(outcome["result"])["created"] is True
        assert outcome["done_at"] > outcome["signalled_at"]
        exit_code = await anyio.to_thread.run_sync(lambda: server.process.wait(CALL_TIMEOUT_S))
    finally:
        if server.process.poll() is None:
            server.process.kill()
    log = server.log()
    assert exit_code == 0, log
    assert "stores closed" in log
    assert log.index("Shutting down") < log.index("stores closed")
    # New connections are refused once it has stopped.
    with pytest.raises(httpx2.TransportError):
        httpx2.get(f"{server.base}/healthz")
