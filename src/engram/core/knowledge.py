"""KnowledgeService: knowledge memory (ingest documents, list and remove sources, search them with citations)."""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import math
import os
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TypeVar

import anyio.to_thread
import numpy as np

from engram.core.errors import InvalidInput, UnreadableDocument, quoted
from engram.core.identity import UserKey
from engram.core.knowledge_chunking import CHUNKER_VERSION, chunk_document
from engram.core.knowledge_models import (
    GLOBAL_OWNER,
    MAX_SOURCE_NAME_CHARS,
    MAX_TEXT_CHARS,
    SUFFIX_FORMATS,
    ChunkCandidate,
    ChunkDraft,
    DocumentFormat,
    DocumentParser,
    FileProblem,
    IngestedFile,
    IngestReport,
    KnowledgeChunk,
    KnowledgeSource,
    KnowledgeStore,
    Origin,
    Scope,
    SourceRemoved,
    StoredSource,
)
from engram.core.models import Citation, HitScores, KnowledgeHit
from engram.core.ports import Embedder, Vectors
from engram.core.ranking import RankingPolicy, fused_scores
from engram.core.timeutil import utc_now

logger = logging.getLogger(__name__)

T = TypeVar("T")
Progress = Callable[[float, float, str], Awaitable[None]]

MAX_GLOBS = 32
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


def scope_of(owner: str) -> Scope:
    """'global' for shared knowledge, 'user' for a user's own."""
    return "global" if owner == GLOBAL_OWNER else "user"


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


def _chunk_id(owner: UserKey, source: str, position: int, index_text: str) -> str:
    digest = hashlib.sha256(f"{owner}\x00{source}\x00{position}\x00{index_text}".encode())
    return digest.hexdigest()[:32]


#: The content-addressed id of a chunk, for restores, which recompute it for the owner they restore to.
chunk_id = _chunk_id


def _matches(relative: str, name: str, globs: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(relative, g) or fnmatch.fnmatch(name, g) for g in globs)


def _check_globs(field: str, globs: Sequence[str]) -> list[str]:
    if len(globs) > MAX_GLOBS:
        raise InvalidInput(field, f"at most {MAX_GLOBS} patterns are accepted, got {len(globs)}.")
    for glob in globs:
        if not glob.strip() or len(glob) > 256 or _CONTROL.search(glob):
            raise InvalidInput(
                field, f"each pattern must be 1-256 characters without control characters: {quoted(glob)}."
            )
    return list(globs)


def _under(path: Path, roots: Sequence[Path]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


class KnowledgeService:
    """Knowledge memory over its ports: documents in, cited chunks out; global or per-user sources."""

    def __init__(
        self,
        embedder: Embedder,
        store: KnowledgeStore,
        parse: DocumentParser,
        policy: KnowledgePolicy | None = None,
        ranking: RankingPolicy | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.embedder = embedder
        self.store = store
        self._parse = parse
        self.policy = policy or KnowledgePolicy()
        self.ranking = ranking or RankingPolicy()
        self._clock = clock or utc_now

    async def _run(self, fn: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(fn)

    # --- ingest -------------------------------------------------------------------------------------------------

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
        include = _check_globs("include", include)
        exclude = _check_globs("exclude", exclude)
        if not paths:
            raise InvalidInput("paths", "name at least one file or folder.")
        roots = [r.resolve() for r in self.policy.roots]
        if confined and not roots:
            raise InvalidInput(
                "paths",
                "this server does not ingest files named by a client (ENGRAM_KNOWLEDGE_ROOTS is empty). Send the "
                "document's text with ingest_text instead, or ask the operator to set ENGRAM_KNOWLEDGE_ROOTS.",
            )
        files, folders, failed = await self._run(partial(self._discover, paths, include, exclude, roots, confined))
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
            source = str(path)
            previous = stored.get(source)
            try:
                prepared = await self._run(partial(self._prepare_file, path, previous))
            except Exception as exc:  # a parser's own error types vary; any failure skips only this file
                report.failed.append(FileProblem(source=source, reason=_reason(exc)))
                logger.info("knowledge ingest skipped a file: %s", _reason(exc))
            else:
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
                        group = []
            if progress:
                await progress(done, total, f"{done}/{len(files)} files")
        if group:
            await self._write(owner, group, stored, report)
        gone = [
            s.source
            for s in stored.values()
            if s.origin == "file"
            and any(s.source.startswith(str(folder) + os.sep) for folder in folders)
            and s.source not in {str(f) for f in files}
            and not os.path.lexists(s.source)
        ]
        if gone:
            await self._run(partial(self.store.remove_sources, owner, gone))
            report.removed.extend(gone)
        if report.changed:
            await self._run(self.store.optimize)
        if progress:
            await progress(total, total, "Ingest finished")
        return report.finish(time.monotonic() - started)

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

    def _discover(
        self, paths: Sequence[str | Path], include: list[str], exclude: list[str], roots: list[Path], confined: bool
    ) -> tuple[list[Path], list[Path], list[FileProblem]]:
        """The supported files named or found under the named folders, the folders, and what could not be used."""
        files: dict[Path, None] = {}
        folders: list[Path] = []
        problems: list[FileProblem] = []
        accepted = ", ".join(sorted(SUFFIX_FORMATS))
        for raw in paths:
            if "\x00" in str(raw) or not str(raw).strip():
                raise InvalidInput("paths", f"{quoted(str(raw))} is not a file or folder path.")
            path = Path(raw).expanduser().absolute()
            resolved = path.resolve()
            if confined and not _under(resolved, roots):
                raise InvalidInput(
                    "paths",
                    f"{quoted(str(raw))} is outside the folders this server ingests from "
                    f"({', '.join(str(r) for r in roots)}).",
                )
            try:
                is_folder = resolved.is_dir()
            except OSError as exc:  # a name too long for the file system, a loop of links
                raise InvalidInput("paths", f"{quoted(str(raw))} cannot be read: {exc.strerror}.") from None
            if is_folder:
                folders.append(resolved)
                for directory, subdirs, names in os.walk(resolved):
                    # Hidden folders (.git, .venv) and files are never documents to cite.
                    subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
                    for name in sorted(names):
                        file = Path(directory) / name
                        if name.startswith(".") or file.suffix.lower() not in SUFFIX_FORMATS:
                            continue
                        relative = file.relative_to(resolved).as_posix()
                        if include and not _matches(relative, name, include):
                            continue
                        if _matches(relative, name, exclude):
                            continue
                        if confined and not _under(file.resolve(), roots):
                            problems.append(FileProblem(source=str(file), reason="links outside the allowed folders"))
                            continue
                        files[file] = None
            elif resolved.is_file() or path.is_symlink():
                if path.suffix.lower() not in SUFFIX_FORMATS:
                    problems.append(FileProblem(source=str(path), reason=f"unsupported format; accepted: {accepted}"))
                else:
                    files[resolved if resolved.is_file() else path] = None
            else:
                problems.append(FileProblem(source=str(path), reason="no such file or folder"))
        return list(files), folders, problems

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
                        id=_chunk_id(owner, prepared.source, draft.position, text),
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

    # --- sources ------------------------------------------------------------------------------------------------

    async def sources(self, user_key: UserKey | None) -> list[KnowledgeSource]:
        """The sources a user sees (global and their own), or only the global ones without a user."""
        owners = [GLOBAL_OWNER] if user_key is None else [GLOBAL_OWNER, user_key]
        stored = await self._run(partial(self.store.sources, owners))
        return [
            KnowledgeSource(
                source=s.source,
                title=s.title,
                scope=scope_of(s.owner),
                origin=s.origin,
                chunks=s.chunks,
                ingested_at=s.ingested_at,
            )
            for s in sorted(stored, key=lambda s: (s.owner != GLOBAL_OWNER, s.source))
        ]

    async def remove_source(self, owner: UserKey, source: str) -> SourceRemoved:
        """Erase one source of `owner` (all its chunks, physically)."""
        stored = {s.source for s in await self._run(partial(self.store.sources, [owner]))}
        if source not in stored:
            raise InvalidInput(
                "source",
                f"no {scope_of(owner)} knowledge source {quoted(source)}; list the sources with the "
                "engram://users/{user_id}/knowledge resource or `engram sources`.",
            )
        chunks = await self._run(partial(self.store.remove_sources, owner, [source]))
        return SourceRemoved(source=source, scope=scope_of(owner), chunks=chunks)

    async def forget_owner(self, owner: UserKey) -> int:
        """Erase every source of a user; return how many chunks were erased."""
        if owner == GLOBAL_OWNER:
            raise InvalidInput("user_id", "global knowledge is not a user's to erase.")
        return await self._run(partial(self.store.delete_owner, owner))

    async def traces_of_owner(self, owner: UserKey) -> list[str]:
        """What is left of the owner in the knowledge store, named without content."""
        return await self._run(partial(self.store.traces_of_owner, owner))

    # --- search -------------------------------------------------------------------------------------------------

    async def search(
        self, user_key: UserKey, query: str, vector: Vectors, top_k: int, min_score: float | None
    ) -> tuple[list[KnowledgeHit], int]:
        """The chunks of global and the user's own knowledge best matching the query, and how many min_score cut."""
        owners = [GLOBAL_OWNER, user_key]
        ranking = self.ranking
        limit = max(ranking.candidates, top_k)

        def searches() -> tuple[list[ChunkCandidate], list[ChunkCandidate]]:
            # Most users never ingest a document: a row count (well under a millisecond) spares them two searches
            # of an empty table (about 8 ms of CPU together) on every recall.
            if self.store.count() == 0:
                return [], []
            semantic = [] if ranking.fusion == "keyword" else self.store.vector_search(owners, vector, limit)
            keyword = [] if ranking.fusion == "vector" else self.store.keyword_search(owners, query, limit)
            return semantic, keyword

        semantic, keyword = await self._run(searches)
        if not semantic and not keyword:
            return [], 0
        by_id: dict[str, ChunkCandidate] = {}
        for candidate in [*semantic, *keyword]:
            by_id.setdefault(candidate.chunk.id, candidate)
        vector_rank = {c.chunk.id: rank for rank, c in enumerate(semantic, start=1)}
        keyword_rank = {c.chunk.id: rank for rank, c in enumerate(keyword, start=1)}
        keyword_score = {c.chunk.id: c.score for c in keyword}
        fused = fused_scores(
            [(c.chunk.id, c.score) for c in semantic], [(c.chunk.id, c.score) for c in keyword], ranking
        )
        ordered = sorted(fused, key=lambda i: (-fused[i], vector_rank.get(i, math.inf), i))
        query_vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        hits: list[KnowledgeHit] = []
        dropped = 0
        for chunk_id in ordered:
            if len(hits) == top_k:
                break
            candidate = by_id[chunk_id]
            similarity = float(np.dot(query_vector, candidate.vector))
            if min_score is not None and similarity < min_score:
                dropped += 1
                continue
            chunk = candidate.chunk
            score = round(fused[chunk_id], 6)
            hits.append(
                KnowledgeHit(
                    score=score,
                    scores=HitScores(
                        similarity=round(similarity, 6),
                        keyword=None if chunk_id not in keyword_score else round(keyword_score[chunk_id], 6),
                        vector_rank=vector_rank.get(chunk_id),
                        keyword_rank=keyword_rank.get(chunk_id),
                        neighbor_boost=0.0,
                        fused=score,
                    ),
                    content=chunk.content,
                    citation=Citation(
                        source=chunk.source,
                        title=chunk.title,
                        heading_path=chunk.heading_path,
                        position=chunk.position,
                        chunks=chunk.chunks,
                        page=chunk.page,
                        scope=scope_of(chunk.owner),
                        ingested_at=chunk.ingested_at,
                    ),
                )
            )
        return hits, dropped

    def close(self) -> None:
        """Close the store."""
        self.store.close()


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
