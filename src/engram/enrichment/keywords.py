"""Keyword tags: YAKE keyphrases of a text, normalised to a few short lowercase labels."""

from __future__ import annotations

import re
import threading
from collections.abc import Collection
from typing import Any

from engram.core.limits import MAX_TAG_CHARS

#: Tags extracted per memory; a handful keeps them useful as filters rather than a bag of words.
MAX_EXTRACTED_TAGS = 4
MAX_TAG_WORDS = 2
_WORD = re.compile(r"[a-z0-9]+(?:['&+.][a-z0-9]+)*")
_PLACEHOLDER = re.compile(r"\[[A-Z_]+\]")  # redaction placeholders such as [EMAIL] are not topics


class KeywordTagger:
    """Picks the most salient keyphrases of a text with YAKE (statistical, single-document, no model).

    YAKE is imported and built at the first text to tag: conversation turns are never tagged, and importing it was
    most of the extractors' start-up, paid by a session's first turn (#15).
    """

    def __init__(self, max_tags: int = MAX_EXTRACTED_TAGS) -> None:
        self.max_tags = max_tags
        self._built: Any = None
        self._lock = threading.Lock()

    def _extractor(self) -> Any:
        with self._lock:
            if self._built is None:
                import yake

                # Asked for more candidates than kept: filtering below drops some.
                self._built = yake.KeywordExtractor(lan="en", n=MAX_TAG_WORDS, top=self.max_tags * 3, dedup_lim=0.7)
            return self._built

    def tags(self, text: str, exclude: Collection[str] = ()) -> list[str]:
        """Up to `max_tags` labels such as `refund` or `billing-address`, most salient first.

        Words in `exclude` (lower case; e.g. the names and dates the text mentions) never appear in tags.
        """
        text = _PLACEHOLDER.sub(" ", text)
        if not text.strip():
            return []
        found: list[str] = []
        for phrase, _score in self._extractor().extract_keywords(text):
            words = _WORD.findall(phrase.lower())
            if not words or all(w.isdigit() or len(w) < 3 for w in words) or any(w in exclude for w in words):
                continue
            tag = "-".join(words)[:MAX_TAG_CHARS]
            # A single word already inside a kept phrase (or a phrase containing a kept word) adds nothing new.
            if any(tag in kept.split("-") or set(kept.split("-")) <= set(words) for kept in found):
                continue
            found.append(tag)
            if len(found) == self.max_tags:
                break
        return found
