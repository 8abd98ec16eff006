"""Ingesting documents into knowledge memory: find the files, parse and chunk them, embed and write whole files."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from engram.core.errors import InvalidInput, UnreadableDocument, quoted
from engram.core.identity import UserKey
from engram.core.knowledge_chunking import CHUNKER_VERSION, chunk_document
from engram.core.knowledge_files import check_globs, discover
from engram.core.knowledge_models import (
    MAX_SOURCE_NAME_CHARS,
    MAX_TEXT_CHARS,
    SUFFIX_FORMATS,
    ChunkDraft,
    DocumentFormat,
    DocumentParser,
    FileProblem,
    IngestedFile,
    IngestReport,
    KnowledgeChunk,
    KnowledgeStore,
    Origin,
    StoredSource,
    scope_of,
)
from engram.core.ports import Embedder

logger = logging.getLogger(__name__)

T = TypeVar("T")
Progress = Callable[[float, float, str], Awaitable[None]]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


_MB = 1024 * 1024


@dataclass(frozen=True)
class KnowledgePolicy:
    """Chunking and the limits of an ingest (built from Settings by the composition root)."""

    chunk_tokens: int = 200
    chunk_overlap: int = 40
    max_file_bytes: int = 20 * 1024 * 1024
    max_files: int = 10_000
    max_chunks_per_source: int = 20_000
    max_text_chars: int = MAX_TEXT_CHARS
    #: Texts per call of the embedding model.
    embed_batch: int = 64
    #: Files are written in groups of about this many chunks (each group one commit, whole files only).
    write_batch_chunks: int = 256
    #: Folders under which a remote (MCP) client may name paths to ingest; empty refuses path ingest over MCP.
    roots: tuple[Path, ...] = ()


@dataclass
class _Prepared:
    source: str
    origin: Origin
    title: str
    source_hash: str
    drafts: list[ChunkDraft]


def _source_hash(data: bytes, policy: KnowledgePolicy, extra: str = "") -> str:
    # Chunking settings are part of the hash: changing them re-chunks files whose bytes did not change.
    digest = hashlib.sha256(f"{CHUNKER_VERSION}:{policy.chunk_tokens}:{policy.chunk_overlap}:{extra}\x00".encode())
    digest.update(data)
    return digest.hexdigest()


def chunk_index_text(title: str, heading_path: Sequence[str], content: str) -> str:
    """What is embedded and keyword-indexed for a chunk: its title and headings, then its text."""
    context: list[str] = [title]
    for heading in heading_path:
        if heading != context[-1]:
            context.append(heading)
    return " > ".join(context) + "\n" + content


def chunk_id(owner: UserKey, source: str, position: int, index_text: str) -> str:
    """The content-addressed id of a chunk (restores recompute it for the owner they restore to)."""
    digest = hashlib.sha256(f"{owner}\x00{source}\x00{position}\x00{index_text}".encode())
    return digest.hexdigest()[:32]


class KnowledgeIngest:
    """ingest_paths and ingest_text for one knowledge store: each file's chunks replace its previous ones at once."""

    def __init__(
        self,
        embedder: Embedder,
        store: KnowledgeStore,
        parse: DocumentParser,
        policy: KnowledgePolicy,
        clock: Callable[[], datetime],
        run: Callable[[Callable[[], Any]], Awaitable[Any]],
    ) -> None:
        self.embedder = embedder
        self.store = store
        self._parse = parse
        self.policy = policy
        self._clock = clock
        self._run = run

    def _checked_request(
        self, paths: Sequence[str | Path], include: Sequence[str], exclude: Sequence[str], confined: bool
    ) -> tuple[list[str], list[str], list[Path]]:
        """The include and exclude patterns and the allowed roots of a path ingest, each checked."""
        checked_include = check_globs("include", include)
        checked_exclude = check_globs("exclude", exclude)
        if not paths:
            raise InvalidInput("paths", "name at least one file or folder.")
        roots = [r.resolve() for r in self.policy.roots]
        if confined and not roots:
            raise InvalidInput(
                "paths",
                "this server does not ingest files named by a client (ENGRAM_KNOWLEDGE_ROOTS is empty). Send the "
                "document's text with ingest_text instead, or ask the operator to set ENGRAM_KNOWLEDGE_ROOTS.",
            )
        return checked_include, checked_exclude, roots

    async def ingest_paths(
        self,
        owner: UserKey,
        paths: Sequence[str | Path],
        *,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        confined: bool = False,
        progress: Progress | None = None,
    ) -> IngestReport:
        """Ingest files and folders (recursively) for `owner`; unchanged files are skipped by content hash.

        Each file's chunks replace that file's previous chunks in one commit, so an interrupted ingest leaves
        every file either fully old or fully new, and running it again finishes the job. Files that are gone
        from an ingested folder have their chunks erased. With `confined`, every path must lie under one of the
        policy's roots (remote callers must not read arbitrary server files).
        """
        started = time.monotonic()
        checked_include, checked_exclude, roots = self._checked_request(paths, include, exclude, confined)
        files, folders, failed = await self._run(
            partial(discover, paths, checked_include, checked_exclude, roots, confined)
        )
        if len(files) > self.policy.max_files:
            raise InvalidInput(
                "paths",
                f"{len(files)} files match; one ingest takes at most {self.policy.max_files} "
                "(ENGRAM_KNOWLEDGE_MAX_FILES). Ingest sub-folders separately or narrow it with include/exclude.",
            )
        stored = {s.source: s for s in await self._run(partial(self.store.sources, [owner]))}
        report = _Tally(owner, len(files), failed)
        total = len(files) + 1
        if progress:
            await progress(0, total, f"Ingesting {len(files)} files")
        group: list[_Prepared] = []
        for done, path in enumerate(files, start=1):
            group = await self._ingest_file(owner, path, stored, report, group)
            if progress:
                await progress(done, total, f"{done}/{len(files)} files")
        if group:
            await self._write(owner, group, stored, report)
        await self._remove_gone(owner, stored, files, folders, report)
        if report.changed:
            await self._run(self.store.optimize)
        if progress:
            await progress(total, total, "Ingest finished")
        return report.finish(time.monotonic() - started)

    async def _ingest_file(
        self, owner: UserKey, path: Path, stored: dict[str, StoredSource], report: _Tally, group: list[_Prepared]
    ) -> list[_Prepared]:
        """Add one file to the group being written (written once it is large enough); the group left to write."""
        source = str(path)
        previous = stored.get(source)
        try:
            prepared = await self._run(partial(self._prepare_file, path, previous))
        except Exception as exc:  # a parser's own error types vary; any failure skips only this file
            report.failed.append(FileProblem(source=source, reason=_reason(exc)))
            logger.info("knowledge ingest skipped a file: %s", _reason(exc))
            return group
        if prepared is None:
            report.unchanged += 1
        elif not prepared.drafts:
            report.empty.append(source)
            if previous is not None:
                report.chunks_erased += await self._run(partial(self.store.remove_sources, owner, [source]))
        else:
            group.append(prepared)
            if sum(len(p.drafts) for p in group) >= self.policy.write_batch_chunks:
                await self._write(owner, group, stored, report)
                return []
        return group

    async def _remove_gone(
        self,
        owner: UserKey,
        stored: dict[str, StoredSource],
        files: list[Path],
        folders: list[Path],
        report: _Tally,
    ) -> None:
        """Erase the chunks of files that were in an ingested folder and are gone from it."""
        found = {str(f) for f in files}
        gone = [
            s.source
            for s in stored.values()
            if s.origin == "file"
            and any(s.source.startswith(str(folder) + os.sep) for folder in folders)
            and s.source not in found
            and not os.path.lexists(s.source)
        ]
        if gone:
            await self._run(partial(self.store.remove_sources, owner, gone))
            report.removed.extend(gone)

    async def ingest_text(
        self, owner: UserKey, source: str, text: str, fmt: DocumentFormat, title: str | None = None
    ) -> IngestReport:
        """Ingest one document sent as text under the name `source`, replacing that source's earlier version."""
        started = time.monotonic()
        source = source.strip()
        if not source or len(source) > MAX_SOURCE_NAME_CHARS or _CONTROL.search(source):
            raise InvalidInput("source", f"must be 1-{MAX_SOURCE_NAME_CHARS} characters without control characters.")
        if fmt == DocumentFormat.PDF:
            raise InvalidInput("format", "PDF cannot be sent as text; accepted: text, markdown, html.")
        if len(text) > self.policy.max_text_chars:
            raise InvalidInput("text", f"is {len(text)} characters; the limit is {self.policy.max_text_chars}.")
        if title is not None and (not title.strip() or len(title) > 300):
            raise InvalidInput("title", "must be 1-300 characters.")
        stored = {s.source: s for s in await self._run(partial(self.store.sources, [owner]))}
        previous = stored.get(source)
        if previous is not None and previous.origin != "text":
            raise InvalidInput("source", f"{quoted(source)} is an ingested file; choose another name for this text.")
        report = _Tally(owner, 1, [])
        data = text.encode()
        digest = _source_hash(data, self.policy, f"{fmt.value}:{title or ''}")
        if previous is not None and previous.source_hash == digest:
            report.unchanged += 1
            return report.finish(time.monotonic() - started)
        try:
            document = await self._run(partial(self._parse, data, fmt))
        except UnreadableDocument as exc:
            raise InvalidInput("text", str(exc)) from exc
        drafts = chunk_document(document, self.policy.chunk_tokens, self.policy.chunk_overlap)
        self._check_chunk_count(source, len(drafts))
        prepared = _Prepared(source, "text", (title or document.title or source).strip(), digest, drafts)
        if drafts:
            await self._write(owner, [prepared], stored, report)
            await self._run(self.store.optimize)
        else:
            report.empty.append(source)
            if previous is not None:
                await self._run(partial(self.store.remove_sources, owner, [source]))
        return report.finish(time.monotonic() - started)

    def _prepare_file(self, path: Path, previous: StoredSource | None) -> _Prepared | None:
        """Read, hash, parse and chunk one file; None when its hash matches what is stored."""
        size = path.stat().st_size
        if size > self.policy.max_file_bytes:
            raise UnreadableDocument(
                # MB of 1,048,576 bytes, as ENGRAM_KNOWLEDGE_MAX_FILE_MB counts them.
                f"{size / _MB:.1f} MB is over the {self.policy.max_file_bytes / _MB:g} MB limit "
                "(ENGRAM_KNOWLEDGE_MAX_FILE_MB)"
            )
        data = path.read_bytes()
        digest = _source_hash(data, self.policy)
        if previous is not None and previous.source_hash == digest:
            return None
        document = self._parse(data, SUFFIX_FORMATS[path.suffix.lower()])
        drafts = chunk_document(document, self.policy.chunk_tokens, self.policy.chunk_overlap)
        self._check_chunk_count(str(path), len(drafts))
        return _Prepared(str(path), "file", (document.title or path.stem).strip(), digest, drafts)

    def _check_chunk_count(self, source: str, count: int) -> None:
        if count > self.policy.max_chunks_per_source:
            raise UnreadableDocument(
                f"{source} makes {count} chunks; one source may have at most {self.policy.max_chunks_per_source}"
            )

    async def _write(
        self, owner: UserKey, group: list[_Prepared], stored: dict[str, StoredSource], report: _Tally
    ) -> None:
        """Embed the group's new chunk texts in batches and replace the group's sources in one commit."""
        now = self._clock()
        chunks: list[KnowledgeChunk] = []
        for prepared in group:
            for draft in prepared.drafts:
                text = chunk_index_text(prepared.title, draft.heading_path, draft.content)
                chunks.append(
                    KnowledgeChunk(
                        id=chunk_id(owner, prepared.source, draft.position, text),
                        owner=owner,
                        source=prepared.source,
                        origin=prepared.origin,
                        title=prepared.title,
                        heading_path=draft.heading_path,
                        position=draft.position,
                        chunks=len(prepared.drafts),
                        page=draft.page,
                        content=draft.content,
                        index_text=text,
                        source_hash=prepared.source_hash,
                        ingested_at=now,
                    )
                )
        known = [p.source for p in group if p.source in stored]
        vectors = await self._run(partial(self.store.vectors_of, owner, known)) if known else {}
        missing = list(dict.fromkeys(c.index_text for c in chunks if c.index_text not in vectors))
        for start in range(0, len(missing), self.policy.embed_batch):
            batch = missing[start : start + self.policy.embed_batch]
            embedded = await self._run(partial(self.embedder.embed, batch))
            vectors.update(zip(batch, embedded, strict=True))
        matrix = np.stack([np.asarray(vectors[c.index_text], dtype=np.float32) for c in chunks])
        await self._run(partial(self.store.replace_sources, owner, [p.source for p in group], chunks, matrix))
        for prepared in group:
            report.changed.append(
                IngestedFile(
                    source=prepared.source,
                    status="updated" if prepared.source in stored else "added",
                    chunks=len(prepared.drafts),
                )
            )
        report.chunks_written += len(chunks)
        report.chunks_embedded += len(missing)


def _reason(exc: BaseException) -> str:
    """A short, single-line reason for a skipped file."""
    if isinstance(exc, UnreadableDocument):
        text = str(exc)
    elif isinstance(exc, OSError):
        text = exc.strerror or type(exc).__name__
    else:
        text = f"could not be parsed ({type(exc).__name__}: {exc})"
    return " ".join(text.split())[:300]


class _Tally:
    """Accumulates an ingest's outcome."""

    def __init__(self, owner: UserKey, files_seen: int, failed: list[FileProblem]) -> None:
        self.owner = owner
        self.files_seen = files_seen
        self.changed: list[IngestedFile] = []
        self.unchanged = 0
        self.removed: list[str] = []
        self.failed = failed
        self.empty: list[str] = []
        self.chunks_written = 0
        self.chunks_embedded = 0
        self.chunks_erased = 0

    def finish(self, seconds: float) -> IngestReport:
        return IngestReport(
            scope=scope_of(self.owner),
            files_seen=self.files_seen,
            changed=self.changed,
            unchanged=self.unchanged,
            removed=self.removed,
            failed=self.failed,
            empty=self.empty,
            chunks_written=self.chunks_written,
            chunks_embedded=self.chunks_embedded,
            seconds=round(seconds, 3),
        )
