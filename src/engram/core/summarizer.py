"""Extractive session summaries: the sentences that best cover older turns, chosen with embeddings, no LLM."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engram.core.ports import Embedder

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
#: Relevance against redundancy in maximal-marginal-relevance selection; 1.0 would ignore redundancy.
_MMR_LAMBDA = 0.7
#: Bounds the embedding work for very long sessions.
_MAX_SENTENCES = 2000
#: Shorter sentences ("Thanks.", "Sure.") carry no content worth a place in a summary.
_MIN_WORDS = 4


@dataclass(frozen=True)
class _Sentence:
    position: int
    speaker: str
    text: str


def _split(content: str) -> list[str]:
    return [part.strip() for part in _SENTENCE_END.split(content) if part and part.strip()]


def extractive_summary(turns: Sequence[tuple[str, str]], embedder: Embedder, max_chars: int) -> str:
    """Summarise `(speaker, content)` turns by picking central, non-redundant sentences within `max_chars`.

    Sentences are scored by similarity to the centroid of all sentences (what the turns are mostly about),
    chosen greedily with maximal marginal relevance so the summary covers several topics, then put back in
    their original order so the summary reads chronologically.
    """
    sentences: list[_Sentence] = []
    seen: set[str] = set()
    for speaker, content in turns:
        for text in _split(content):
            key = text.casefold()
            if key in seen:
                continue
            seen.add(key)
            sentences.append(_Sentence(len(sentences), speaker, text))
    substantive = [s for s in sentences if len(s.text.split()) >= _MIN_WORDS]
    sentences = (substantive or sentences)[-_MAX_SENTENCES:]
    if not sentences:
        return ""

    vectors = embedder.embed([s.text for s in sentences])
    centroid = vectors.mean(axis=0)
    norm = float(np.linalg.norm(centroid))
    relevance = vectors @ (centroid / norm) if norm > 0 else np.zeros(len(sentences), dtype=np.float32)

    chosen: list[int] = []
    used = 0
    candidates = set(range(len(sentences)))
    max_similarity = np.full(len(sentences), -1.0, dtype=np.float32)
    while candidates:
        redundancy = np.where(max_similarity > -1.0, max_similarity, 0.0)
        scores = _MMR_LAMBDA * relevance - (1 - _MMR_LAMBDA) * redundancy
        best = max(candidates, key=lambda i: float(scores[i]))
        candidates.discard(best)
        line = _line(sentences[best])
        cost = len(line) + (1 if chosen else 0)
        if used + cost > max_chars:
            continue
        chosen.append(best)
        used += cost
        max_similarity = np.maximum(max_similarity, vectors @ vectors[best])

    if not chosen:
        # Every sentence is longer than the budget: keep the most central one, cut to fit.
        best = int(np.argmax(relevance))
        return _line(sentences[best])[: max(1, max_chars - 1)] + "…"
    return "\n".join(_line(sentences[i]) for i in sorted(chosen))


def _line(sentence: _Sentence) -> str:
    return f"{sentence.speaker}: {sentence.text}" if sentence.speaker else sentence.text
