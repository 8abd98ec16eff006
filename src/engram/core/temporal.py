"""Time references in a question ("last Saturday", "in May", "two weeks ago"), resolved against the time it is asked."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

_NUMBERS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "a couple of": 2, "a couple": 2, "couple of": 2,
    "a few": 3, "few": 3, "several": 3,
}  # fmt: skip
_WEEKDAYS = {name.lower(): i for i, name in enumerate(calendar.day_name)}
_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_MONTHS.update({name.lower(): i for i, name in enumerate(calendar.month_abbr) if name and name.lower() != "may"})
_UNIT_DAYS = {"day": 1, "week": 7, "month": 30, "year": 365}

_NUMBER = r"(\d+|" + "|".join(sorted((re.escape(n) for n in _NUMBERS), key=len, reverse=True)) + r")"
_AGO = re.compile(rf"\b{_NUMBER}\s+(day|week|month|year)s?\s+ago\b")
_PAST = re.compile(rf"\b(?:past|last)\s+{_NUMBER}\s+(day|week|month|year)s?\b")
#: "in the last month", "over the past week": the trailing window, not the previous calendar month or week.
_TRAILING = re.compile(r"\bthe\s+(?:past|last)\s+(day|week|month|year)\b")
#: A weekday counts only after "last", "on" or "this past": bare, it names things ("the Sunday mass").
_WEEKDAY = re.compile(r"\b(last|on|past)\s+(" + "|".join(_WEEKDAYS) + r")\b")
_MONTH = re.compile(
    r"\b(?:(in|during|last|this|since)\s+)?(" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\b"
    r"(?:\s+(?:of\s+)?(\d{4}))?"
)
_YEAR = re.compile(r"\b(?:in|during|of)\s+(\d{4})\b")
#: "this weekend" is left out: asked about, it is nearly always a plan ("what should I cook this weekend?").
_RELATIVE = re.compile(
    r"\b(yesterday|today|tonight|this morning|last night"
    r"|(?:last|past)\s+(weekend)|(?:last|this|past)\s+(week|month|year))\b"
)
_FIRST = re.compile(r"\b(first time|first|earliest|initially|originally|at first|began|started)\b")
_LATEST = re.compile(r"\b(most recent(?:ly)?|latest|last time|recently|currently|now|these days|anymore)\b")


@dataclass(frozen=True)
class TimeReference:
    """What a question says about time: a period its answer happened in, and/or which end of history it wants."""

    start: datetime | None = None
    end: datetime | None = None
    order: Literal["earliest", "latest"] | None = None
    phrase: str | None = None

    @property
    def period(self) -> tuple[datetime, datetime] | None:
        """The period [start, end) the question points at, if it names one."""
        return None if self.start is None or self.end is None else (self.start, self.end)


def _day(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _count(word: str) -> int:
    return int(word) if word.isdigit() else _NUMBERS[word]


def resolve(question: str, as_of: datetime) -> TimeReference:
    """The time reference of `question` asked at `as_of` (a zone-aware time; periods come back in its zone).

    Periods are generous by a day or so on each side: a session is dated when it started, and people round
    ("two weeks ago" for 12 to 16 days).
    """
    text = question.lower()
    today = _day(as_of)
    order: Literal["earliest", "latest"] | None = None
    if _FIRST.search(text):
        order = "earliest"
    elif _LATEST.search(text):
        order = "latest"

    if match := _AGO.search(text):
        amount, unit = _count(match.group(1)), match.group(2)
        centre = today - timedelta(days=amount * _UNIT_DAYS[unit])
        slack = timedelta(days=max(2, amount * _UNIT_DAYS[unit] // 4))
        return TimeReference(centre - slack, centre + slack + timedelta(days=1), order, match.group(0))
    if match := _PAST.search(text):
        amount, unit = _count(match.group(1)), match.group(2)
        start = today - timedelta(days=amount * _UNIT_DAYS[unit] + 1)
        return TimeReference(start, today + timedelta(days=1), order, match.group(0))
    if match := _TRAILING.search(text):
        start = today - timedelta(days=_UNIT_DAYS[match.group(1)] + 1)
        return TimeReference(start, today + timedelta(days=1), order, match.group(0))
    if match := _RELATIVE.search(text):
        return _relative(match, today, order)
    if match := _WEEKDAY.search(text):
        weekday = _WEEKDAYS[match.group(2)]
        back = (today.weekday() - weekday) % 7
        if back == 0 and match.group(1) == "last":
            back = 7
        day = today - timedelta(days=back)
        return TimeReference(day - timedelta(days=1), day + timedelta(days=2), order, match.group(0).strip())
    if (named := _month(text, today, order)) is not None:
        return named
    if match := _YEAR.search(text):
        year = int(match.group(1))
        if 1900 <= year <= 2200:
            return TimeReference(
                today.replace(year=year, month=1, day=1),
                today.replace(year=year + 1, month=1, day=1),
                order,
                match.group(0),
            )
    return TimeReference(order=order)


def _relative(match: re.Match[str], today: datetime, order: Literal["earliest", "latest"] | None) -> TimeReference:
    """The period of "yesterday", "today", "last week", "this month", "last year" and the like."""
    word, unit = match.group(1), match.group(2) or match.group(3)
    if word in {"yesterday", "last night"}:
        return TimeReference(today - timedelta(days=1), today + timedelta(days=1), order, word)
    if word in {"today", "tonight", "this morning"}:
        return TimeReference(today - timedelta(days=1), today + timedelta(days=1), order, word)
    last = word.startswith(("last", "past"))
    if unit == "week":
        start = today - timedelta(days=today.weekday() + (7 if last else 0))
        return TimeReference(start - timedelta(days=1), start + timedelta(days=8), order, word)
    if unit == "weekend":
        saturday = today - timedelta(days=(today.weekday() - 5) % 7 or (7 if last else 0))
        return TimeReference(saturday - timedelta(days=1), saturday + timedelta(days=3), order, word)
    if unit == "month":
        first = today.replace(day=1)
        if last:
            first = (first - timedelta(days=1)).replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
        return TimeReference(first - timedelta(days=1), following + timedelta(days=1), order, word)
    year = today.year - (1 if last else 0)
    return TimeReference(
        today.replace(year=year, month=1, day=1), today.replace(year=year + 1, month=1, day=1), order, word
    )


def _month(text: str, today: datetime, order: Literal["earliest", "latest"] | None) -> TimeReference | None:
    """The month a question names ("in May", "last March", "June 2023"), if it names one."""
    for match in _MONTH.finditer(text):
        name, year_text, lead = match.group(2), match.group(3), match.group(1)
        if name == "may" and lead is None and year_text is None:
            continue  # "may" the verb
        if len(name) <= 3 and lead is None and year_text is None:
            continue  # "mar", "jun": too often something else without "in"
        month = _MONTHS[name]
        year = int(year_text) if year_text else today.year - (1 if month > today.month else 0)
        if lead == "last" and not year_text and month == today.month:
            year -= 1
        first = today.replace(year=year, month=month, day=1)
        following = (first + timedelta(days=32)).replace(day=1)
        return TimeReference(first - timedelta(days=1), following + timedelta(days=1), order, match.group(0))
    return None
