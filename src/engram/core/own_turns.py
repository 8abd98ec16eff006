"""The user's own words first: a question about the user ranks the user's turns above the assistant's replies.

Measured on LongMemEval (issue #18): 27 of the 28 evidence turns of the development sample are the user's own
turns ("I have 12 rare figurines"), while the assistant's replies took 84 of the 150 top-ten slots. A reply is
indexed with the turn it answers quoted and is long and on topic, so it matches a question about the user as well
as the user's statement does, and a session's replies fill the top. When the question is about the user ("How many
plants did I buy?") and not about what the assistant said ("What did you recommend ...?"), each assistant turn's
score is multiplied by `share`. Turns without a role, and histories without assistant turns (LoCoMo's two named
speakers are both users), are left alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from engram.core.models import MemoryHit, Role

#: Below the user's turn it answers (its fused score is about the same), not out of sight: on LongMemEval a reply
#: is sometimes the evidence.
ASSISTANT_SHARE = 0.7
#: The question speaks about the user: a first-person word ("I" in capitals only: "i" is rarely the pronoun).
_ABOUT_ME = re.compile(r"\bI(?:'m|'ve|'d|'ll)?\b|\b(?i:my|me|mine|myself)\b")
#: The question asks what the assistant said or did ("you recommended", "your suggestion"): its replies are the answer.
_ABOUT_YOU = re.compile(r"\b(?:you|your|yours|yourself)\b", re.IGNORECASE)


def about_the_user(question: str) -> bool:
    """Whether `question` speaks about the user (first person) and not about the assistant (second person)."""
    return _ABOUT_ME.search(question) is not None and _ABOUT_YOU.search(question) is None


def own_turns_first(hits: Sequence[MemoryHit], question: str, share: float = ASSISTANT_SHARE) -> list[MemoryHit]:
    """`hits` re-ranked with each assistant turn's score times `share`, for a question `about_the_user`.

    `share` 1.0 (or a question that is not about the user) leaves the ranking alone.
    """
    ranked = list(hits)
    if share >= 1.0 or not ranked or not about_the_user(question):
        return ranked
    if not any(hit.memory.role == Role.ASSISTANT for hit in ranked):
        return ranked
    lowered = [_scaled(hit, share) if hit.memory.role == Role.ASSISTANT else hit for hit in ranked]
    # Stable: hits of equal score keep their order.
    return sorted(lowered, key=lambda h: -h.score)


def _scaled(hit: MemoryHit, share: float) -> MemoryHit:
    """`hit` with its score times `share`."""
    score = round(hit.score * share, 6) if hit.score > 0 else hit.score
    return hit.rescored(score)
