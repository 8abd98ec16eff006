"""Composition of the concrete memory stack from Settings; shared by the server and the CLI."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from engram.config import MAX_BATCH, MAX_TOP_K, Settings
from engram.core.errors import InvalidInput, quoted
from engram.core.identity import Pseudonymizer
from engram.core.knowledge import KnowledgePolicy, KnowledgeService
from engram.core.loader import BackgroundService
from engram.core.ports import Embedder, MemoryMetrics
from engram.core.ranking import RankingPolicy
from engram.core.redaction import RedactionPolicy
from engram.core.service import MemoryPolicy, MemoryService, utc_now


def policy_from(settings: Settings) -> MemoryPolicy:
    """The service limits and defaults that Settings configure."""
    return MemoryPolicy(
        max_content_chars=settings.max_content_chars,
        default_top_k=settings.default_top_k,
        max_top_k=MAX_TOP_K,
        summary_max_chars=settings.summary_max_chars,
        keep_recent_default=settings.keep_recent_default,
        max_batch=MAX_BATCH,
        redaction=RedactionPolicy.from_mapping(settings.redaction_policy, field="ENGRAM_REDACTION_POLICY"),
        retention=None if settings.retention_days is None else timedelta(days=settings.retention_days),
        retention_by_category=_retention_by_category(settings.retention_days_by_category),
    )


def _retention_by_category(days: dict[str, float]) -> dict[str, timedelta]:
    for category, value in days.items():
        if not value > 0:
            raise InvalidInput(
                "ENGRAM_RETENTION_DAYS_BY_CATEGORY", f"{quoted(category)} must have a positive number of days."
            )
    return {category: timedelta(days=value) for category, value in days.items()}


def knowledge_policy_from(settings: Settings) -> KnowledgePolicy:
    """Chunking and ingest limits of knowledge memory, as Settings configure them."""
    if settings.knowledge_chunk_overlap >= settings.knowledge_chunk_tokens:
        raise InvalidInput("ENGRAM_KNOWLEDGE_CHUNK_OVERLAP", "must be smaller than ENGRAM_KNOWLEDGE_CHUNK_TOKENS.")
    return KnowledgePolicy(
        chunk_tokens=settings.knowledge_chunk_tokens,
        chunk_overlap=settings.knowledge_chunk_overlap,
        max_file_bytes=int(settings.knowledge_max_file_mb * 1024 * 1024),
        max_files=settings.knowledge_max_files,
        roots=tuple(settings.knowledge_roots),
    )


def ranking_from(settings: Settings) -> RankingPolicy:
    """How recall ranks, as Settings configure it."""
    return RankingPolicy(
        fusion=settings.recall_fusion,
        keyword_weight=settings.recall_keyword_weight,
        neighbor_weight=settings.recall_neighbor_weight,
        candidates=settings.recall_candidates,
        recency_weight=settings.recall_recency_weight,
        recency_half_life_days=settings.recall_recency_half_life_days,
        importance_weight=settings.recall_importance_weight,
    )


def user_id_key(settings: Settings) -> bytes:
    """The pseudonym key: from ENGRAM_USER_ID_KEY, else from the key file, created owner-only on first run."""
    if settings.user_id_key is not None:
        key = settings.user_id_key.get_secret_value().encode()
        if len(key) < 16:
            raise InvalidInput("ENGRAM_USER_ID_KEY", "must be at least 16 characters.")
        return key
    path = settings.user_key_file
    try:
        # O_EXCL: when several servers start at once, exactly one creates the key and the others read it.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):
            key = path.read_bytes().strip()
            if key:
                return key
            time.sleep(0.02)  # another process is writing it right now
        raise InvalidInput("ENGRAM_USER_ID_KEY", f"the key file {path} is empty; restore it from a backup.") from None
    key = secrets.token_hex(32).encode()
    with os.fdopen(descriptor, "wb") as out:
        out.write(key)
        out.flush()
        os.fsync(out.fileno())
    return key


def open_memory(
    settings: Settings,
    embedder: Embedder | None = None,
    clock: Callable[[], datetime] = utc_now,
    metrics: MemoryMetrics | None = None,
) -> MemoryService:
    """Load the embedder (unless given), open both stores under `settings.data_dir`, and wire the service.

    With `metrics`, the service reports to it and every embedding call is timed.
    """
    from engram.embeddings import load_embedder
    from engram.embeddings.measured import MeasuredEmbedder
    from engram.ingest import parse_document
    from engram.storage.journal import WriteJournal
    from engram.storage.journaled import JournaledLongTermStore
    from engram.storage.knowledge import LanceKnowledgeStore
    from engram.storage.long_term import LanceLongTermStore
    from engram.storage.query_cache import DiskQueryCache
    from engram.storage.sessions import DiskSessionStore
    from engram.storage.upkeep import Upkeep, UpkeepPolicy

    # Checked first, so a bad setting fails before any store is opened.
    policy, ranking = policy_from(settings), ranking_from(settings)
    categories = _categories(settings)
    knowledge_policy = knowledge_policy_from(settings)
    # Owner-only when Engram creates it: memories are personal data.
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    pseudonymize = Pseudonymizer(user_id_key(settings))
    sessions = DiskSessionStore(
        settings.session_cache_dir,
        working_turns=settings.working_memory_turns,
        working_ttl=timedelta(hours=settings.working_memory_ttl_hours),
        short_term_turns=settings.short_term_max_turns,
        short_term_ttl=timedelta(days=settings.short_term_ttl_days),
    )
    try:
        if embedder is None:
            embedder = load_embedder(
                settings.embedding_model,
                device=settings.embedding_device,
                threads=settings.embedding_threads,
                backend=settings.embedding_backend,
                cache_dir=settings.model_cache_dir,
            )
        enricher = None
        if settings.enrichment:
            from engram.enrichment import MetadataEnricher
            from engram.enrichment.deferred import DeferredEnricher

            model = embedder
            enricher = DeferredEnricher(
                lambda: MetadataEnricher(model, categories, min_similarity=settings.category_min_similarity)
            )
        table = LanceLongTermStore(settings.long_term_dir, dimensions=embedder.dimensions, model_id=embedder.model_id)
        upkeep = Upkeep(
            table,
            UpkeepPolicy(
                interval_s=settings.upkeep_interval_seconds,
                keep_versions_for=timedelta(seconds=settings.version_retention_seconds),
            ),
        )
        # Writes are acknowledged from a durable journal and reach the table in batches (see storage/journaled.py).
        journal = WriteJournal(settings.long_term_dir / "journal.sqlite")
        long_term = JournaledLongTermStore(table, journal, upkeep=upkeep)
        knowledge_store = LanceKnowledgeStore(
            settings.knowledge_dir, dimensions=embedder.dimensions, model_id=embedder.model_id
        )
    except BaseException:
        sessions.close()
        raise
    from engram.embeddings.batching import BatchingEmbedder

    if metrics is not None:
        embedder = MeasuredEmbedder(embedder, metrics)
    # Concurrent single calls (several clients) share model calls: +15% texts/s with 8 callers, measured loaded.
    embedder = BatchingEmbedder(embedder)
    knowledge = KnowledgeService(embedder, knowledge_store, parse_document, knowledge_policy, ranking, clock)
    return MemoryService(
        embedder,
        long_term,
        sessions,
        policy,
        clock,
        ranking,
        DiskQueryCache(settings.query_cache_dir),
        pseudonymize,
        enricher,
        metrics,
        knowledge,
    )


def _categories(settings: Settings) -> dict[str, str]:
    """The category label set: checked, and empty with the hash embedder, whose vectors carry no meaning."""
    from engram.enrichment import DEFAULT_CATEGORIES
    from engram.enrichment.enricher import check_categories

    labels = check_categories(DEFAULT_CATEGORIES if settings.categories is None else settings.categories)
    return {} if settings.embedding_model == "hash" else labels


def background_memory(
    settings: Settings,
    embedder: Embedder | None = None,
    metrics: MemoryMetrics | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> BackgroundService:
    """A BackgroundService that opens `open_memory(settings, embedder, clock, metrics)` off the caller's thread."""
    return BackgroundService(lambda: open_memory(settings, embedder, clock, metrics))
