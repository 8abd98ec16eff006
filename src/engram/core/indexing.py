"""What gets embedded and keyword-indexed for a memory: its content plus the context questions ask about."""

from __future__ import annotations

from datetime import datetime

#: The replied-to turn only adds context; a long one would drown the turn's own words.
MAX_CONTEXT_CHARS = 300


def index_text(
    content: str,
    *,
    when: datetime,
    speaker: str | None = None,
    previous: tuple[str | None, str] | None = None,
) -> str:
    """Return `(8 May 2023) Speaker: content (replying to Other: earlier turn)` for indexing, never for display.

    Questions name people and times ("What did Caroline do in May?"), and a short reply ("Yes, twice!") only
    makes sense with the turn it answers; measured on LoCoMo, each of these raises recall (README).
    """
    text = f"({when.day} {when:%B %Y}) {speaker + ': ' if speaker else ''}{content}"
    if previous is not None:
        previous_speaker, previous_content = previous
        context = previous_content[:MAX_CONTEXT_CHARS]
        text += f" (replying to {previous_speaker + ': ' if previous_speaker else ''}{context})"
    return text
