"""Composition of the concrete memory stack from Settings; shared by the server and the CLI."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from engram.config import Settings, aws_storage_options
from engram.core.errors import InvalidInput, quoted
from engram.core.health import TierHealth
from engram.core.identity import Pseudonymizer
from engram.core.knowledge import KnowledgePolicy, KnowledgeService
from engram.core.limits import MAX_BATCH, MAX_TOP_K
from engram.core.loader import BackgroundService
from engram.core.ports import Embedder, MemoryMetrics, SessionStore
from engram.core.ranking import RankingPolicy
from engram.core.redaction import RedactionPolicy
from engram.core.service import MemoryPolicy, MemoryService
from engram.core.timeutil import utc_now
from engram.user_key import user_id_key

logger = logging.getLogger(__name__)


def configured_embedder(settings: Settings) -> Embedder:
    """The embedding model the settings name, loaded (the server, the CLI and `engram eval` share it)."""
    from engram.embeddings import load_embedder

    return load_embedder(
        settings.embedding_model,
        device=settings.embedding_device,
        threads=settings.embedding_threads,
        backend=settings.embedding_backend,
        cache_dir=settings.model_cache_dir,
    )


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
        live_session_gap=timedelta(days=settings.short_term_ttl_days),
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
        newer_first=settings.recall_newer_first,
        speaker_lift=settings.recall_speaker_lift,
        session_cap=settings.recall_session_cap,
        session_cap_share=settings.recall_session_cap_share,
        feedback_hits=settings.recall_feedback_hits,
        feedback_weight=settings.recall_feedback_weight,
        session_heads=settings.recall_session_heads,
        assistant_share=settings.recall_assistant_share,
    )


def open_memory(
    settings: Settings,
    embedder: Embedder | None = None,
    clock: Callable[[], datetime] = utc_now,
    metrics: MemoryMetrics | None = None,
) -> MemoryService:
    """Load the embedder (unless given), open both stores under `settings.data_dir`, and wire the service.

    With `metrics`, the service reports to it and every embedding call is timed.
    """
    from engram.allocator import tune_allocator
    from engram.embeddings.measured import MeasuredEmbedder
    from engram.ingest import parse_document
    from engram.storage.direct import DirectLongTermStore
    from engram.storage.faults import open_tier
    from engram.storage.flush_policy import FlushPolicy
    from engram.storage.graph import LanceGraphStore
    from engram.storage.guarded import (
        GuardedGraphStore,
        GuardedKnowledgeStore,
        GuardedLongTermStore,
        GuardedSessionStore,
    )
    from engram.storage.indexed_long_term import IndexedLongTermStore
    from engram.storage.journal import WriteJournal
    from engram.storage.journaled import JournaledLongTermStore
    from engram.storage.knowledge import LanceKnowledgeStore
    from engram.storage.upkeep import Upkeep, UpkeepPolicy

    # Before the engines start their threads: the arenas they would get cannot be taken back later.
    tune_allocator()
    # Checked first, so a bad setting fails before any store is opened.
    policy, ranking = policy_from(settings), ranking_from(settings)
    categories = _categories(settings)
    knowledge_policy = knowledge_policy_from(settings)
    # Owner-only when Engram creates it: memories are personal data.
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    _keep_owner_only(settings.data_dir)
    _remove_legacy_query_cache(settings)
    if (settings.storage_uri or settings.sessions_url) and settings.user_id_key is None:
        # Each replica would otherwise generate its own key, and one user would be a stranger on the next replica.
        raise InvalidInput(
            "ENGRAM_USER_ID_KEY",
            "must be set, the same on every replica, when ENGRAM_STORAGE_URI or ENGRAM_SESSIONS_URL is set.",
        )
    pseudonymize = Pseudonymizer(user_id_key(settings))
    # A damaged tier is opened as a stand-in that reports the damage, so the other tiers keep serving.
    health = TierHealth()
    # Every store opened so far is closed again if a later one fails: nothing keeps running or locked behind a
    # failed start (the long-term store runs a flusher and upkeep threads and holds its journal).
    opened = contextlib.ExitStack()
    sessions = open_tier(
        lambda: _session_store(settings),
        GuardedSessionStore,
        "session",
        settings.session_cache_dir,
        health,
    )
    opened.callback(sessions.close)
    try:
        if embedder is None:
            embedder = configured_embedder(settings)
        enricher = None
        if settings.enrichment:
            from engram.enrichment import MetadataEnricher
            from engram.enrichment.deferred import DeferredEnricher

            model = embedder
            enricher = DeferredEnricher(
                lambda: MetadataEnricher(model, categories, min_similarity=settings.category_min_similarity)
            )
        dimensions, model_id = embedder.dimensions, embedder.model_id
        shared = None
        if settings.storage_uri is not None:
            from engram.storage.distributed import open_object_store

            url = None if settings.sessions_url is None else settings.sessions_url.get_secret_value()
            shared = open_object_store(settings.storage_uri, url, aws_storage_options())

        def open_long_term() -> JournaledLongTermStore | DirectLongTermStore:
            place = settings.long_term_dir if shared is None else shared.child("lancedb")
            table = IndexedLongTermStore(
                place, dimensions=dimensions, model_id=model_id, index_bytes=settings.recall_index_mb << 20
            )
            upkeep = Upkeep(
                table,
                UpkeepPolicy(
                    interval_s=settings.upkeep_interval_seconds,
                    keep_versions_for=timedelta(seconds=settings.version_retention_seconds),
                ),
            )
            if shared is not None:
                # On object storage a commit is the durable acknowledgement (storage/direct.py, README).
                return DirectLongTermStore(table, upkeep=upkeep)
            # Writes are acknowledged from a durable journal and reach the table in batches (storage/journaled.py).
            journal = WriteJournal(settings.long_term_dir / "journal.sqlite")
            flush = FlushPolicy(quiet_s=settings.journal_quiet_seconds, max_wait_s=settings.journal_max_wait_seconds)
            return JournaledLongTermStore(table, journal, policy=flush, upkeep=upkeep)

        long_term = open_tier(open_long_term, GuardedLongTermStore, "long-term", settings.long_term_dir, health)
        opened.callback(long_term.close)
        knowledge_store = open_tier(
            lambda: LanceKnowledgeStore(
                settings.knowledge_dir if shared is None else shared.child("knowledge"),
                dimensions=dimensions,
                model_id=model_id,
            ),
            GuardedKnowledgeStore,
            "knowledge",
            settings.knowledge_dir,
            health,
        )
        opened.callback(knowledge_store.close)
        graph = open_tier(
            # Replicas share one graph on object storage, as they share memories and knowledge.
            lambda: LanceGraphStore(settings.graph_dir if shared is None else shared.child("graph")),
            GuardedGraphStore,
            "graph",
            settings.graph_dir,
            health,
        )
    except BaseException:
        opened.close()  # the last opened first
        raise
    opened.pop_all()  # from here on the service owns them and closes them
    from engram.embeddings.batching import BatchingEmbedder

    if metrics is not None:
        embedder = MeasuredEmbedder(embedder, metrics)
    # Concurrent single calls (several clients) share model calls: +15% texts/s with 8 callers, measured loaded.
    embedder = BatchingEmbedder(embedder)
    knowledge = KnowledgeService(
        embedder, knowledge_store, parse_document, knowledge_policy, ranking, clock, pseudonymize=pseudonymize
    )
    return MemoryService(
        embedder=embedder,
        long_term=long_term,
        sessions=sessions,
        policy=policy,
        clock=clock,
        ranking=ranking,
        pseudonymize=pseudonymize,
        enricher=enricher,
        metrics=metrics,
        knowledge=knowledge,
        health=health,
        graph=graph,
    )


def _session_store(settings: Settings) -> SessionStore:
    """Working and short-term memory: in Redis when ENGRAM_SESSIONS_URL is set, else in a local diskcache."""
    working_ttl = timedelta(hours=settings.working_memory_ttl_hours)
    short_term_ttl = timedelta(days=settings.short_term_ttl_days)
    if settings.sessions_url is not None:
        from engram.storage.redis_sessions import RedisSessionStore

        return RedisSessionStore.from_url(
            settings.sessions_url.get_secret_value(),
            working_turns=settings.working_memory_turns,
            working_ttl=working_ttl,
            short_term_turns=settings.short_term_max_turns,
            short_term_ttl=short_term_ttl,
            rewrite_after_erasure=settings.sessions_rewrite_after_erasure,
        )
    from engram.storage.sessions import DiskSessionStore

    return DiskSessionStore(
        settings.session_cache_dir,
        working_turns=settings.working_memory_turns,
        working_ttl=working_ttl,
        short_term_turns=settings.short_term_max_turns,
        short_term_ttl=short_term_ttl,
    )


def _keep_owner_only(data_dir: Path) -> None:
    """Make every file and folder Engram creates owner-only, whatever the data directory's mode, and tighten
    what an earlier version left open; warn when the data directory itself is open to other users."""
    # Process-wide and for good: LanceDB, SQLite and diskcache create their files themselves, some of them later
    # from background threads (fragments, indexes, write-ahead logs, locks), so only the umask reaches them all.
    os.umask(os.umask(0o077) | 0o077)
    mode = stat.S_IMODE(data_dir.stat().st_mode)
    if mode & 0o077:
        logger.warning(
            "the data directory %s has mode %o: other users can see which files it holds. Engram keeps its own "
            "files owner-only; run `chmod 700 %s` to close the directory too.",
            data_dir,
            mode,
            data_dir,
        )
    if any(stat.S_IMODE(entry.lstat().st_mode) & 0o077 for entry in data_dir.iterdir()):
        # Written by a version without the umask: close everything, once.
        for folder, folders, files in os.walk(data_dir):
            for name in [*folders, *files]:
                path = Path(folder, name)
                try:
                    loose = path.lstat().st_mode
                    if stat.S_IMODE(loose) & 0o077 and not stat.S_ISLNK(loose):
                        path.chmod(stat.S_IMODE(loose) & 0o700)
                except OSError as exc:  # removed meanwhile by another server, or not ours to change
                    logger.warning("could not make %s owner-only: %s", path, exc)
        logger.warning("files under %s were readable by other users; they are owner-only now", data_dir)


def _remove_legacy_query_cache(settings: Settings) -> None:
    """Delete the query cache of earlier versions: it kept a plain hash of every query, which erasure never reached."""
    legacy = settings.query_cache_dir
    if legacy.exists():
        shutil.rmtree(legacy, ignore_errors=True)
        logger.info("removed the query cache of an earlier version (%s); queries are no longer cached", legacy)
    with contextlib.suppress(OSError):
        legacy.parent.rmdir()  # the "cache" folder, unless something else lives there


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
