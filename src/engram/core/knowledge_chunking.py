"""Cutting a parsed document into chunks: by structure (sections, paragraphs), within a token budget, with overlap."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

from engram.core.knowledge_models import ChunkDraft, ParsedDocument

#: Bumped whenever chunking changes, so that re-ingesting re-chunks files whose bytes did not change.
CHUNKER_VERSION = "1"

_WORD = re.compile(r"\w+|[^\w\s]")
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")
_SPACES = re.compile(r"[ \t\r\f\v]+")


def estimate_tokens(text: str) -> int:
    """Approximate count of model tokens: words and punctuation marks, long words counting as several pieces.

    Word-piece tokenizers split rare and long words; counting one token per 8 characters of a word keeps the
    estimate at or above the real count for English prose, so a chunk within budget is rarely truncated.
    """
    return sum(max(1, math.ceil(len(w) / 8)) for w in _WORD.findall(text))


@dataclass(frozen=True)
class _Piece:
    text: str
    tokens: int
    paragraph: int
    page: int | None


def _sections(document: ParsedDocument) -> Iterator[tuple[list[str], list[tuple[str, int | None]]]]:
    """(heading path, paragraphs) for each run of text under the same headings, in reading order."""
    path: list[tuple[int, str]] = []
    paragraphs: list[tuple[str, int | None]] = []
    for block in document.blocks:
        text = _SPACES.sub(" ", block.text).strip()
        if not text:
            continue
        if block.is_heading:
            if paragraphs:
                yield [h for _, h in path], paragraphs
                paragraphs = []
            path = [(level, h) for level, h in path if level < block.heading_level]
            path.append((block.heading_level, text))
        else:
            paragraphs.append((text, block.page))
    if paragraphs:
        yield [h for _, h in path], paragraphs


def _split_long(text: str, budget: int) -> list[str]:
    """Split text over budget at sentence ends, and sentences still over budget into runs of words."""
    out: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        if estimate_tokens(sentence) <= budget:
            out.append(sentence)
            continue
        words, run, used = sentence.split(), list[str](), 0
        for word in words:
            cost = estimate_tokens(word)
            if run and used + cost > budget:
                out.append(" ".join(run))
                run, used = [], 0
            run.append(word)
            used += cost
        if run:
            out.append(" ".join(run))
    return [s for s in out if s.strip()]


class _Packer:
    """Packs one section's pieces into chunks, carrying an overlap from each chunk into the next."""

    def __init__(self, heading_path: list[str], budget: int, overlap: int, drafts: list[ChunkDraft]) -> None:
        self.heading_path = heading_path
        self.budget = budget
        self.overlap = overlap
        self.drafts = drafts
        self.current: list[_Piece] = []
        self.fresh = False  # whether `current` holds anything not already emitted

    def used(self) -> int:
        return sum(p.tokens for p in self.current)

    def emit(self) -> None:
        parts: list[str] = []
        for index, piece in enumerate(self.current):
            previous = self.current[index - 1] if index else None
            joiner = "" if previous is None else (" " if piece.paragraph == previous.paragraph else "\n\n")
            parts.append(joiner + piece.text)
        self.drafts.append(ChunkDraft(list(self.heading_path), len(self.drafts), "".join(parts), self.current[0].page))
        tail: list[_Piece] = []
        used = 0
        for piece in reversed(self.current):
            if used + piece.tokens > self.overlap:
                break
            tail.insert(0, piece)
            used += piece.tokens
        self.current, self.fresh = tail, False

    def add(self, piece: _Piece) -> None:
        while self.current and self.used() + piece.tokens > self.budget:
            if self.fresh:
                self.emit()
            else:
                self.current.pop(0)  # the overlap does not fit beside this piece: drop its oldest sentence
        self.current.append(piece)
        self.fresh = True

    def paragraph(self, number: int, text: str, page: int | None) -> None:
        tokens = estimate_tokens(text)
        if tokens <= self.budget:
            if self.fresh and self.used() + tokens > self.budget:
                self.emit()  # close at the paragraph boundary rather than mid-paragraph
            self.add(_Piece(text, tokens, number, page))
            return
        for part in _split_long(text, self.budget):
            self.add(_Piece(part, estimate_tokens(part), number, page))

    def finish(self) -> None:
        if self.fresh:
            self.emit()


def chunk_document(document: ParsedDocument, budget: int, overlap: int) -> list[ChunkDraft]:
    """Cut `document` into chunks of at most `budget` estimated tokens that never cross a heading.

    Paragraphs are kept whole when they fit; a chunk closes before a paragraph that would overflow it, and
    a paragraph larger than the budget is cut at sentence ends. Each chunk after the first of a section repeats
    the previous chunk's last sentences, up to `overlap` tokens, so a passage cut in two is still found whole.
    """
    if budget < 1 or not 0 <= overlap < budget:
        raise ValueError("need budget >= 1 and 0 <= overlap < budget")
    drafts: list[ChunkDraft] = []
    for heading_path, paragraphs in _sections(document):
        packer = _Packer(heading_path, budget, overlap, drafts)
        for number, (text, page) in enumerate(paragraphs):
            packer.paragraph(number, text, page)
        packer.finish()
    return drafts
