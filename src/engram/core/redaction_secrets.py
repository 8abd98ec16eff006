"""Detecting secrets: private keys, provider tokens, bearer tokens, URL passwords and password-style assignments."""

from __future__ import annotations

import re
from collections.abc import Iterator

from engram.core.redaction_detectors import URL_PASSWORD, Category, compiled

# Patterns run in linear time on Python's backtracking `re`, as in `redaction_detectors`.

# --- secrets ------------------------------------------------------------------------------------------------------

_KEY_BEGIN = compiled(r"-----BEGIN (?:[A-Z0-9]{1,20} ){0,3}PRIVATE KEY(?: BLOCK)?-----")
_KEY_END = compiled(r"-----END (?:[A-Z0-9]{1,20} ){0,3}PRIVATE KEY(?: BLOCK)?-----")
# A truncated block (no END) still leaks key material: take the base64 lines that follow the header.
_KEY_BODY = compiled(r"(?:\s*+[A-Za-z0-9+/=]{16,}+)*+")

# Provider token shapes; the lookbehinds keep each from starting inside a longer identifier.
_TOKENS = compiled(
    r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])"  # AWS access key id
    r"|(?<![A-Za-z0-9_])gh[pousr]_[A-Za-z0-9]{36,}+"  # GitHub classic tokens
    r"|(?<![A-Za-z0-9_])github_pat_[A-Za-z0-9_]{22,}+"  # GitHub fine-grained tokens
    r"|(?<![A-Za-z0-9_-])xox[abprs]-[A-Za-z0-9-]{10,}+"  # Slack
    r"|(?<![A-Za-z0-9_])(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{10,}+"  # Stripe
    r"|(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])"  # Google API key
    r"|(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{5,}+\.[A-Za-z0-9_-]{5,}+\.[A-Za-z0-9_-]{5,}+"  # JWT
)
# OpenAI (sk-, sk-proj-) and Anthropic (sk-ant-) keys; checked for digits and letters so prose with "sk-" is spared.
_SK_KEY = compiled(r"(?<![A-Za-z0-9_-])sk-[A-Za-z0-9_-]{20,}+")
_AWS_SECRET = compiled(
    r"aws_?secret_?access_?key[\"']?[ \t]*+[:=][ \t]*+[\"']?(?P<value>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])",
    re.IGNORECASE,
)
_AUTH_HEADER = compiled(
    r"authorization[\"']?[ \t]*+:[ \t]*+[\"']?(?:bearer|basic|token)[ \t]++(?P<value>[A-Za-z0-9._~+/=-]++)",
    re.IGNORECASE,
)
# "Bearer <token>" outside a header: only long, digit-bearing tokens, so "the bearer of bad news" is left alone.
_BEARER = compiled(r"(?<![A-Za-z0-9])bearer[ \t]++(?P<value>[A-Za-z0-9._~+/-]{20,}+=*+)", re.IGNORECASE)
# key = value / key: value / "key": "value". The key is matched whole and judged in Python (_SECRET_KEY_ENDINGS);
# the value is matched separately, only after a secret key, so that the scan resumes right after every separator
# and "url=https://x.example/?token=abc" or "config:password=x" still reach the secret key inside the value.
_ASSIGNMENT_KEY = compiled(
    r"(?<![A-Za-z0-9_.\-\"'])[\"']?(?P<key>[A-Za-z_][A-Za-z0-9_.-]*+)[\"']?[ \t]*+(?:=>|:=|[:=])[ \t]*+"
)
_ASSIGNMENT_VALUE = compiled(r"\"(?P<dq>[^\"\r\n]{1,500}+)\"|'(?P<sq>[^'\r\n]{1,500}+)'|(?P<bare>[^\s\"',;&]{1,500}+)")
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


def secrets(text: str) -> Iterator[tuple[int, int]]:
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
    for pattern in (_AWS_SECRET, _AUTH_HEADER, URL_PASSWORD):
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
