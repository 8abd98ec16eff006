"""Long memories as overlapping passages that each fit the embedding model's window, so every part can be found."""

from __future__ import annotations

import re

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
