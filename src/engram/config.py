"""Engram's settings, read from `ENGRAM_*` environment variables at the composition roots only."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The name that selects the bundled, offline all-MiniLM-L6-v2 weights.
DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"

#: Hard ceilings that no setting may raise: they protect the server's memory and the caller's context.
MAX_CONTENT_CHARS_CEILING = 100_000
MAX_TOP_K = 50


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
    embedding_device: str = Field(default="cpu", description="Torch device for the embedding model.")
    embedding_threads: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Torch intra-op threads. One avoids spin-waiting on small machines under load.",
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
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="Log level (stderr).")

    @property
    def long_term_dir(self) -> Path:
        """Directory of the LanceDB database."""
        return self.data_dir / "lancedb"

    @property
    def session_cache_dir(self) -> Path:
        """Directory of the diskcache that holds working and short-term memory."""
        return self.data_dir / "sessions"
