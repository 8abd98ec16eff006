"""Zero-shot category: the label whose description embeds closest to the memory, when it is clearly closest."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from engram.core.ports import Embedder, Vectors

#: Labels for an assistant's memory of its users and of support conversations; each description is what gets
#: embedded, so it is written the way such messages read. Replace or extend them with ENGRAM_CATEGORIES.
DEFAULT_CATEGORIES: dict[str, str] = {
    "preference": "how I like things done: I prefer email, I would rather, I like it better, I don't like, "
    "my favourite",
    "personal_info": "facts about my life: I live in a city, I am married to my wife or husband, my children, "
    "my pets, my job",
    "billing": "billing and payments: an invoice, a charge, a refund, the price, VAT, a subscription fee, "
    "a credit card",
    "technical_issue": "a technical problem: the app crashes, an error message, it does not work, a bug, fails to load",
    "account": "my account: login, password reset, sign in, username, email address, locked out, delete account",
    "order_delivery": "an order and its delivery: shipping, parcel, package, tracking number, arrived late, "
    "return an item",
    "feedback": "feedback on the service: thank you, great help, very happy, terrible support, a complaint",
    "plan_task": "a task to do later: remind me to, schedule it, add to my to-do list, the deadline, "
    "book an appointment",
}

#: Cosine similarity all-MiniLM-L6-v2 gives a message and the description of its topic (measured on the tests'
#: support messages: about 0.22-0.6 when on topic, mostly below 0.2 when not).
MIN_SIMILARITY = 0.2
#: How far ahead of the runner-up the best label must be; closer than this the text is ambiguous.
MIN_MARGIN = 0.03


class CategoryClassifier:
    """Embeds the label descriptions once, then labels each vector by cosine similarity."""

    def __init__(
        self,
        embedder: Embedder,
        labels: Mapping[str, str],
        min_similarity: float = MIN_SIMILARITY,
        min_margin: float = MIN_MARGIN,
    ) -> None:
        self.labels = list(labels)
        self.min_similarity, self.min_margin = min_similarity, min_margin
        self._prototypes: Vectors = (
            embedder.embed([labels[label] for label in self.labels])
            if self.labels
            else np.zeros((0, embedder.dimensions), dtype=np.float32)
        )

    def categories(self, vectors: Vectors) -> list[str | None]:
        """The best label per vector, or None when it is not close enough or not clearly ahead."""
        if not self.labels or len(vectors) == 0:
            return [None] * len(vectors)
        similarity = vectors @ self._prototypes.T
        chosen: list[str | None] = []
        for row in similarity:
            order = np.argsort(row)[::-1]
            best = float(row[order[0]])
            runner_up = float(row[order[1]]) if len(order) > 1 else -1.0
            clear = best >= self.min_similarity and best - runner_up >= self.min_margin
            chosen.append(self.labels[int(order[0])] if clear else None)
        return chosen
