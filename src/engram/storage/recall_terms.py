"""The terms a text is searched by, as LanceDB's full-text index makes them, for the in-memory recall index.

The memories table's index is built with `FTS(stem=True, remove_stop_words=True, ascii_folding=True)`: split on
anything but letters and digits, drop tokens of 40 bytes or more, lower-case, stem (Snowball English), drop stop
words (checked after stemming, as LanceDB does), fold accents. Checked word by word against LanceDB in
tests/test_recall_index.py, so both paths match the same memories.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import Stemmer

_TOKEN = re.compile(r"[^\W_]+")
_MAX_TOKEN_BYTES = 40
# LanceDB's English stop words (Snowball's list without the contractions, which never survive the split, and
# without "cannot", "could", "ought" and "would", which LanceDB keeps).
_STOP_WORDS = frozenset(
    """i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers
    herself it its itself they them their theirs themselves what which who whom this that these those am is are
    was were be been being have has had having do does did doing should a an the and but if or because as until
    while of at by for with about against between into through during before after above below to from up down
    in out on off over under again further then once here there when where why how all any both each few more
    most other some such no nor not only own same so than too very""".split()  # noqa: SIM905
)
_stemmer = Stemmer.Stemmer("english")


@lru_cache(maxsize=65_536)
def _term(token: str) -> str | None:
    """One lower-cased token as the index keeps it, or None when it is a stop word."""
    stem = _stemmer.stemWord(token)
    if stem in _STOP_WORDS:
        return None
    folded = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    return folded or stem


def terms(text: str) -> list[str]:
    """The index terms of `text`, in order, repeats kept (their count is the term frequency)."""
    found: list[str] = []
    for token in _TOKEN.findall(text):
        if len(token.encode()) >= _MAX_TOKEN_BYTES:
            continue
        term = _term(token.lower())
        if term is not None:
            found.append(term)
    return found
