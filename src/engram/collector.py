"""Garbage-collector settings for a long-running server: no collection pass on every request."""

from __future__ import annotations

import gc

#: Net new container objects between two collections of the young generation (CPython's default: 700). A recall
#: holds well over 700 short-lived objects at its peak (candidates, hits, their scores), so at the default about
#: one young collection (and every tenth, a middle one; now and then a full one over the whole heap) ran per
#: recall, each finding next to nothing: reference counting frees them. Measured over stdio at 10,000 memories,
#: those passes cost ~0.6 ms of CPU per recall (0.25 young, 0.03 middle, 0.33 full); at this threshold 300
#: recalls ran none. What cycles there are wait a little longer, a few thousand objects at most.
YOUNG_THRESHOLD = 10_000


def tune_collector() -> bool:
    """Raise the young generation's threshold to YOUNG_THRESHOLD; return whether automatic collection is on.

    A higher threshold chosen by the host is kept, and a disabled collector (threshold 0) stays disabled.
    """
    young, middle, old = gc.get_threshold()
    if young == 0:
        return False
    if young < YOUNG_THRESHOLD:
        gc.set_threshold(YOUNG_THRESHOLD, middle, old)
    return True
