"""Plain text: decoded as UTF-8 (or Latin-1), split into paragraphs at blank lines."""

from __future__ import annotations

import re

from engram.core.errors import UnreadableDocument
from engram.core.knowledge_models import Block, ParsedDocument

_BLANK_LINES = re.compile(r"\n\s*\n")


def decode_text(data: bytes) -> str:
    """The text of a file: UTF-8 (with or without BOM), else Latin-1; NUL bytes mean it is not text."""
    if b"\x00" in data:
        raise UnreadableDocument("binary data, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Older documents are often Windows-1252/Latin-1; Latin-1 maps every byte, so this never fails.
        return data.decode("latin-1")


def parse_text(text: str) -> ParsedDocument:
    """Paragraphs separated by blank lines; plain text has no title of its own (the file name is used)."""
    blocks = [Block(p.strip()) for p in _BLANK_LINES.split(text.replace("\r\n", "\n")) if p.strip()]
    return ParsedDocument(title=None, blocks=blocks)
