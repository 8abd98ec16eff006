"""MetadataEnricher: the Enricher port over keyword tags, sentiment, named entities and the zero-shot category."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence

from engram.core.errors import InvalidInput, quoted
from engram.core.ports import Embedder, Enrichment, Vectors
from engram.enrichment.categories import DEFAULT_CATEGORIES, MIN_MARGIN, MIN_SIMILARITY, CategoryClassifier
from engram.enrichment.entities import DATE, PERSON, EntityRecognizer
from engram.enrichment.keywords import KeywordTagger
from engram.enrichment.sentiment import SentimentScorer

MAX_CATEGORY_CHARS = 64
#: Extraction reads this much of each text: the extractors grow faster than linearly with length (measured:
#: 1,000 characters take about 50 ms, 8,000 about 600 ms), and a memory's subject is set out at its start.
MAX_EXTRACTED_CHARS = 2000
MAX_DESCRIPTION_CHARS = 1000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_categories(labels: Mapping[str, str], field: str = "ENGRAM_CATEGORIES") -> dict[str, str]:
    """The label set if every label is 1-64 characters and every description non-blank, else InvalidInput."""
    checked: dict[str, str] = {}
    for label, description in labels.items():
        name = label.strip()
        if not name or len(name) > MAX_CATEGORY_CHARS or _CONTROL.search(name):
            raise InvalidInput(field, f"labels must be 1-{MAX_CATEGORY_CHARS} characters, got {quoted(label)}.")
        if not isinstance(description, str) or not description.strip() or len(description) > MAX_DESCRIPTION_CHARS:
            raise InvalidInput(
                field, f"the description of {quoted(name)} must be 1-{MAX_DESCRIPTION_CHARS} characters of text."
            )
        checked[name] = description.strip()
    return checked


def _head(text: str) -> str:
    """The first MAX_EXTRACTED_CHARS characters of `text`, cut at a space when there is one near the end."""
    if len(text) <= MAX_EXTRACTED_CHARS:
        return text
    head = text[:MAX_EXTRACTED_CHARS]
    space = head.rfind(" ", MAX_EXTRACTED_CHARS - 100)
    return head[:space] if space > 0 else head


class MetadataEnricher:
    """Fills tags (YAKE), sentiment (VADER), entities (rules and gazetteers) and a category (embeddings).

    `seconds` accumulates the time spent in each extractor, for benchmarks.
    """

    def __init__(
        self,
        embedder: Embedder,
        categories: Mapping[str, str] | None = None,
        *,
        min_similarity: float = MIN_SIMILARITY,
        min_margin: float = MIN_MARGIN,
    ) -> None:
        labels = check_categories(DEFAULT_CATEGORIES if categories is None else categories)
        self._tagger = KeywordTagger()
        self._sentiment = SentimentScorer()
        self._entities = EntityRecognizer()
        self._categories = CategoryClassifier(embedder, labels, min_similarity, min_margin)
        self.seconds: dict[str, float] = dict.fromkeys(("tags", "sentiment", "entities", "category"), 0.0)

    def enrich(
        self, texts: Sequence[str], vectors: Vectors, *, tagged: Sequence[bool] | None = None
    ) -> list[Enrichment]:
        """One Enrichment per text; the category comes from `vectors`, the texts' embeddings.

        Keyword tags (YAKE) are extracted only for the texts `tagged` marks (default: all of them).
        """
        clock = time.perf_counter
        started = clock()
        categories = self._categories.categories(vectors)
        self.seconds["category"] += clock() - started
        results: list[Enrichment] = []
        wanted = [True] * len(texts) if tagged is None else list(tagged)
        for full_text, category, tag in zip(texts, categories, wanted, strict=True):
            text = _head(full_text)
            started = clock()
            entities = self._entities.entities(text)
            found = clock()
            sentiment, score = self._sentiment.score(text)
            scored = clock()
            # People and dates are entities, not topics; places and products may be both.
            names = {w for e in entities if e.label in {PERSON, DATE} for w in e.text.lower().split()}
            tags = self._tagger.tags(text, exclude=names) if tag else []
            self.seconds["entities"] += found - started
            self.seconds["sentiment"] += scored - found
            self.seconds["tags"] += clock() - scored
            results.append(
                Enrichment(
                    tags=tags,
                    sentiment=sentiment,
                    sentiment_score=score,
                    entities=[e.text for e in entities],
                    entity_types={e.text: e.label for e in entities},
                    category=category,
                )
            )
        return results
