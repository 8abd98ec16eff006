"""Offline metadata extraction on write: keyword tags, sentiment, named entities and a zero-shot category.

Importing this package is light; each extractor imports its library when it is built.
"""

from __future__ import annotations

from engram.enrichment.categories import DEFAULT_CATEGORIES
from engram.enrichment.enricher import MetadataEnricher

__all__ = ["DEFAULT_CATEGORIES", "MetadataEnricher"]
