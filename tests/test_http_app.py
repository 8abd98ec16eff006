"""The HTTP app in process (no port): public metrics, per-user series with a cap, and the health probe."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from engram.auth.tokens import TokenFile
from engram.config import Settings
from engram.server.http import build_http_app, transport_security
from engram.server.metrics import OTHER, PrometheusMetrics

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8765"


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[httpx2.AsyncClient, Starlette]]:
    built = build_http_app(settings, "streamable-http")
    async with (
        built.app.router.lifespan_context(built.app),
        httpx2.AsyncClient(transport=httpx2.ASGITransport(app=built.app), base_url=BASE) as http,
    ):
        state = built.lifecycle.current()
        assert state is not None
        await state.memory.get()  # the stores are open: wait for that, not poll for it
        assert (await http.get("/healthz")).status_code == 200
        yield http, built.app


def user_series(text: str) -> dict[str, float]:
    return {
        sample.labels["user"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "engram_user_recalls"
        for sample in family.samples
        if sample.name == "engram_user_recalls_total"
    }


async def test_public_metrics_with_capped_pseudonymous_user_series(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data", embedding_model="hash", metrics_public=True, metrics_per_user=True,
        metrics_max_users=2,
    )  # fmt: skip
    tokens = TokenFile(settings.token_file)
    secrets = {user: tokens.create(users=[user], scopes=["read"])[1] for user in ("ann", "bob", "cat")}
    async with running(settings) as (http, app):
        for user, secret in secrets.items():
            headers = {"Authorization": f"Bearer {secret}"}
            async with (
                httpx2.AsyncClient(
                    transport=httpx2.ASGITransport(app=app),
                    base_url=BASE,
                    headers=headers,
                ) as authed,
                Client(streamable_http_client(f"{BASE}/mcp", http_client=authed)) as client,
            ):
                result = await client.call_tool("recall", {"detail": "full", "query": "anything"})
                assert not result.is_error, user
        response = await http.get("/metrics")  # no token: the operator made it public
        assert response.status_code == 200
        series = user_series(response.text)
        assert len(series) == 3
        assert series.pop(OTHER) == 1
        assert all(label.startswith("u-") for label in series)
        for user in secrets:
            assert user not in response.text


async def test_healthz_skips_the_host_check_and_metrics_do_not(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash")
    async with running(settings) as (http, _):
        health = await http.get("/healthz", headers={"Host": "10.1.2.3:8765"})
        assert health.status_code == 200 and health.json()["stores_open"] is True
        assert (await http.get("/metrics", headers={"Host": "10.1.2.3:8765"})).status_code == 421
        assert (await http.get("/metrics")).status_code == 401


def test_metrics_user_cap_is_per_server() -> None:
    metrics = PrometheusMetrics(per_user=True, max_users=1)
    metrics.observe_write("u-aaaaaaaaaaaaaaaaaaaa", 1, 1)
    metrics.observe_write("u-bbbbbbbbbbbbbbbbbbbb", 1, 1)
    assert PrometheusMetrics(per_user=True, max_users=1)._user_label("u-cccccccccccccccccccc") != OTHER


def test_allowed_hosts_and_origins_are_explicit_on_every_bind(tmp_path: Path) -> None:
    wildcard = transport_security(Settings(data_dir=tmp_path, host="0.0.0.0", allowed_hosts=["memory.example"]))
    assert wildcard.enable_dns_rebinding_protection is True
    assert "0.0.0.0" not in " ".join(wildcard.allowed_hosts)
    assert {"memory.example", "memory.example:*", "127.0.0.1:*"} <= set(wildcard.allowed_hosts)
    lan = transport_security(Settings(data_dir=tmp_path, host="192.168.1.5"))
    assert "192.168.1.5:*" in lan.allowed_hosts
    assert all(origin.startswith("http://") for origin in lan.allowed_origins)
