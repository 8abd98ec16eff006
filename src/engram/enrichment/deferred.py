"""An enricher built when first needed, so building it stays off the path to a server's first answer."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from engram.core.ports import Enricher, Enrichment, Vectors


class DeferredEnricher:
    """Builds the wrapped Enricher on `warm_up()` or on the first `enrich()`, whichever comes first.

    Building the extractors imports YAKE (and networkx), reads place names and embeds the category descriptions
    (about 0.3 s on a quiet 2-core machine). A server never warms it up: recall does not need it, so the first write
    builds it and a server's first answer does not pay for it.
    """

    def __init__(self, build: Callable[[], Enricher]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._enricher: Enricher | None = None

    def warm_up(self) -> None:
        """Build the enricher now (a no-op once built)."""
        self._built()

    def enrich(
        self, texts: Sequence[str], vectors: Vectors, *, tagged: Sequence[bool] | None = None
    ) -> list[Enrichment]:
        """Extract metadata with the wrapped enricher, building it first if needed."""
        return self._built().enrich(texts, vectors, tagged=tagged)

    def _built(self) -> Enricher:
        with self._lock:
            if self._enricher is None:
                self._enricher = self._build()
            return self._enricher
