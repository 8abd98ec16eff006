"""Questions in two parts, without a language model: "... Yellowstone and Yosemite?", "both X and Y", "X or Y".

Each part is searched by keyword on its own as well, so the part the best-matching session does not mention still
brings its own turns: the whole question's search ranks turns naming both parts, or the more common one, first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from engram.core.ports import Candidate

#: Where a question divides: a conjunction or a comparison between two named things.
_JOINS = re.compile(r"\s*(?:,\s*)?\b(?:and|or|as well as|versus|vs\.?|compared (?:to|with)|than)\b\s*", re.IGNORECASE)
_WORD = re.compile(r"[^\W\d_]{3,}")
#: Question words and fillers that cannot make a part of their own.
_FILLER = frozenset(
    """the what which when where who whom whose how many much did does have has had was were are and both
    for with you your yours mine our ours his her hers their them they she him its this that these those
    there then than from into about all any some each ever also just can could would should will shall
    compare difference between""".split()  # noqa: SIM905
)
#: At most this many parts are searched (besides the whole question).
MAX_PARTS = 3


def _content_words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)} - _FILLER


def query_parts(question: str) -> list[str]:
    """The parts of a question that joins two or more things, each with a word of its own; [] for a simple one."""
    pieces = [p.strip(" ?.!,;") for p in _JOINS.split(question)]
    parts = [p for p in pieces if _content_words(p)]
    if len(parts) < 2:
        return []
    return parts[:MAX_PARTS]


def merged_parts(whole: Sequence[Candidate], parts: Sequence[Sequence[Candidate]]) -> list[Candidate]:
    """One keyword list from the whole question's and each part's: every memory at its best normalised score.

    Each list is scaled to its own best score first (BM25 scores of different queries are not comparable), so the
    best match of a part ranks with the best match of the whole question.
    """
    best: dict[str, Candidate] = {}
    for found in (whole, *parts):
        top = max((c.score for c in found), default=0.0)
        if top <= 0:
            continue
        for candidate in found:
            scaled = candidate.score / top
            held = best.get(candidate.memory.id)
            if held is None or scaled > held.score:
                best[candidate.memory.id] = Candidate(
                    memory=candidate.memory, score=scaled, vector=candidate.vector, passage=candidate.passage
                )
    return sorted(best.values(), key=lambda c: -c.score)
