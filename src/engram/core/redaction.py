"""PII and secret redaction: detect sensitive spans in text and keep, replace or reject them per category."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum

from engram.core.errors import EngramError, InvalidInput, quoted

# Every pattern below is written to run in linear time on Python's backtracking `re`: each starts behind a
# lookbehind that allows only the first character of a run, uses possessive quantifiers (`*+`, `{m,n}+`, 3.11+)
# where a run could otherwise be re-split, and bounds every repetition that could not be made possessive.
# Checks a regex cannot express cheaply (Luhn, mod-97, SSN ranges, digit counts) run in Python on the candidates.


class Category(StrEnum):
    """A kind of sensitive content; the value is the name used in policies and reports."""

    EMAIL = "email"
    PHONE = "phone"
    CARD = "card"
    IBAN = "iban"
    NATIONAL_ID = "national_id"
    IP_ADDRESS = "ip_address"
    SECRET = "secret"

    @property
    def placeholder(self) -> str:
        """The typed text that replaces a redacted match, e.g. `[EMAIL]`."""
        return f"[{self.name}]"


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


def _re(pattern: str, flags: int = 0) -> re.Pattern[str]:
    """Compile with ASCII classes: digits must be 0-9 for the checksums, and word characters ASCII letters."""
    return re.compile(pattern, flags | re.ASCII)


# A detector yields (start, end) spans of one category; overlaps between detectors are resolved later.
_Detector = Callable[[str], Iterator[tuple[int, int]]]

# user:password@host in URLs (a secret, see _secrets).
_URL_PASSWORD = _re(r"://[^\s/:@?#]{1,256}+:(?P<value>[^\s/@?#]{1,256}+)@")

# --- e-mail -------------------------------------------------------------------------------------------------------

# The local part may only start a run (lookbehind) and is possessive, so a long word without '@' costs one pass.
_EMAIL = _re(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}+@[A-Za-z0-9-]++(?:\.[A-Za-z0-9-]++)++")
_TLD = _re(r"[A-Za-z]{2,24}")


def _emails(text: str) -> Iterator[tuple[int, int]]:
    """Addresses with a dotted domain and an alphabetic TLD; `user@localhost` and `a@b` are not addresses here."""
    # In scheme://user:password@host the part before '@' is a password (a secret), and the host is no address.
    passwords = {m.start("value") for m in _URL_PASSWORD.finditer(text)}
    for m in _EMAIL.finditer(text):
        if m.start() in passwords:
            continue
        local, _, domain = m.group().partition("@")
        start = m.start() + (len(local) - len(local.lstrip(".")))  # "...john@x.com": the dots are punctuation
        local = local.lstrip(".")
        if not local or local.endswith(".") or ".." in local:
            continue
        labels = domain.split(".")
        if len(domain) > 253 or any(not lb or lb[0] == "-" or lb[-1] == "-" for lb in labels):
            continue
        if not _TLD.fullmatch(labels[-1]):
            continue
        yield start, m.end()


# --- phone numbers ------------------------------------------------------------------------------------------------

# International: +CC (or 00CC) then 2-8 groups; E.164 caps a number at 15 digits, and 8 rules out "+1 555".
_PHONE_INTL = _re(r"(?<![\w+])(?<!\d[ -])(?:\+|00)[1-9]\d{0,2}(?:[ .-]?(?:\(\d{1,4}\)|\d{1,5}+)){2,8}+(?!\w)")
# North American: (555) 123-4567, 555-123-4567, 555.123.4567, 1-800-555-0199; an area code never starts with 0 or 1.
_PHONE_NANP = _re(
    r"(?<![\w+.\-/])(?<!\d[ -])(?:1[ .-])?(?:\([2-9]\d{2}\)[ .-]?|[2-9]\d{2}[ .-])\d{3}[ .-]\d{4}(?![\w\-/]|[.,]\d)"
)
# National with a trunk 0 (UK, DE, FR, NL, ...): 020 7946 0958, 0151-12345678, (030) 1234567, 06 12 34 56 78.
# Neither national form may start inside a run of digit groups ("DE88 3704 0044 0532 0130 00" holds no phone).
_PHONE_NATIONAL = _re(
    r"(?<![\w+.\-/(])(?<!\d[ -])(?:\(0[1-9]\d{0,4}\)|0[1-9]\d{0,4})(?:[ -]\d{2,8}+){1,4}+(?![\w\-/]|[.,:]\d)"
)


_DIGITS = _re(r"\d+")


def _phone_prefixes(text: str, start: int, end: int, least: int, most: int) -> Iterator[tuple[int, int]]:
    """Each prefix of a phone-shaped run that ends after a digit group and holds `least`..`most` digits."""
    # The run may continue into an unrelated number ("+44 20 7946 0958 4111 1111 ..."): offering every prefix
    # lets the overlap resolution keep the phone and leave the rest to the card detector.
    count = 0
    for group in _DIGITS.finditer(text, start, end):
        count += group.end() - group.start()
        if count > most:
            return
        if count >= least:
            stop = group.end() + 1 if text.startswith(")", group.end()) else group.end()
            yield start, min(stop, end)


def _phones(text: str) -> Iterator[tuple[int, int]]:
    """Phone numbers in international or common national layouts; bare digit runs are not phones (order numbers)."""
    for m in _PHONE_INTL.finditer(text):
        for start, end in _phone_prefixes(text, m.start(), m.end(), 8, 15):
            # "00" is also how order numbers start, so the 00CC form needs a separator to look like a phone.
            if text.startswith("+", start) or any(ch in " .-(" for ch in text[start:end]):
                yield start, end
    for m in _PHONE_NANP.finditer(text):
        yield m.span()
    for m in _PHONE_NATIONAL.finditer(text):
        for start, end in _phone_prefixes(text, m.start(), m.end(), 9, 12):
            # One kind of separator only: "05-12-2024 10" is a date and a number, not a phone.
            if len({ch for ch in text[start:end] if ch in " -"}) == 1:
                yield start, end


# --- payment cards ------------------------------------------------------------------------------------------------

# A run of digit groups joined by single spaces or dashes; which groups form a card is decided in Python.
# Digits right after "+" are a phone's country code, never a card.
_DIGIT_RUN = _re(r"(?<![\w+-])\d++(?:[ -]\d++)*+(?![\w])")
_DIGIT_GROUP = _re(r"\d+")


def _luhn_ok(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_prefix_ok(d: str) -> bool:
    """Whether the number starts with a known issuer prefix (IIN) and has a length that issuer uses."""
    n, p2, p3, p4 = len(d), int(d[:2]), int(d[:3]), int(d[:4])
    if d[0] == "4":  # Visa
        return n in (13, 16, 19)
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:  # Mastercard
        return n == 16
    if p2 in (34, 37):  # American Express
        return n == 15
    if 2200 <= p4 <= 2204:  # Mir
        return 16 <= n <= 19
    if p4 == 6011 or 644 <= p3 <= 649 or p2 == 65 or p2 == 62:  # Discover, UnionPay
        return 16 <= n <= 19
    if 3528 <= p4 <= 3589:  # JCB
        return 16 <= n <= 19
    if 300 <= p3 <= 305 or p2 in (36, 38, 39):  # Diners Club
        return 14 <= n <= 19
    if p2 == 50 or 56 <= p2 <= 69:  # Maestro
        return 13 <= n <= 19
    return False


def _cards(text: str) -> Iterator[tuple[int, int]]:
    """Card numbers: 13-19 digits, ungrouped or in groups (first of 4, others 3-6), known IIN and Luhn-valid."""
    for run in _DIGIT_RUN.finditer(text):
        if run.end() - run.start() < 13:
            continue
        groups = [(g.start() + run.start(), g.end() + run.start()) for g in _DIGIT_GROUP.finditer(run.group())]
        for i, (first_start, first_end) in enumerate(groups):
            first_len = first_end - first_start
            # A card is written whole or grouped from a 4-digit group: a window starting elsewhere is not one.
            if not (13 <= first_len <= 19 or first_len == 4):
                continue
            digits = ""
            for j in range(i, len(groups)):
                g_start, g_end = groups[j]
                size = g_end - g_start
                if j > i and not 3 <= size <= 6:
                    break
                digits += text[g_start:g_end]
                if len(digits) > 19:
                    break
                if len(digits) >= 13 and _card_prefix_ok(digits) and _luhn_ok(digits):
                    yield first_start, g_end
                if first_len > 4:  # an ungrouped number is a card on its own or not at all
                    break


# --- IBAN ---------------------------------------------------------------------------------------------------------

# IBAN length per country (ISO 13616 registry); the exact length decides where an IBAN ends in running text.
# fmt: off
_IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25,
    "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18,
    "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33,
    "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}
# fmt: on
# Country code, check digits, then up to 30 characters with optional single spaces (printed groups of four).
_IBAN = _re(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}+")


def _mod97_ok(iban: str) -> bool:
    """The ISO 7064 mod-97 check: move the first four characters to the end, letters to numbers, remainder 1."""
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _ibans(text: str) -> Iterator[tuple[int, int]]:
    """IBANs (uppercase, spaces allowed) of a known country, of that country's length, mod-97 valid."""
    for m in _IBAN.finditer(text):
        length = _IBAN_LENGTHS.get(m.group()[:2])
        if length is None:
            continue
        taken, end = 0, m.start()
        while end < m.end() and taken < length:  # walk to the end of the `length`-th character
            if text[end] != " ":
                taken += 1
            end += 1
        if taken < length or (end < len(text) and text[end].isalnum()):
            continue  # too short, or the IBAN would end inside a word
        if _mod97_ok(text[m.start() : end].replace(" ", "")):
            yield m.start(), end


# --- national ids -------------------------------------------------------------------------------------------------

_SSN = _re(r"(?<![\w-])(\d{3})-(\d{2})-(\d{4})(?![\w-])")


def _ssns(text: str) -> Iterator[tuple[int, int]]:
    """US SSNs; area 000, 666 and 9xx, group 00 and serial 0000 are never issued, so they are not SSNs."""
    for m in _SSN.finditer(text):
        area, group, serial = m.groups()
        if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
            continue
        yield m.span()


# --- IP addresses -------------------------------------------------------------------------------------------------

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
# Dotted quads only: a fifth part ("1.2.3.4.5") or a neighbouring digit/dot ("999.1.1.1") means it is not an IP.
_IPV4 = _re(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\w|\.\d)")
# IPv6 candidates (hex, colons, and dots for an embedded IPv4) must have a colon within the first five characters;
# the stdlib parser then decides.
_IPV6 = _re(r"(?<![A-Za-z0-9:.])(?=[0-9A-Fa-f]{0,4}:)[0-9A-Fa-f:.]{3,45}+(?![A-Za-z0-9:])")


def _ips(text: str) -> Iterator[tuple[int, int]]:
    """IPv4 dotted quads (each octet 0-255) and IPv6 addresses with at least four hex digits."""
    for m in _IPV4.finditer(text):
        yield m.span()
    for m in _IPV6.finditer(text):
        candidate = m.group().rstrip(".")  # sentence punctuation
        if candidate.endswith(":") and not candidate.endswith("::"):
            candidate = candidate[:-1]  # "at fe80::1: it failed"
        # Fewer than four hex digits is "::1" or "a::b" (C++ scope), not an address that identifies anyone.
        if sum(ch not in ":." for ch in candidate) < 4:
            continue
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue  # times (12:30:45), MAC addresses and other colon-separated hex
        yield m.start(), m.start() + len(candidate)


# --- secrets ------------------------------------------------------------------------------------------------------

_KEY_BEGIN = _re(r"-----BEGIN (?:[A-Z0-9]{1,20} ){0,3}PRIVATE KEY(?: BLOCK)?-----")
_KEY_END = _re(r"-----END (?:[A-Z0-9]{1,20} ){0,3}PRIVATE KEY(?: BLOCK)?-----")
# A truncated block (no END) still leaks key material: take the base64 lines that follow the header.
_KEY_BODY = _re(r"(?:\s*+[A-Za-z0-9+/=]{16,}+)*+")

# Provider token shapes; the lookbehinds keep each from starting inside a longer identifier.
_TOKENS = _re(
    r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])"  # AWS access key id
    r"|(?<![A-Za-z0-9_])gh[pousr]_[A-Za-z0-9]{36,}+"  # GitHub classic tokens
    r"|(?<![A-Za-z0-9_])github_pat_[A-Za-z0-9_]{22,}+"  # GitHub fine-grained tokens
    r"|(?<![A-Za-z0-9_-])xox[abprs]-[A-Za-z0-9-]{10,}+"  # Slack
    r"|(?<![A-Za-z0-9_])(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{10,}+"  # Stripe
    r"|(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])"  # Google API key
    r"|(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{5,}+\.[A-Za-z0-9_-]{5,}+\.[A-Za-z0-9_-]{5,}+"  # JWT
)
# OpenAI (sk-, sk-proj-) and Anthropic (sk-ant-) keys; checked for digits and letters so prose with "sk-" is spared.
_SK_KEY = _re(r"(?<![A-Za-z0-9_-])sk-[A-Za-z0-9_-]{20,}+")
_AWS_SECRET = _re(
    r"aws_?secret_?access_?key[\"']?[ \t]*+[:=][ \t]*+[\"']?(?P<value>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])",
    re.IGNORECASE,
)
_AUTH_HEADER = _re(
    r"authorization[\"']?[ \t]*+:[ \t]*+[\"']?(?:bearer|basic|token)[ \t]++(?P<value>[A-Za-z0-9._~+/=-]++)",
    re.IGNORECASE,
)
# "Bearer <token>" outside a header: only long, digit-bearing tokens, so "the bearer of bad news" is left alone.
_BEARER = _re(r"(?<![A-Za-z0-9])bearer[ \t]++(?P<value>[A-Za-z0-9._~+/-]{20,}+=*+)", re.IGNORECASE)
# key = value / key: value / "key": "value". The key is matched whole and judged in Python (_SECRET_KEY_ENDINGS);
# the value is matched separately, only after a secret key, so that the scan resumes right after every separator
# and "url=https://x.example/?token=abc" or "config:password=x" still reach the secret key inside the value.
_ASSIGNMENT_KEY = _re(
    r"(?<![A-Za-z0-9_.\-\"'])[\"']?(?P<key>[A-Za-z_][A-Za-z0-9_.-]*+)[\"']?[ \t]*+(?:=>|:=|[:=])[ \t]*+"
)
_ASSIGNMENT_VALUE = _re(r"\"(?P<dq>[^\"\r\n]{1,500}+)\"|'(?P<sq>[^'\r\n]{1,500}+)'|(?P<bare>[^\s\"',;&]{1,500}+)")
# A key names a secret when it ends with one of these (after lower-casing and mapping - and . to _), which covers
# db_password, clientSecret, GITHUB_TOKEN, x-api-key and aws_secret_access_key but not max_tokens or token_count.
_SECRET_KEY_ENDINGS = (
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "secret_key",
    "access_key",
    "private_key",
)
_PLACEHOLDERS = frozenset(c.placeholder for c in Category)


def _has_letter_and_digit(s: str) -> bool:
    return any(ch.isdigit() for ch in s) and any(ch.isalpha() for ch in s)


def _secrets(text: str) -> Iterator[tuple[int, int]]:
    """Private keys, provider tokens, bearer tokens, URL passwords and the values of password-style assignments."""
    begins = list(_KEY_BEGIN.finditer(text))
    for i, begin in enumerate(begins):
        # Pair each BEGIN with the first END before the next BEGIN: one forward scan, never quadratic.
        limit = begins[i + 1].start() if i + 1 < len(begins) else len(text)
        end = _KEY_END.search(text, begin.end(), limit)
        if end is not None:
            yield begin.start(), end.end()
        else:
            body = _KEY_BODY.match(text, begin.end(), limit)
            yield begin.start(), body.end() if body else begin.end()
    for m in _TOKENS.finditer(text):
        yield m.span()
    for m in _SK_KEY.finditer(text):
        if _has_letter_and_digit(m.group()[3:]):
            yield m.span()
    for pattern in (_AWS_SECRET, _AUTH_HEADER, _URL_PASSWORD):
        for m in pattern.finditer(text):
            yield m.span("value")
    for m in _BEARER.finditer(text):
        if _has_letter_and_digit(m.group("value")):
            yield m.span("value")
    for k in _ASSIGNMENT_KEY.finditer(text):
        key = k.group("key").lower().replace("-", "_").replace(".", "_")
        if not key.endswith(_SECRET_KEY_ENDINGS) or (v := _ASSIGNMENT_VALUE.match(text, k.end())) is None:
            continue
        group = "dq" if v.group("dq") is not None else "sq" if v.group("sq") is not None else "bare"
        value = v.group(group)
        if group == "bare":
            value = value.rstrip(".")  # "password: hunter2." ends a sentence, not the value
        if value and value not in _PLACEHOLDERS:  # already redacted: redacting again must change nothing
            yield v.start(group), v.start(group) + len(value)


_DETECTORS: tuple[tuple[Category, _Detector], ...] = (
    (Category.SECRET, _secrets),
    (Category.CARD, _cards),
    (Category.IBAN, _ibans),
    (Category.NATIONAL_ID, _ssns),
    (Category.EMAIL, _emails),
    (Category.IP_ADDRESS, _ips),
    (Category.PHONE, _phones),
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
