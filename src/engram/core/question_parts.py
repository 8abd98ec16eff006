"""Query decomposition without a model: a question naming two or more things retrieves for each, and interleaves.

"Which group did I join first, 'Page Turners' or 'Marketing Professionals'?" may match the turns about one of the two
far better than the other. Here a question that quotes two or more titles, or ends in a choice ("..., A or B?"), is
split into those parts; each part gets its own keyword search (no embedding), ranked with the question's vector
candidates as the whole question is, and the best hits of each part are interleaved into the top of the whole
question's ranking. Off by default (`part_heads` 0): on LongMemEval's seven such questions and LoCoMo's three it moved
evidence within the top ten only (issue #18, README).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from engram.core.models import MemoryHit
from engram.core.session_spread import ahead

#: A quoted title or phrase: in straight or curly quotes, not an apostrophe inside a word ("friend's").
_QUOTES = "'\"\u2018\u2019\u201c\u201d"  # straight, and curly single and double
_QUOTED = re.compile(rf"(?<![\w'\u2019])[{_QUOTES}]([^{_QUOTES}]{{2,120}}?)[{_QUOTES}](?![\w'\u2019])")
#: A choice at the end of a question: ", A or B?" (the clause after the last comma).
_CHOICE = re.compile(r",\s*([^,?]{2,120}?)\s+or\s+([^,?]{2,120}?)\s*\?*\s*$", re.IGNORECASE)
#: Choices that name no things to look for.
_NOT_THINGS = frozenset({"yes", "no", "not"})
#: At most this many parts are searched (a question listing many things gets the first ones).
MAX_PARTS = 4


def question_parts(question: str) -> list[str]:
    """The things `question` asks about side by side (two quoted titles, or the options of a choice); [] if fewer."""
    quoted = [part.strip() for part in _QUOTED.findall(question) if part.strip()]
    if len(quoted) >= 2:
        return quoted[:MAX_PARTS]
    choice = _CHOICE.search(question)
    if choice is None:
        return []
    parts = [choice.group(1).strip(), choice.group(2).strip()]
    if any(part.casefold() in _NOT_THINGS for part in parts):
        return []
    return parts


def interleaved(whole: Sequence[MemoryHit], parts: Sequence[Sequence[MemoryHit]], heads: int) -> list[MemoryHit]:
    """`whole` (best first) with the best `heads` hits of each part's ranking interleaved at its top.

    The order is the whole question's best hit, then each part's best in turn, then each part's second, and so on;
    every other hit follows in its own order. A moved hit's score is raised just above the one after it, so the
    list stays in score order. `heads` 0 or fewer than two parts leave the ranking alone.
    """
    ranked = list(whole)
    if heads <= 0 or len(parts) < 2 or not ranked:
        return ranked
    by_id = {hit.memory.id: hit for hit in ranked}
    first: list[MemoryHit] = [ranked[0]]
    taken = {ranked[0].memory.id}
    for _ in range(heads):
        for part in parts:
            waiting = next((hit for hit in part if hit.memory.id not in taken), None)
            if waiting is not None:
                # As the whole ranking scored it, when it has it.
                chosen = by_id.get(waiting.memory.id, waiting)
                taken.add(chosen.memory.id)
                first.append(chosen)
    return ahead(first, [*first, *(hit for hit in ranked if hit.memory.id not in taken)])
