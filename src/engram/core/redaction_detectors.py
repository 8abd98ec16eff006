"""What redaction looks for: the categories of sensitive content and a detector for each structured kind."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator
from enum import StrEnum

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


def compiled(pattern: str, flags: int = 0) -> re.Pattern[str]:
    """Compile with ASCII classes: digits must be 0-9 for the checksums, and word characters ASCII letters."""
    return re.compile(pattern, flags | re.ASCII)


# A detector yields (start, end) spans of one category; overlaps between detectors are resolved later.
Detector = Callable[[str], Iterator[tuple[int, int]]]

# user:password@host in URLs (a secret, see redaction_secrets).
URL_PASSWORD = compiled(r"://[^\s/:@?#]{1,256}+:(?P<value>[^\s/@?#]{1,256}+)@")

# --- e-mail -------------------------------------------------------------------------------------------------------

# The local part may only start a run (lookbehind) and is possessive, so a long word without '@' costs one pass.
_EMAIL = compiled(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}+@[A-Za-z0-9-]++(?:\.[A-Za-z0-9-]++)++")
_TLD = compiled(r"[A-Za-z]{2,24}")


def emails(text: str) -> Iterator[tuple[int, int]]:
    """Addresses with a dotted domain and an alphabetic TLD; `user@localhost` and `a@b` are not addresses here."""
    # In scheme://user:password@host the part before '@' is a password (a secret), and the host is no address.
    passwords = {m.start("value") for m in URL_PASSWORD.finditer(text)}
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
_PHONE_INTL = compiled(r"(?<![\w+])(?<!\d[ -])(?:\+|00)[1-9]\d{0,2}(?:[ .-]?(?:\(\d{1,4}\)|\d{1,5}+)){2,8}+(?!\w)")
# North American: (555) 123-4567, 555-123-4567, 555.123.4567, 1-800-555-0199; an area code never starts with 0 or 1.
_PHONE_NANP = compiled(
    r"(?<![\w+.\-/])(?<!\d[ -])(?:1[ .-])?(?:\([2-9]\d{2}\)[ .-]?|[2-9]\d{2}[ .-])\d{3}[ .-]\d{4}(?![\w\-/]|[.,]\d)"
)
# National with a trunk 0 (UK, DE, FR, NL, ...): 020 7946 0958, 0151-12345678, (030) 1234567, 06 12 34 56 78.
# Neither national form may start inside a run of digit groups ("DE88 3704 0044 0532 0130 00" holds no phone).
_PHONE_NATIONAL = compiled(
    r"(?<![\w+.\-/(])(?<!\d[ -])(?:\(0[1-9]\d{0,4}\)|0[1-9]\d{0,4})(?:[ -]\d{2,8}+){1,4}+(?![\w\-/]|[.,:]\d)"
)


_DIGITS = compiled(r"\d+")


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


def phones(text: str) -> Iterator[tuple[int, int]]:
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
_DIGIT_RUN = compiled(r"(?<![\w+-])\d++(?:[ -]\d++)*+(?![\w])")
_DIGIT_GROUP = compiled(r"\d+")


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


def cards(text: str) -> Iterator[tuple[int, int]]:
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
_IBAN = compiled(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}+")


def _mod97_ok(iban: str) -> bool:
    """The ISO 7064 mod-97 check: move the first four characters to the end, letters to numbers, remainder 1."""
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def ibans(text: str) -> Iterator[tuple[int, int]]:
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

_SSN = compiled(r"(?<![\w-])(\d{3})-(\d{2})-(\d{4})(?![\w-])")


def ssns(text: str) -> Iterator[tuple[int, int]]:
    """US SSNs; area 000, 666 and 9xx, group 00 and serial 0000 are never issued, so they are not SSNs."""
    for m in _SSN.finditer(text):
        area, group, serial = m.groups()
        if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
            continue
        yield m.span()


# --- IP addresses -------------------------------------------------------------------------------------------------

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
# Dotted quads only: a fifth part ("1.2.3.4.5") or a neighbouring digit/dot ("999.1.1.1") means it is not an IP.
_IPV4 = compiled(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\w|\.\d)")
# IPv6 candidates (hex, colons, and dots for an embedded IPv4) must have a colon within the first five characters;
# the stdlib parser then decides.
_IPV6 = compiled(r"(?<![A-Za-z0-9:.])(?=[0-9A-Fa-f]{0,4}:)[0-9A-Fa-f:.]{3,45}+(?![A-Za-z0-9:])")


def ips(text: str) -> Iterator[tuple[int, int]]:
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
