"""Engram's settings, read from `ENGRAM_*` environment variables at the composition roots only."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The name that selects the bundled, offline all-MiniLM-L6-v2 weights.
DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"

#: Hard ceilings that no setting may raise: they protect the server's memory and the caller's context.
MAX_CONTENT_CHARS_CEILING = 100_000
MAX_TOP_K = 50
MAX_BATCH = 500


def default_data_dir() -> Path:
    """Return the platform's per-user data directory for Engram (e.g. ~/.local/share/engram)."""
    return platformdirs.user_data_path("engram", appauthor=False)


class Settings(BaseSettings):
    """Every knob Engram has; each maps to an `ENGRAM_<NAME>` environment variable."""

    model_config = SettingsConfigDict(env_prefix="ENGRAM_", frozen=True, extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir, description="Where all memory tiers are stored.")
    embedding_model: str = Field(
        default=DEFAULT_EMBEDDING_MODEL,
        description=(
            "Sentence-transformers model name or local path. `all-MiniLM-L6-v2` uses the bundled offline "
            "weights; `hash` is a fast deterministic embedder without semantic understanding (tests, demos)."
        ),
    )
    embedding_backend: Literal["torch", "onnx", "onnx-int8"] = Field(
        default="torch",
        description=(
            "How the sentence-transformers model runs: `torch`, or `onnx` / `onnx-int8` (onnxruntime, no torch when "
            "serving; exported once into `<data_dir>/models/`). `onnx` gives the same vectors as `torch`; `onnx-int8` "
            "is faster, its vectors differ slightly without measurably worse recall; all three share a data dir."
        ),
    )
    embedding_device: str = Field(default="cpu", description="Torch device for the embedding model (torch backend).")
    embedding_threads: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Inference intra-op threads (torch or onnxruntime). One avoids spin-waiting on small machines.",
    )
    working_memory_turns: int = Field(default=20, ge=1, le=1000, description="Turns kept verbatim per session.")
    working_memory_ttl_hours: float = Field(
        default=24.0, gt=0, description="A session's working memory expires this long after its last turn."
    )
    short_term_ttl_days: float = Field(
        default=7.0, gt=0, description="A session stays listable in short-term memory this long after its last turn."
    )
    short_term_max_turns: int = Field(
        default=500, ge=1, le=10_000, description="Turns of one session kept in its short-term transcript."
    )
    max_content_chars: int = Field(
        default=8000, ge=1, le=MAX_CONTENT_CHARS_CEILING, description="Longest content `remember` accepts."
    )
    default_top_k: int = Field(default=5, ge=1, le=MAX_TOP_K, description="Long-term hits `recall` returns by default.")
    summary_max_chars: int = Field(
        default=600, ge=50, le=20_000, description="Length budget of the built-in extractive summary."
    )
    keep_recent_default: int = Field(
        default=6, ge=0, le=1000, description="Turns `summarize_session` keeps verbatim by default."
    )
    recall_fusion: Literal["convex", "rrf", "vector", "keyword"] = Field(
        default="convex",
        description="How semantic and keyword results are combined: weighted normalised scores (convex), "
        "reciprocal-rank fusion (rrf), or one method alone.",
    )
    recall_keyword_weight: float = Field(
        default=0.6, ge=0.0, le=1.0, description="Convex fusion: weight of the keyword (BM25) score."
    )
    recall_neighbor_weight: float = Field(
        default=0.4, ge=0.0, le=2.0, description="Share of an adjacent turn's score lent to a turn."
    )
    recall_candidates: int = Field(
        default=50, ge=1, le=1000, description="Candidates each retrieval method contributes before fusion."
    )
    recall_recency_weight: float = Field(default=0.0, ge=0.0, le=2.0, description="Bonus for new memories.")
    recall_recency_half_life_days: float = Field(
        default=30.0, gt=0.0, description="The recency bonus halves every this many days."
    )
    recall_importance_weight: float = Field(
        default=0.0, ge=0.0, le=2.0, description="Bonus per unit of a memory's importance."
    )
    retention_days: float | None = Field(
        default=None, gt=0, description="Long-term memories older than this many days are purged (unset: kept)."
    )
    retention_days_by_category: dict[str, float] = Field(
        default_factory=dict,
        description='Per-category retention in days, as JSON, e.g. {"chitchat": 30}; overrides retention_days.',
    )
    purge_interval_hours: float = Field(
        default=6.0, gt=0, description="How often a running server applies retention (also once at start)."
    )
    upkeep_interval_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How often a running server checks whether the long-term table needs compaction and index "
        "upkeep (also right after a burst of writes).",
    )
    version_retention_seconds: float = Field(
        default=120.0,
        ge=1,
        description="How long upkeep keeps a superseded table version, so queries other processes started on it "
        "finish before its files are removed.",
    )
    user_id_key: SecretStr | None = Field(
        default=None,
        description="Secret key (at least 16 characters) for pseudonymous user ids. Default: a random key "
        "generated on first run in <data dir>/user-id.key (owner-only). Losing it orphans every memory.",
    )
    redaction_policy: dict[str, str] = Field(
        default_factory=dict,
        description="What to do with each kind of sensitive content before anything is stored, as JSON, e.g. "
        '{"ip_address": "keep", "card": "reject"}. Categories: email, phone, card, iban, national_id, '
        "ip_address, secret; actions: redact (default for all), keep, reject.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="Log level (stderr).")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def long_term_dir(self) -> Path:
        """Directory of the LanceDB database."""
        return self.data_dir / "lancedb"

    @property
    def models_dir(self) -> Path:
        """Directory of the ONNX exports of the embedding model."""
        return self.data_dir / "models"

    @property
    def user_key_file(self) -> Path:
        """File holding the generated pseudonym key when none is given in the environment."""
        return self.data_dir / "user-id.key"

    @property
    def query_cache_dir(self) -> Path:
        """Directory of the query-embedding cache."""
        return self.data_dir / "cache" / "queries"

    @property
    def session_cache_dir(self) -> Path:
        """Directory of the diskcache that holds working and short-term memory."""
        return self.data_dir / "sessions"
