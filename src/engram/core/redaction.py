"""PII and secret redaction: detect sensitive spans in text and keep, replace or reject them per category."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from engram.core.errors import EngramError, InvalidInput, quoted
from engram.core.redaction_detectors import (
    Category,
    Detector,
    cards,
    emails,
    ibans,
    ips,
    phones,
    ssns,
)
from engram.core.redaction_secrets import secrets

__all__ = ["DEFAULT_POLICY", "Action", "Category", "Redaction", "RedactionPolicy", "SensitiveContentRejected", "redact"]


class Action(StrEnum):
    """What to do with content of a category."""

    KEEP = "keep"
    REDACT = "redact"
    REJECT = "reject"


class SensitiveContentRejected(EngramError):
    """The content holds a category the policy rejects; the message names categories, never values."""

    def __init__(self, categories: tuple[Category, ...]) -> None:
        names = ", ".join(c.value for c in categories)
        example = ", ".join(f"{c.value!r}: 'redact'" for c in categories)
        super().__init__(
            f"The content contains {names}, which the redaction policy rejects: nothing was stored. "
            f"Remove those details and try again, or change the redaction policy for {names} to "
            f"'redact' (store a placeholder) or 'keep' (e.g. {{{example}}})."
        )
        self.categories = categories


_ACCEPTED_CATEGORIES = ", ".join(c.value for c in Category)
_ACCEPTED_ACTIONS = ", ".join(a.value for a in Action)


def _action(value: str, field: str) -> Action:
    """Parse one action name, or refuse it saying what is accepted."""
    try:
        return Action(str(value).strip().lower())
    except ValueError:
        raise InvalidInput(field, f"unknown action {quoted(value)}; accepted: {_ACCEPTED_ACTIONS}") from None


@dataclass(frozen=True)
class RedactionPolicy:
    """The action per category; the default redacts every category."""

    email: Action = Action.REDACT
    phone: Action = Action.REDACT
    card: Action = Action.REDACT
    iban: Action = Action.REDACT
    national_id: Action = Action.REDACT
    ip_address: Action = Action.REDACT
    secret: Action = Action.REDACT

    def __post_init__(self) -> None:
        # Settings and callers may hand plain strings; normalise them so `action_for` always returns an Action.
        for category in Category:
            raw = getattr(self, category.value)
            object.__setattr__(self, category.value, _action(raw, f"redaction_policy.{category.value}"))

    def action_for(self, category: Category) -> Action:
        """The action this policy takes for `category`."""
        actions: dict[Category, Action] = {
            Category.EMAIL: self.email,
            Category.PHONE: self.phone,
            Category.CARD: self.card,
            Category.IBAN: self.iban,
            Category.NATIONAL_ID: self.national_id,
            Category.IP_ADDRESS: self.ip_address,
            Category.SECRET: self.secret,
        }
        return actions[category]

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, str], field: str = "redaction_policy") -> RedactionPolicy:
        """Build a policy from category name -> action name; categories not named keep the default."""
        actions: dict[str, Action] = {}
        for key, value in mapping.items():
            name = str(key).strip().lower()
            if name not in Category._value2member_map_:
                raise InvalidInput(field, f"unknown category {quoted(key)}; accepted: {_ACCEPTED_CATEGORIES}")
            actions[name] = _action(value, f"{field}.{name}")
        return cls(**actions)


DEFAULT_POLICY = RedactionPolicy()


@dataclass(frozen=True)
class Redaction:
    """Redacted text and how many matches of each category were replaced (never the values)."""

    text: str
    counts: Mapping[Category, int]

    @property
    def total(self) -> int:
        """How many matches were replaced in all."""
        return sum(self.counts.values())


_DETECTORS: tuple[tuple[Category, Detector], ...] = (
    (Category.SECRET, secrets),
    (Category.CARD, cards),
    (Category.IBAN, ibans),
    (Category.NATIONAL_ID, ssns),
    (Category.EMAIL, emails),
    (Category.IP_ADDRESS, ips),
    (Category.PHONE, phones),
)
# Tie-break between equally long overlapping matches: the more specific (checksummed, structured) detector wins.
_SPECIFICITY = {category: rank for rank, (category, _) in enumerate(_DETECTORS)}
# Secrets are resolved first and phones last: a secret's value may look like anything, and a phone is the loosest
# shape (a run of digit groups), so it yields to any structured match it overlaps.
_TIER = {
    category: 0 if category is Category.SECRET else 2 if category is Category.PHONE else 1 for category in Category
}


def _resolve(text: str) -> list[tuple[int, int, Category]]:
    """Every detector's matches without overlaps: secrets first, phones last, else longest, then most specific."""
    candidates = [
        (start, end, category) for category, detect in _DETECTORS for start, end in detect(text) if end > start
    ]
    candidates.sort(key=lambda c: (_TIER[c[2]], c[0] - c[1], _SPECIFICITY[c[2]], c[0]))
    # A byte per character marks what is taken; checking a candidate costs its length, and detectors do not
    # produce heavily overlapping candidates, so this stays linear where an interval list would not.
    taken = bytearray(len(text))
    chosen: list[tuple[int, int, Category]] = []
    for start, end, category in candidates:
        if taken.find(1, start, end) == -1:
            taken[start:end] = b"\x01" * (end - start)
            chosen.append((start, end, category))
            continue
        # Partly covered by a stronger match: what is left of it is still sensitive ("pwd: +44 20 7946 0958" has
        # only "+44" as the secret's value), so redact the uncovered pieces too, under this candidate's category.
        position = start
        while (free := taken.find(0, position, end)) != -1:
            stop = taken.find(1, free, end)
            position = end if stop == -1 else stop
            piece = text[free:position]
            left, right = free + len(piece) - len(piece.lstrip()), position - len(piece) + len(piece.rstrip())
            if left < right and any(ch.isalnum() for ch in text[left:right]):
                taken[left:right] = b"\x01" * (right - left)
                chosen.append((left, right, category))
    chosen.sort()
    return chosen


def redact(text: str, policy: RedactionPolicy = DEFAULT_POLICY) -> Redaction:
    """Apply `policy` to `text`: replace redacted matches with their placeholder, raise if a rejected one is found."""
    matches = _resolve(text)
    # Kept matches still claim their text during resolution, so a kept IBAN is never partly redacted as a phone.
    actions = {c: policy.action_for(c) for c in Category}
    found = {c for _, _, c in matches}
    rejected = [c for c in Category if c in found and actions[c] is Action.REJECT]
    if rejected:
        raise SensitiveContentRejected(tuple(rejected))
    placeholders = {c: c.placeholder for c in Category}
    counts = dict.fromkeys(Category, 0)
    parts: list[str] = []
    position = 0
    for start, end, category in matches:
        if actions[category] is not Action.REDACT:
            continue
        parts += (text[position:start], placeholders[category])
        position = end
        counts[category] += 1
    parts.append(text[position:])
    return Redaction(text="".join(parts), counts={c: n for c, n in counts.items() if n})
