"""Document parsers (adapters): plain text, Markdown, HTML and PDF bytes into a core ParsedDocument."""

from __future__ import annotations

from engram.core.knowledge_models import DocumentFormat, ParsedDocument


def parse_document(data: bytes, fmt: DocumentFormat) -> ParsedDocument:
    """Parse a document's bytes; raises UnreadableDocument (or the parser's own error) when it cannot."""
    if fmt == DocumentFormat.PDF:
        from engram.ingest.pdf import parse_pdf

        return parse_pdf(data)
    from engram.ingest.text import decode_text

    text = decode_text(data)
    if fmt == DocumentFormat.MARKDOWN:
        from engram.ingest.markdown import parse_markdown

        return parse_markdown(text)
    if fmt == DocumentFormat.HTML:
        from engram.ingest.html import parse_html

        return parse_html(text)
    from engram.ingest.text import parse_text

    return parse_text(text)
