"""Prometheus metrics of the HTTP server: the core's MemoryMetrics, tool calls by tool, and tier gauges at scrape."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from engram import __version__
from engram.core.loader import BackgroundService

#: Latency buckets (seconds) for recall tiers, embedding and tool calls: 1 ms to 10 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Ranking scores are not bounded by 1 (the neighbour boost adds to them).
SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 2.0)
SIMILARITY_BUCKETS = (-0.2, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
#: Label of every user past the cap of per-user series, and of tool names the server does not have.
OTHER = "other"
UNKNOWN_TOOL = "unknown"
#: Characters of the pseudonym kept in a per-user label: short, still unique among a few thousand users.
USER_LABEL_CHARS = 14
CONTENT_TYPE = CONTENT_TYPE_LATEST


class PrometheusMetrics:
    """Engram's metrics in their own registry (so several servers in one process never collide)."""

    def __init__(self, *, per_user: bool = False, max_users: int = 100) -> None:
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        self._per_user = per_user
        self._max_users = max_users
        self._users: set[str] = set()
        self._users_lock = threading.Lock()

        self.tool_calls = Counter("engram_tool_calls", "MCP tool calls, by tool.", ["tool"], registry=registry)
        self.tool_errors = Counter(
            "engram_tool_errors", "MCP tool calls that ended in an error, by tool.", ["tool"], registry=registry
        )
        self.tool_seconds = Histogram(
            "engram_tool_call_seconds", "Duration of MCP tool calls, by tool.", ["tool"], registry=registry,
            buckets=LATENCY_BUCKETS,
        )  # fmt: skip
        self.recall_seconds = Histogram(
            "engram_recall_seconds", "Time recall spent on each memory tier.", ["tier"], registry=registry,
            buckets=LATENCY_BUCKETS,
        )  # fmt: skip
        self.embedding_seconds = Histogram(
            "engram_embedding_seconds", "Duration of one embedding-model call.", registry=registry,
            buckets=LATENCY_BUCKETS,
        )  # fmt: skip
        self.embedded_texts = Counter("engram_embedded_texts", "Texts embedded by the model.", registry=registry)
        self.result_scores = Histogram(
            "engram_recall_result_score", "Ranking score of each memory recall returned.", registry=registry,
            buckets=SCORE_BUCKETS,
        )  # fmt: skip
        self.result_similarity = Histogram(
            "engram_recall_result_similarity", "Cosine similarity of each memory recall returned.",
            registry=registry, buckets=SIMILARITY_BUCKETS,
        )  # fmt: skip
        self.dropped = Counter(
            "engram_recall_dropped", "Recall results dropped by the min_score threshold.", registry=registry
        )
        self.memories_written = Counter(
            "engram_memories_written", "Memories written by remember calls (repeats included).", registry=registry
        )
        self.memories_created = Counter(
            "engram_memories_created", "Memories new to long-term memory.", registry=registry
        )
        self.tier_items = Gauge("engram_tier_items", "Items held per memory tier.", ["tier"], registry=registry)
        self.tier_bytes = Gauge("engram_tier_bytes", "Bytes on disk per memory tier.", ["tier"], registry=registry)
        self.in_flight = Gauge("engram_requests_in_flight", "MCP requests being handled now.", registry=registry)
        self.ready = Gauge("engram_ready", "1 once the model is loaded and the stores are open.", registry=registry)
        self.info = Gauge(
            "engram_build_info", "Engram's version and embedding model.", ["version", "embedding_model"],
            registry=registry,
        )  # fmt: skip
        self.http_rejected = Counter(
            "engram_http_rejected", "HTTP requests refused before reaching MCP, by reason.", ["reason"],
            registry=registry,
        )  # fmt: skip
        self.user_recalls: Counter | None = None
        self.user_writes: Counter | None = None
        if per_user:
            self.user_recalls = Counter(
                "engram_user_recalls", "Recalls per user (pseudonymous label).", ["user"], registry=registry
            )
            self.user_writes = Counter(
                "engram_user_memories_written", "Memories written per user (pseudonymous label).", ["user"],
                registry=registry,
            )  # fmt: skip

    def _user_label(self, user_key: str) -> str:
        """The pseudonym's label, or `other` once the cap on per-user series is reached."""
        label = user_key[:USER_LABEL_CHARS]
        with self._users_lock:
            if label in self._users:
                return label
            if len(self._users) >= self._max_users:
                return OTHER
            self._users.add(label)
            return label

    # The core's MemoryMetrics port.

    def observe_recall_tier(self, tier: str, seconds: float) -> None:
        """Time one recall spent on one tier."""
        self.recall_seconds.labels(tier=tier).observe(seconds)

    def observe_recall_results(
        self, user_key: str, scores: Sequence[float], similarities: Sequence[float], dropped: int
    ) -> None:
        """Scores of the returned hits and the count dropped by min_score."""
        for score in scores:
            self.result_scores.observe(score)
        for similarity in similarities:
            self.result_similarity.observe(similarity)
        if dropped:
            self.dropped.inc(dropped)
        if self.user_recalls is not None:
            self.user_recalls.labels(user=self._user_label(user_key)).inc()

    def observe_embedding(self, texts: int, seconds: float) -> None:
        """One embedding-model call."""
        self.embedding_seconds.observe(seconds)
        self.embedded_texts.inc(texts)

    def observe_write(self, user_key: str, memories: int, created: int) -> None:
        """A remember call's writes."""
        self.memories_written.inc(memories)
        self.memories_created.inc(created)
        if self.user_writes is not None:
            self.user_writes.labels(user=self._user_label(user_key)).inc(memories)

    # Scrape.

    async def render(self, memory: BackgroundService | None, embedding_model: str) -> bytes:
        """The exposition text, with the tier gauges read from the stores now (never waiting for a load)."""
        self.info.labels(version=__version__, embedding_model=embedding_model).set(1)
        ready = memory is not None and memory.ready and not memory.closed
        self.ready.set(1 if ready else 0)
        if ready and memory is not None:
            service = await memory.get()
            for tier, stats in (await service.tier_stats()).items():
                self.tier_items.labels(tier=tier).set(stats.items)
                self.tier_bytes.labels(tier=tier).set(stats.bytes_on_disk)
        return generate_latest(self.registry)


class ToolCallMetrics:
    """MCP server middleware counting tool calls, errors and durations by tool name."""

    def __init__(self, metrics: PrometheusMetrics, server: MCPServer[Any]) -> None:
        self._metrics = metrics
        self._server = server
        self._tools: frozenset[str] | None = None

    async def _tool_label(self, params: Mapping[str, Any] | None) -> str:
        if self._tools is None:
            self._tools = frozenset(tool.name for tool in await self._server.list_tools())
        name = (params or {}).get("name")
        # Only the server's own tool names become labels: a client cannot create series by calling made-up tools.
        return name if isinstance(name, str) and name in self._tools else UNKNOWN_TOOL

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Observe a `tools/call`; pass every other message through untouched."""
        if ctx.method != "tools/call":
            return await call_next(ctx)
        tool = await self._tool_label(ctx.params)
        metrics = self._metrics
        metrics.tool_calls.labels(tool=tool).inc()
        started = time.perf_counter()
        try:
            result = await call_next(ctx)
        except Exception:
            metrics.tool_errors.labels(tool=tool).inc()
            raise
        finally:
            metrics.tool_seconds.labels(tool=tool).observe(time.perf_counter() - started)
        match result:
            case CallToolResult(is_error=True) | {"isError": True}:
                metrics.tool_errors.labels(tool=tool).inc()
            case _:
                pass
        return result
