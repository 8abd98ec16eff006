"""Long memories as overlapping passages that each fit the embedding model's window, so every part can be found."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from functools import partial

from engram.core.context import MemoryContext
from engram.core.identity import UserKey
from engram.core.indexing import index_text

#: Words per passage. all-MiniLM-L6-v2 reads 256 word pieces; English prose averages ~1.3 pieces a word, and the
#: index prefix (date, speaker) takes ~10, so 120 words stay inside the window with room for long words.
PASSAGE_WORDS = 120
#: Words a passage shares with the one before, so a detail cut at a boundary is whole in one of the two.
OVERLAP_WORDS = 30

_WORD = re.compile(r"\S+")


def passages(text: str, *, words: int = PASSAGE_WORDS, overlap: int = OVERLAP_WORDS) -> list[str]:
    """The passages to embed for a memory's text beyond its first window; none when it fits one window.

    The memory's own vector covers the first window (the model truncates the rest), so passages start where that
    window's overlap begins and run to the end, each `words` long and sharing `overlap` words with the previous.
    """
    spans = [m.span() for m in _WORD.finditer(text)]
    if len(spans) <= words:
        return []
    step = words - overlap
    found: list[str] = []
    for start in range(step, len(spans), step):
        end = min(start + words, len(spans))
        found.append(text[spans[start][0] : spans[end - 1][1]])
        if end == len(spans):
            break
    return found


def indexed_passages(content: str, when: datetime, who: str | None) -> tuple[str, ...]:
    """A long memory's later windows, each indexed with the memory's date and speaker like the memory itself."""
    return tuple(index_text(window, when=when, speaker=who) for window in passages(content))


async def store_passages(ctx: MemoryContext, key: UserKey, memory_id: str, windows: Sequence[str]) -> None:
    """Embed a long memory's later windows and store them as its passages."""
    vectors = await ctx.run(partial(ctx.embedder.embed, list(windows)))
    await ctx.run(partial(ctx.long_term.add_passages, key, memory_id, list(windows), vectors))
