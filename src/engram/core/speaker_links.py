"""What a named person said: a question gathering several things about someone lifts that person's own turns.

A turn is linked to the person who said it (`metadata.speaker`), and what a person says in the first person is about
them. A question that gathers ("What activities does Melanie partake in?", "Where has Melanie camped?") needs those
statements from many sessions, while the words of the question also match the other speaker's replies ("Thanks,
Melanie! ..."), which fill the top of the list from one session. Only such gathering questions are lifted: on LoCoMo,
lifting the named speaker's turns for every question lowered the adversarial category, whose questions name the
wrong person on purpose (measured on conversations 1-3; README, "Retrieval quality").
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from engram.core.models import MemoryHit

#: Added to the score of a turn said by the person a gathering question names.
SPEAKER_LIFT = 0.3
#: Questions that gather several things: "what activities / events / books ...", "where has ...", "how many".
_GATHERING = re.compile(
    r"\b(?:what|which)\s+(?:\w+\s+)?(?:activities|events|books|things|kinds|types|ways|places|hobbies|items"
    r"|instruments|pets|sports|games|countries|cities|artists|bands|songs|movies|shows)\b"
    r"|\bwhere\s+has\b|\bwhat\s+\w+\s+has\b|\bhow\s+many\b",
    re.IGNORECASE,
)
#: Roles rather than names: a question about "the user" is about every turn, not a person's.
_ROLES = frozenset({"user", "assistant", "system", "summary"})


def _speaker(hit: MemoryHit) -> str | None:
    value = hit.memory.metadata.get("speaker")
    if not isinstance(value, str) or not value.strip() or value.strip().casefold() in _ROLES:
        return None
    return value.strip()


def named_speakers(question: str, hits: Sequence[MemoryHit]) -> set[str]:
    """The speakers of `hits` a gathering `question` names (as whole words, any case); none for other questions."""
    if _GATHERING.search(question) is None:
        return set()
    words = _padded(question)
    speakers = {s.casefold() for h in hits if (s := _speaker(h)) is not None}
    return {s for s in speakers if _padded(s) in words}


def _padded(text: str) -> str:
    """`text` as case-folded words joined by single spaces, padded, for whole-word matching."""
    return " " + " ".join(re.findall(r"\w+", text.casefold())) + " "


def lift_named_speakers(hits: Sequence[MemoryHit], question: str, lift: float = SPEAKER_LIFT) -> list[MemoryHit]:
    """`hits` re-ranked with `lift` added to the turns said by a person the gathering `question` names."""
    named = named_speakers(question, hits) if lift else set()
    if not named:
        return list(hits)
    lifted = [_with_lift(h, lift) if (_speaker(h) or "").casefold() in named else h for h in hits]
    return sorted(lifted, key=lambda h: -h.score)


def _with_lift(hit: MemoryHit, lift: float) -> MemoryHit:
    """`hit` with `lift` added to its score, shown as part of its graph boost (the link from turn to speaker)."""
    return hit.rescored(round(hit.score + lift, 6), graph_boost=round(hit.scores.graph_boost + lift, 6))
