"""Sentiment: VADER's lexicon-and-rules polarity of a text, mapped to negative / neutral / positive."""

from __future__ import annotations

from typing import Any

from engram.core.models import Sentiment

#: VADER's compound score is in -1..1; its authors suggest +-0.05 as the neutral band. Support messages mix
#: courtesy words ("please", "thanks") into plain requests, so a wider band keeps those neutral.
POSITIVE_AT = 0.35
NEGATIVE_AT = -0.1


class SentimentScorer:
    """Scores text with vaderSentiment (lexicon shipped in the package, no download)."""

    def __init__(self, positive_at: float = POSITIVE_AT, negative_at: float = NEGATIVE_AT) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.positive_at, self.negative_at = positive_at, negative_at
        self._analyzer: Any = SentimentIntensityAnalyzer()

    def score(self, text: str) -> tuple[Sentiment, float]:
        """The sentiment class and VADER's compound score (-1..1)."""
        compound = float(self._analyzer.polarity_scores(text)["compound"])
        if compound >= self.positive_at:
            return Sentiment.POSITIVE, compound
        if compound <= self.negative_at:
            return Sentiment.NEGATIVE, compound
        return Sentiment.NEUTRAL, compound
