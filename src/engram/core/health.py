"""Which memory tiers were found damaged: recorded where storage reports it, read by recall, stats and health."""

from __future__ import annotations

import threading

from engram.core.errors import TierDamaged


class TierHealth:
    """The damaged tiers of one running server, each with the error that found it (kept until restart).

    Damage is a fact about files, which the server does not repair itself: a tier stays reported until the
    operator has restored it and restarted Engram.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._damaged: dict[str, TierDamaged] = {}

    def record(self, error: TierDamaged) -> None:
        """Note that `error.tier` is damaged (the first report of a tier is kept)."""
        with self._lock:
            self._damaged.setdefault(error.tier, error)

    def damaged(self) -> dict[str, TierDamaged]:
        """The damaged tiers so far, by tier name."""
        with self._lock:
            return dict(self._damaged)
