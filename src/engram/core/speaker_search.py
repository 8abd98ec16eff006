"""Entity-centred retrieval: a gathering question about a named person also searches that person's own turns.

Issue #18: LoCoMo's gathering questions ("What activities does Melanie partake in?") miss most of their evidence
because the evidence shares no word with the question ("I'm off to go swimming with the kids") and ranks past 30
in both the keyword and the vector list, while the name matches nearly every turn (the speaker is in each turn's
index text). Here the question is embedded again without the name, so that its vector is about "activities", not
"Melanie", and the person's own turns (`metadata.speaker`) are ranked by that vector alone; the best of them are
then given places in the top ten.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from engram.core.models import MemoryHit
from engram.core.ports import Candidate
from engram.core.session_spread import ahead
from engram.core.speaker_links import speaker_of

#: How many of the best vector matches of the name-free question are looked through for the person's turns: about
#: half of a two-person conversation's turns are each speaker's, so this leaves enough of them after the filter.
SEARCH_DEPTH = 200
#: The places of the top ten the person's best turns may take (its last ones), and how many of them are offered.
SLOTS = 3
#: The top ten, which the slots are part of.
WINDOW = 10


def without_names(question: str, names: Iterable[str]) -> str:
    """`question` with each of `names` (and its possessive "'s") removed, so that its vector is about the rest."""
    for name in names:
        question = re.sub(rf"\b{re.escape(name)}(?:'s|s')?\b", " ", question, flags=re.IGNORECASE)
    return " ".join(question.split())


def their_turns(found: Sequence[Candidate], names: set[str], limit: int) -> list[Candidate]:
    """The first `limit` of `found` (best first) said by one of `names`."""
    return [c for c in found if (speaker_of(c.memory) or "").casefold() in names][:limit]


def with_their_turns(
    hits: Sequence[MemoryHit],
    theirs: Sequence[str],
    slots: int = SLOTS,
    closeness: Mapping[str, float] | None = None,
) -> list[MemoryHit]:
    """`hits` (best first) with the best of `theirs` (memory ids, best first) in the last `slots` places of the top ten.

    Only those not already among the first `WINDOW - slots` hits move; every other hit keeps its order after them.
    With `closeness` (memory id: similarity to the question without the name), a place goes to whichever is closer,
    the hit that holds it or one of `theirs`.
    """
    ranked = list(hits)
    if slots <= 0 or not theirs:
        return ranked
    kept = ranked[: WINDOW - slots]
    present = {h.memory.id for h in kept}
    by_id = {h.memory.id: h for h in ranked}
    offered = [by_id[i] for i in theirs if i in by_id and i not in present][:slots]
    if not offered:
        return ranked
    if closeness is not None:
        pool = {h.memory.id: h for h in [*ranked[WINDOW - slots : WINDOW], *offered]}
        offered = sorted(pool.values(), key=lambda h: -closeness.get(h.memory.id, -1.0))[:slots]
    return ahead([*kept, *offered], ranked)
