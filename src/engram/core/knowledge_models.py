"""The vocabulary of knowledge memory: parsed documents, stored chunks, sources, ingest reports, and the store port."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import BaseModel, Field

from engram.core.identity import GLOBAL_OWNER as GLOBAL_OWNER  # the owner of global knowledge
from engram.core.identity import UserKey

if TYPE_CHECKING:
    # Annotations only: numpy must not load while a server answers its handshake.
    from engram.core.ports import Vectors


#: Owner of knowledge shared by every user of the server; it cannot be a user key (ids start with a letter or
#: digit, pseudonyms with "u-").
#: Longest accepted knowledge source name.
MAX_SOURCE_NAME_CHARS = 300
#: Longest document `ingest_text` takes, in characters (also stated in the tool's schema).
MAX_TEXT_CHARS = 1_000_000

Scope = Literal["global", "user"]
Origin = Literal["file", "text"]


def scope_of(owner: str) -> Scope:
    """'global' for shared knowledge, 'user' for a user's own."""
    return "global" if owner == GLOBAL_OWNER else "user"


class DocumentFormat(StrEnum):
    """The document formats Engram can ingest."""

    TEXT = "text"
    MARKDOWN = "markdown"
    HTML = "html"
    PDF = "pdf"


#: File name suffixes recognised when ingesting files and folders.
SUFFIX_FORMATS: dict[str, DocumentFormat] = {
    ".txt": DocumentFormat.TEXT,
    ".text": DocumentFormat.TEXT,
    ".md": DocumentFormat.MARKDOWN,
    ".markdown": DocumentFormat.MARKDOWN,
    ".html": DocumentFormat.HTML,
    ".htm": DocumentFormat.HTML,
    ".pdf": DocumentFormat.PDF,
}


@dataclass(frozen=True)
class Block:
    """One structural unit of a parsed document: a heading (with its level) or a paragraph of text."""

    text: str
    heading_level: int = 0
    page: int | None = None

    @property
    def is_heading(self) -> bool:
        """Whether this block is a heading (level 1 is the outermost)."""
        return self.heading_level > 0


@dataclass(frozen=True)
class ParsedDocument:
    """A document reduced to its title and its blocks in reading order."""

    title: str | None
    blocks: list[Block] = field(default_factory=list)


#: Parses a document's bytes in the given format; raises UnreadableDocument (or the parser's own error).
DocumentParser = Callable[[bytes, DocumentFormat], ParsedDocument]


@dataclass(frozen=True)
class ChunkDraft:
    """A chunk cut from a document, before it is embedded and stored."""

    heading_path: list[str]
    position: int
    content: str
    page: int | None


@dataclass(frozen=True)
class KnowledgeChunk:
    """A chunk as stored: its text, where it comes from, and what is embedded and keyword-indexed for it."""

    id: str
    owner: str
    source: str
    origin: Origin
    title: str
    heading_path: list[str]
    position: int
    chunks: int
    page: int | None
    content: str
    index_text: str
    source_hash: str
    ingested_at: datetime


@dataclass(frozen=True)
class ChunkCandidate:
    """A chunk found by one retrieval method, with that method's raw score and the chunk's vector."""

    chunk: KnowledgeChunk
    score: float
    vector: Vectors


@dataclass(frozen=True)
class StoredSource:
    """A source as the store knows it: its owner, content hash and chunk count."""

    owner: str
    source: str
    origin: Origin
    title: str
    source_hash: str
    chunks: int
    ingested_at: datetime


class KnowledgeStore(Protocol):
    """Durable store of knowledge chunks with hybrid search; every query names the owners it may see."""

    def sources(self, owners: Sequence[UserKey]) -> list[StoredSource]:
        """Every source of these owners, with its hash and chunk count."""
        ...

    def vectors_of(self, owner: UserKey, sources: Sequence[str]) -> dict[str, Vectors]:
        """The stored vectors of these sources' chunks, keyed by the chunk's index text (to skip re-embedding)."""
        ...

    def replace_sources(
        self, owner: UserKey, sources: Sequence[str], chunks: Sequence[KnowledgeChunk], vectors: Vectors
    ) -> None:
        """Make `chunks` the whole content of `sources` (of this owner) in one commit."""
        ...

    def chunks_of(self, owner: UserKey) -> list[ChunkCandidate]:
        """Every chunk of the owner's sources with its vector (score 0), by source and position."""
        ...

    def remove_sources(self, owner: UserKey, sources: Sequence[str]) -> int:
        """Erase every chunk of these sources of this owner; return how many chunks were erased."""
        ...

    def vector_search(self, owners: Sequence[UserKey], vector: Vectors, limit: int) -> list[ChunkCandidate]:
        """Up to `limit` chunks of these owners by cosine similarity (the score), best first."""
        ...

    def keyword_search(self, owners: Sequence[UserKey], text: str, limit: int) -> list[ChunkCandidate]:
        """Up to `limit` chunks of these owners by BM25 over the index text, best first."""
        ...

    def delete_owner(self, owner: UserKey) -> int:
        """Erase every chunk of the owner; return how many."""
        ...

    def traces_of_owner(self, owner: UserKey) -> list[str]:
        """What is left of the owner on disk (rows, older table versions, files holding the key), without content."""
        ...

    def optimize(self) -> None:
        """Compact fragments and fold new rows into the indexes."""
        ...

    def count(self) -> int:
        """Number of chunks of all owners."""
        ...

    def holds_nothing(self) -> bool:
        """True when the store has surely never held a chunk, told without blocking (False: it may hold some)."""
        ...

    def bytes_on_disk(self) -> int:
        """Size of the store's files."""
        ...

    def close(self) -> None:
        """Release the store."""
        ...


class KnowledgeSource(BaseModel):
    """An ingested source as listed to a user."""

    source: str = Field(description="File path, or the name given to an ingested text.")
    title: str
    scope: Scope = Field(description="'global' (shared by every user of this server) or 'user' (the user's own).")
    origin: Origin = Field(description="'file' (ingested from a path) or 'text' (sent as text).")
    chunks: int
    ingested_at: datetime


class IngestedFile(BaseModel):
    """A source whose chunks were written by an ingest."""

    source: str
    status: Literal["added", "updated"]
    chunks: int


class FileProblem(BaseModel):
    """A file an ingest skipped, and why."""

    source: str
    reason: str


class IngestReport(BaseModel):
    """Outcome of an ingest: what was added, updated, left alone, removed, skipped or failed."""

    scope: Scope
    files_seen: int = Field(description="Supported files found (after include/exclude).")
    changed: list[IngestedFile] = Field(description="Sources added or updated (their chunks replaced atomically).")
    unchanged: int = Field(description="Sources skipped because their content hash is unchanged.")
    removed: list[str] = Field(description="Sources whose file is gone from an ingested folder; their chunks erased.")
    failed: list[FileProblem] = Field(description="Files that could not be read or parsed; the rest went on.")
    empty: list[str] = Field(description="Files with no text to index.")
    chunks_written: int
    chunks_embedded: int = Field(description="Chunks sent to the embedding model (unchanged chunks reuse vectors).")
    seconds: float


class SourceRemoved(BaseModel):
    """Outcome of removing a knowledge source."""

    source: str
    scope: Scope
    chunks: int = Field(description="Chunks erased.")
