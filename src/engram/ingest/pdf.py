"""PDF parsed with pypdf: the text of each page, with the document outline (bookmarks) as headings."""

from __future__ import annotations

import io
import logging
import re
from typing import Any

from pypdf import PdfReader

from engram.core.errors import UnreadableDocument
from engram.core.knowledge_models import Block, ParsedDocument

_BLANK_LINES = re.compile(r"\n\s*\n")
# pypdf logs every repair it attempts on a damaged file; the ingest report already names the files it skipped.
logging.getLogger("pypdf").setLevel(logging.ERROR)


def _outline(reader: PdfReader) -> dict[int, list[tuple[int, str]]]:
    """Bookmarks by 0-based page: (level, title), in order; an unreadable outline is simply ignored."""
    by_page: dict[int, list[tuple[int, str]]] = {}

    def walk(items: list[Any], level: int) -> None:
        for item in items:
            if isinstance(item, list):
                walk(item, level + 1)
                continue
            try:
                page = reader.get_destination_page_number(item)
            except Exception:  # a broken bookmark must not fail the document
                continue
            title = " ".join(str(getattr(item, "title", "") or "").split())
            if page is not None and page >= 0 and title:
                by_page.setdefault(page, []).append((min(level, 6), title))

    try:
        walk(list(reader.outline), 1)
    except Exception:
        return {}
    return by_page


def parse_pdf(data: bytes) -> ParsedDocument:
    """Each page's paragraphs (page numbers from 1), headed by the bookmarks that point at that page."""
    reader = PdfReader(io.BytesIO(data), strict=False)
    if reader.is_encrypted and not reader.decrypt(""):
        raise UnreadableDocument("encrypted PDF (a password is needed)")
    outline = _outline(reader)
    blocks: list[Block] = []
    for number, page in enumerate(reader.pages):
        for level, title in outline.get(number, []):
            blocks.append(Block(title, heading_level=level, page=number + 1))
        text = page.extract_text() or ""
        for paragraph in _BLANK_LINES.split(text):
            if paragraph.strip():
                blocks.append(Block(paragraph.strip(), page=number + 1))
    if not reader.pages:
        raise UnreadableDocument("the PDF has no pages")
    metadata = reader.metadata
    title = str(metadata.title).strip() if metadata is not None and metadata.title else ""
    return ParsedDocument(title=title or None, blocks=blocks)
