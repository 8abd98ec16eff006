"""Pseudo-relevance feedback: a question's keyword search again, widened with the words its best hits share.

A multi-session question ("How many bikes do I own?") matches one session's turns well; the other sessions that
hold part of the answer use the topic's own words ("road bike", "helmet", "repair") more than the question's. The
words that recur in the first hits name that topic, so a second keyword search with them added can reach those
sessions. Measured in README, "Long histories"; off unless `ENGRAM_RECALL_FEEDBACK_TERMS` is set.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from engram.core.models import MemoryHit

#: How many of the first hits lend their words.
FEEDBACK_HITS = 5
_WORD = re.compile(r"[^\W\d_]{4,}")
#: Words too common in conversation to name a topic (the keyword index drops the shorter stop words itself).
_COMMON = frozenset(
    """about after again also always another around because been before being could didn does doing done down
    each even every from going good great have having here into just know like little look made make many maybe
    more most much need never only other over really said same should some something still such sure than that
    thanks thank their them then there these they thing things think this those though through time very want
    well were what when where which while will with would your yours""".split()  # noqa: SIM905
)


def feedback_terms(query: str, hits: Sequence[MemoryHit], count: int) -> list[str]:
    """Up to `count` words that at least two of the first hits use and the query does not, most used first."""
    if count <= 0:
        return []
    asked = {w.lower() for w in _WORD.findall(query)}
    used_by: Counter[str] = Counter()
    for hit in hits[:FEEDBACK_HITS]:
        used_by.update({w.lower() for w in _WORD.findall(hit.memory.content)} - asked - _COMMON)
    shared = [(n, w) for w, n in used_by.items() if n >= 2]
    shared.sort(key=lambda item: (-item[0], item[1]))
    return [w for _, w in shared[:count]]
