"""HTML parsed with the standard library's html.parser: title, headings and block-level text, no scripts."""

from __future__ import annotations

from html.parser import HTMLParser

from engram.core.knowledge_models import Block, ParsedDocument

_SKIP = {"script", "style", "noscript", "template", "svg", "head"}
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_BLOCKS = {
    "p", "div", "li", "td", "th", "tr", "pre", "blockquote", "section", "article", "main", "header", "footer",
    "aside", "nav", "ul", "ol", "dl", "dt", "dd", "table", "figure", "figcaption", "caption", "br", "hr", "form",
    "body", "address", "details", "summary",
}  # fmt: skip


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.title_parts: list[str] = []
        self._text: list[str] = []
        self._skipping = 0
        self._in_title = False
        self._heading = 0

    def _flush(self) -> None:
        text = " ".join("".join(self._text).split())
        self._text = []
        if text:
            self.blocks.append(Block(text, heading_level=self._heading))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in _SKIP:
            self._skipping += 1
        elif tag in _HEADINGS:
            self._flush()
            self._heading = _HEADINGS[tag]
        elif tag in _BLOCKS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in _SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in _HEADINGS:
            self._flush()
            self._heading = 0
        elif tag in _BLOCKS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title_parts.append(data)
        elif not self._skipping:
            self._text.append(data)


def parse_html(text: str) -> ParsedDocument:
    """Blocks in reading order; the <title> (else the first <h1>) is the title."""
    collector = _Collector()
    collector.feed(text)
    collector.close()
    collector._flush()
    title = " ".join("".join(collector.title_parts).split()) or None
    if title is None:
        title = next((b.text for b in collector.blocks if b.heading_level == 1), None)
    return ParsedDocument(title=title, blocks=collector.blocks)
