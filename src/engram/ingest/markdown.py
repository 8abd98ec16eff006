"""Markdown (CommonMark plus tables) parsed with markdown-it-py: headings, paragraphs, list items, code."""

from __future__ import annotations

import re

from markdown_it import MarkdownIt
from markdown_it.token import Token

from engram.core.knowledge_models import Block, ParsedDocument

_FRONT_MATTER = re.compile(r"\A---\s*\n.*?\n---\s*\n", re.DOTALL)
_parser = MarkdownIt("commonmark").enable("table")


def _inline_text(token: Token) -> str:
    """The visible text of an inline token: markup dropped, link and image text kept."""
    parts: list[str] = []
    for child in token.children or []:
        if child.type in {"text", "code_inline"}:
            parts.append(child.content)
        elif child.type in {"softbreak", "hardbreak"}:
            parts.append(" ")
        elif child.type == "image":
            parts.append(_inline_text(child))
    return "".join(parts).strip()


def parse_markdown(text: str) -> ParsedDocument:
    """Blocks in reading order; the first level-1 heading is the title."""
    tokens = _parser.parse(_FRONT_MATTER.sub("", text))
    blocks: list[Block] = []
    title: str | None = None
    heading_level = 0
    row: list[str] = []
    for token in tokens:
        if token.type == "heading_open":
            heading_level = int(token.tag[1:])
        elif token.type == "heading_close":
            heading_level = 0
        elif token.type in {"fence", "code_block"}:
            blocks.append(Block(token.content.strip()))
        elif token.type == "tr_open":
            row = []
        elif token.type == "tr_close":
            blocks.append(Block(" | ".join(row)))
        elif token.type == "inline":
            content = _inline_text(token)
            if not content:
                continue
            if heading_level:
                if heading_level == 1 and title is None:
                    title = content
                blocks.append(Block(content, heading_level=heading_level))
            elif token.level > 0 and _in_table_cell(tokens, token):
                row.append(content)
            else:
                blocks.append(Block(content))
    return ParsedDocument(title=title, blocks=blocks)


def _in_table_cell(tokens: list[Token], inline: Token) -> bool:
    index = tokens.index(inline)
    return index > 0 and tokens[index - 1].type in {"th_open", "td_open"}
