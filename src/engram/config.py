"""Engram's settings, read from `ENGRAM_*` environment variables at the composition roots only."""

from __future__ import annotations

import getpass
import json
import os
import re
from pathlib import Path
from typing import Annotated, Literal

import platformdirs
from pydantic import AnyHttpUrl, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Hard ceilings no setting may raise (re-exported: they used to be declared here).
from engram.core.limits import ID_PATTERN
from engram.core.limits import MAX_BATCH as MAX_BATCH
from engram.core.limits import MAX_CONTENT_CHARS as MAX_CONTENT_CHARS_CEILING
from engram.core.limits import MAX_TOP_K as MAX_TOP_K

#: The name that selects the bundled, offline all-MiniLM-L6-v2 weights.
DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"

#: Port of the HTTP transports unless ENGRAM_PORT or --port says otherwise.
DEFAULT_PORT = 8765


def default_data_dir() -> Path:
    """Return the platform's per-user data directory for Engram (e.g. ~/.local/share/engram)."""
    return platformdirs.user_data_path("engram", appauthor=False)


def default_models_dir() -> Path:
    """Return the per-user cache of built ONNX models (e.g. ~/.cache/engram/models), shared by every data dir."""
    return platformdirs.user_cache_path("engram", appauthor=False) / "models"


def aws_storage_options() -> dict[str, str]:
    """LanceDB's S3 options from the usual AWS variables (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, ...).

    LanceDB reads most of these itself; they are passed explicitly so that the probe and LanceDB surely use the
    same store. Plain http is allowed only when the endpoint says http:// (a loopback or private test store).
    """
    names = {
        "AWS_ENDPOINT_URL": "aws_endpoint",
        "AWS_REGION": "aws_region",
        "AWS_ACCESS_KEY_ID": "aws_access_key_id",
        "AWS_SECRET_ACCESS_KEY": "aws_secret_access_key",
        "AWS_SESSION_TOKEN": "aws_session_token",
    }
    options = {option: os.environ[name] for name, option in names.items() if os.environ.get(name)}
    if "aws_region" not in options and os.environ.get("AWS_DEFAULT_REGION"):
        options["aws_region"] = os.environ["AWS_DEFAULT_REGION"]
    if options.get("aws_endpoint", "").startswith("http://"):
        options["allow_http"] = "true"
    return options


def default_user_id() -> str:
    """The OS login name as a user id (disallowed characters become `_`), so one person needs no configuration."""
    try:
        login = getpass.getuser()
    except (OSError, KeyError):  # no login name (e.g. a container user without a passwd entry)
        login = ""
    cleaned = re.sub(r"[^A-Za-z0-9_.@+:-]", "_", login).lstrip("_.@+:-")[:128]
    return cleaned or "local-user"


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
        default="onnx-int8",
        description=(
            "How the sentence-transformers model runs: `onnx-int8` (default) or `onnx` (onnxruntime, int8-quantised "
            "or fp32; no torch in the server; exported once into the models directory, in a child process), or "
            "`torch`. `onnx` gives the same vectors as `torch`; `onnx-int8`'s differ slightly without measurably "
            "worse recall (README: Embedding backends); all three share a data dir."
        ),
    )
    embedding_device: str = Field(default="cpu", description="Torch device for the embedding model (torch backend).")
    embedding_threads: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Inference threads (onnxruntime intra-op, torch, and the OpenMP/BLAS pools of the server). One "
        "avoids spin-waiting on small machines under load.",
    )
    models_dir: Path | None = Field(
        default=None,
        description="Where ONNX builds of the embedding model are cached (default: the user's cache directory, "
        "e.g. ~/.cache/engram/models, shared by every data dir). The default int8 model is shipped built and needs "
        "none.",
    )
    storage_uri: str | None = Field(
        default=None,
        description="Object store for long-term and knowledge memory, shared by every replica: s3://bucket/prefix "
        "(endpoint, region and credentials the usual AWS way: AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, "
        "AWS_SECRET_ACCESS_KEY; needs the `distributed` extra). gs:// and az:// pass to LanceDB untested. Unset: "
        "LanceDB under the data directory.",
    )
    sessions_url: SecretStr | None = Field(
        default=None,
        description="Redis URL for working and short-term memory, shared by every replica: redis://[:password@]host:"
        "port/db, or rediss:// for TLS (needs the `distributed` extra). Unset: a diskcache under the data directory.",
    )
    http_stateless: bool | None = Field(
        default=None,
        description="Streamable HTTP without server-side sessions, so any replica can answer any request (no sticky "
        "routing). Unset: on when ENGRAM_SESSIONS_URL is set.",
    )
    sessions_rewrite_after_erasure: bool = Field(
        default=True,
        description="With ENGRAM_SESSIONS_URL: after forget_user, ask Redis to rewrite its AOF (BGREWRITEAOF) and RDB "
        "snapshot (BGSAVE), which otherwise keep the erased keys' bytes.",
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
        default=MAX_CONTENT_CHARS_CEILING,
        ge=1,
        le=MAX_CONTENT_CHARS_CEILING,
        description="Longest content `remember` accepts.",
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
    recall_index_mb: int = Field(
        default=384,
        ge=0,
        le=1 << 20,
        description="Memory for the per-user in-memory recall index (least recently searched users leave first); "
        "0 searches LanceDB on every recall.",
    )
    recall_recency_weight: float = Field(default=0.0, ge=0.0, le=2.0, description="Bonus for new memories.")
    recall_recency_half_life_days: float = Field(
        default=30.0, gt=0.0, description="The recency bonus halves every this many days."
    )
    recall_importance_weight: float = Field(
        default=0.0, ge=0.0, le=2.0, description="Bonus per unit of a memory's importance."
    )
    recall_newer_first: int = Field(
        default=5, ge=0, le=50, description="Hits of the newer of the two best-matching sessions put first (0: off)."
    )
    recall_speaker_lift: float = Field(
        default=0.3, ge=0.0, le=2.0, description="Bonus for turns said by the person a gathering question names."
    )
    recall_session_cap: int = Field(
        default=2,
        ge=0,
        le=10,
        description="At most this many of the first ten hits from one session while other sessions match closely "
        "(0: off).",
    )
    recall_session_cap_share: float = Field(
        default=0.7,
        ge=0.0,
        le=1.0,
        description="Another session's hit counts as close when it scores at least this share of the best hit.",
    )
    recall_feedback_hits: int = Field(
        default=2,
        ge=0,
        le=20,
        description="Pseudo-relevance feedback: semantic candidates close to the mean vector of the best first "
        "matches of this many sessions rank higher (0: off).",
    )
    recall_feedback_weight: float = Field(
        default=0.5, ge=0.0, le=2.0, description="How much similarity to those best matches adds to a candidate."
    )
    recall_session_heads: int = Field(
        default=5,
        ge=0,
        le=10,
        description="For a question that counts, compares or gathers: the best turn of each of this many best "
        "sessions first (0: off).",
    )
    recall_assistant_share: float = Field(
        default=0.7,
        ge=0.0,
        le=1.0,
        description="For a question about the user (first person, no 'you'): each assistant turn's score times this, "
        "so the user's own turns rank above the replies quoting them (1: off).",
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
    journal_quiet_seconds: float = Field(
        default=0.5,
        gt=0,
        description="Journalled writes move into the long-term table once no write has come for this long (a "
        "burst of writes, such as a conversation logged turn by turn, moves in one commit; reads move them at once).",
    )
    journal_max_wait_seconds: float = Field(
        default=10.0,
        gt=0,
        description="A journalled write waits at most this long before it moves into the long-term table, even "
        "while writes keep coming (then in batches of at most 500 rows).",
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
        "generated on first run in <data dir>/user-id.key (owner-only); back it up. A missing or different key "
        "is refused at start while the data directory holds memories.",
    )
    redaction_policy: dict[str, str] = Field(
        default_factory=dict,
        description="What to do with each kind of sensitive content before anything is stored, as JSON, e.g. "
        '{"ip_address": "keep", "card": "reject"}. Categories: email, phone, card, iban, national_id, '
        "ip_address, secret; actions: redact (default for all), keep, reject.",
    )
    enrichment: bool = Field(
        default=True,
        description="Extract tags, sentiment, entities and a category from each memory on write, where the "
        "caller gave none.",
    )
    categories: dict[str, str] | None = Field(
        default=None,
        description='Category labels and their descriptions, as JSON, e.g. {"billing": "invoices, payments, '
        'refunds"}; unset: the built-in set; {}: no categories.',
    )
    category_min_similarity: float = Field(
        default=0.2,  # engram.enrichment.categories.MIN_SIMILARITY; not imported: numpy would slow the handshake
        ge=-1.0,
        le=1.0,
        description="Cosine similarity a memory needs to its closest category description to get that category.",
    )
    tools: Literal["core", "all", "graph"] = Field(
        default="core",
        description="Which tools MCP clients see. 'core' (default): the everyday memory tools a model needs in "
        "every conversation; every listed tool costs context on every turn. 'all': also remember_many (bulk "
        "import), ingest_text, forget_source, and ingest_files when ENGRAM_KNOWLEDGE_ROOTS is set. 'graph': core "
        "plus the knowledge-graph tools of the official MCP memory server (create_entities, create_relations, "
        "add_observations, search_nodes, open_nodes, read_graph) and merge_entities.",
    )
    knowledge_roots: list[Path] = Field(
        default_factory=list,
        description='Folders under which MCP clients may name files to ingest, as JSON, e.g. ["/srv/docs"]. '
        "Empty (default): the ingest_files tool refuses every path; the CLI is not limited.",
    )
    knowledge_chunk_tokens: int = Field(
        default=200, ge=32, le=1000, description="Token budget of a knowledge chunk (estimated; the model reads 256)."
    )
    knowledge_chunk_overlap: int = Field(
        default=40, ge=0, le=500, description="Tokens a chunk repeats from the previous one in the same section."
    )
    knowledge_max_file_mb: float = Field(
        default=20.0, gt=0, le=1000, description="Larger files are skipped (and reported) by an ingest."
    )
    knowledge_max_files: int = Field(
        default=10_000, ge=1, le=1_000_000, description="Most files one ingest takes (more: refused, nothing done)."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="Log level (stderr).")
    default_user: str | None = Field(
        default_factory=default_user_id,
        pattern=ID_PATTERN,
        description="On stdio, the user whose memory a call that names no user_id touches (default: the OS login "
        "name, sanitised). Empty: every stdio call must name its user. HTTP takes the user from the token.",
    )

    # The HTTP transports (streamable-http, sse); stdio ignores all of these.
    host: str = Field(default="127.0.0.1", min_length=1, description="Address the HTTP transports bind to.")
    port: int = Field(default=DEFAULT_PORT, ge=1, le=65535, description="Port of the HTTP transports.")
    public_url: AnyHttpUrl | None = Field(
        default=None,
        description="The server's URL as clients reach it (scheme://host[:port], e.g. behind a proxy); its host is "
        "allowed in Host headers and it names this resource in the OAuth metadata. Default: http://<host>:<port>.",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Extra Host header values accepted (comma-separated or JSON); a name without a port accepts "
        "any port. Loopback names are always accepted.",
    )
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Extra Origin header values accepted from browsers (comma-separated or JSON), e.g. "
        "https://app.example.com. Requests without an Origin header are not affected.",
    )
    tokens_file: Path | None = Field(
        default=None,
        description="File of bearer-token hashes (`engram token` manages it). Default: <data dir>/tokens.json.",
    )
    tokens: str | None = Field(
        default=None,
        description="More token records as JSON (a list, as `engram token create --env` prints), hashes only.",
    )
    jwt_public_key_file: Path | None = Field(
        default=None, description="PEM public key (RSA, EC or Ed25519) that signs accepted JWT bearer tokens."
    )
    jwt_jwks_file: Path | None = Field(default=None, description="JWKS file of the keys that sign accepted JWTs.")
    authorization_server: str | None = Field(
        default=None,
        description="Issuer URL of the operator's identity provider (OAuth authorization server), advertised in "
        "the protected-resource metadata so OAuth clients can sign in there. Unset: the JWT issuer if it is a "
        "URL, else none is advertised and clients are told to send a token made with `engram token create`.",
    )
    http_no_auth: Literal["off", "loopback"] = Field(
        default="off",
        description="'loopback': serve HTTP without tokens, for one local user (ENGRAM_DEFAULT_USER), and only "
        "when bound to a loopback address (refused at start otherwise).",
    )
    jwt_issuer: str | None = Field(default=None, description="Required `iss` of accepted JWTs (unset: not checked).")
    jwt_audience: str | None = Field(
        default=None, description="Required `aud` of accepted JWTs. Default: this server's MCP endpoint URL."
    )
    metrics_public: bool = Field(
        default=False, description="Serve /metrics without a token (default: a token with `metrics` or `admin`)."
    )
    metrics_per_user: bool = Field(
        default=False, description="Add per-user series (labelled by pseudonym, never the user id) to /metrics."
    )
    metrics_max_users: int = Field(
        default=100, ge=1, le=10_000, description="Users with their own series; later users share the label `other`."
    )
    max_sessions: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Streamable-HTTP sessions open at once, in all; a request that would open one more gets 503.",
    )
    max_sessions_per_token: int = Field(
        default=20,
        ge=1,
        le=100_000,
        description="Streamable-HTTP sessions one bearer token may hold open; one more gets 429.",
    )
    session_idle_seconds: float = Field(
        default=900.0,
        gt=0,
        le=86_400,
        description="A streamable-HTTP session with no request in flight for this long ends (its id then gets 404 "
        "and the client opens a new one).",
    )
    http_header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="A connection that has not sent a request's complete headers this long after it opened (or "
        "after the previous response) is closed.",
    )
    max_request_mb: float = Field(
        default=8.0,
        gt=0,
        le=1024,
        description="Largest HTTP request body, in MB of 1,048,576 bytes; a larger one is refused (413) before it is "
        "read. 8 fits the largest ingest_text and a remember_many of 500 full items in most scripts.",
    )
    shutdown_grace_seconds: float = Field(
        default=30.0, ge=0, le=3600, description="On SIGTERM/SIGINT, how long in-flight HTTP calls may take to finish."
    )

    @field_validator("allowed_hosts", "allowed_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [item.strip() for item in text.split(",") if item.strip()]
        return value

    @field_validator("default_user", mode="before")
    @classmethod
    def _empty_means_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def long_term_dir(self) -> Path:
        """Directory of the LanceDB database."""
        return self.data_dir / "lancedb"

    @property
    def knowledge_dir(self) -> Path:
        """Directory of the knowledge-memory LanceDB database (separate from long-term memory's)."""
        return self.data_dir / "knowledge"

    @property
    def graph_dir(self) -> Path:
        """Directory of the graph's LanceDB database (entities and relations)."""
        return self.data_dir / "graph"

    @property
    def model_cache_dir(self) -> Path:
        """Directory of the ONNX builds of the embedding model: ENGRAM_MODELS_DIR, else the user's cache dir."""
        return self.models_dir if self.models_dir is not None else default_models_dir()

    @property
    def user_key_file(self) -> Path:
        """File holding the generated pseudonym key when none is given in the environment."""
        return self.data_dir / "user-id.key"

    @property
    def query_cache_dir(self) -> Path:
        """Where earlier versions cached query vectors on disk; removed when memory opens (queries are not cached)."""
        return self.data_dir / "cache" / "queries"

    @property
    def token_file(self) -> Path:
        """The bearer-token hash file: ENGRAM_TOKENS_FILE, else tokens.json in the data directory."""
        return self.tokens_file if self.tokens_file is not None else self.data_dir / "tokens.json"

    @property
    def session_cache_dir(self) -> Path:
        """Directory of the diskcache that holds working and short-term memory."""
        return self.data_dir / "sessions"
