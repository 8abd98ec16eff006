"""Redaction detectors, table-driven: true positives in chat-like sentences, near misses, policies and overlaps."""

from __future__ import annotations

import dataclasses
import time

import pytest

from engram.core.errors import EngramError, InvalidInput
from engram.core.redaction import (
    DEFAULT_POLICY,
    Action,
    Category,
    Redaction,
    RedactionPolicy,
    SensitiveContentRejected,
    redact,
)

# Obviously fake credentials (AWS's documentation examples, test card numbers, the ECBS example IBANs).
GHP = "ghp_" + "a1B2c3D4e5F6g7H8i9J0" + "k1L2m3N4o5P6q7R8"  # 36 characters after the prefix
JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
    "-----END RSA PRIVATE KEY-----"
)

# (category, text, expected text): one row per detector shape, in the words a support chat would use.
TRUE_POSITIVES: list[tuple[Category, str, str]] = [
    # e-mail
    (
        Category.EMAIL,
        "Hi, my e-mail is jane.doe+billing@example.co.uk, please update it.",
        "Hi, my e-mail is [EMAIL], please update it.",
    ),
    (Category.EMAIL, "Send it to <ops_team@mail.example.org>.", "Send it to <[EMAIL]>."),
    (Category.EMAIL, "mailto:JOHN.SMITH@Example.COM", "mailto:[EMAIL]"),
    # phone: international
    (Category.PHONE, "Call me at +44 20 7946 0958 after 5pm.", "Call me at [PHONE] after 5pm."),
    (Category.PHONE, "My cell is +1 (415) 555-0132.", "My cell is [PHONE]."),
    (Category.PHONE, "Reach me on +4915112345678 tomorrow", "Reach me on [PHONE] tomorrow"),
    (Category.PHONE, "Appelez le +33 1 23 45 67 89 svp", "Appelez le [PHONE] svp"),
    (Category.PHONE, "or +44 (0)20 7946 0958", "or [PHONE]"),
    (Category.PHONE, "dial 0049 151 12345678 from abroad", "dial [PHONE] from abroad"),
    # phone: North American
    (Category.PHONE, "office: (415) 555-0132, ext. 12", "office: [PHONE], ext. 12"),
    (Category.PHONE, "the US number 415-555-0132 works", "the US number [PHONE] works"),
    (Category.PHONE, "or 415.555.0132 after lunch", "or [PHONE] after lunch"),
    (Category.PHONE, "toll free 1-800-555-0199!", "toll free [PHONE]!"),
    # phone: national with a trunk 0
    (Category.PHONE, "UK landline 020 7946 0958 please", "UK landline [PHONE] please"),
    (Category.PHONE, "Handy: 0151 12345678", "Handy: [PHONE]"),
    (Category.PHONE, "Ruf an: 030-12345678.", "Ruf an: [PHONE]."),
    (Category.PHONE, "Mon numéro: 06 12 34 56 78", "Mon numéro: [PHONE]"),
    (Category.PHONE, "Büro (030) 1234567", "Büro [PHONE]"),
    # payment cards
    (Category.CARD, "My card is 4111 1111 1111 1111, exp 12/26.", "My card is [CARD], exp 12/26."),
    (Category.CARD, "card number 5555-5555-5555-4444 was declined", "card number [CARD] was declined"),
    (Category.CARD, "Amex 3782 822463 10005 please", "Amex [CARD] please"),
    (Category.CARD, "you charged 4012888888881881 twice", "you charged [CARD] twice"),
    (Category.CARD, "Discover 6011111111111117", "Discover [CARD]"),
    (Category.CARD, "JCB 3530 1113 3330 0000", "JCB [CARD]"),
    (Category.CARD, "Diners 3056 930902 5904", "Diners [CARD]"),
    (Category.CARD, "old Visa 4222222222222", "old Visa [CARD]"),
    (Category.CARD, "new Mastercard 2223 0031 2200 3222", "new Mastercard [CARD]"),
    # IBAN
    (Category.IBAN, "IBAN: DE89 3704 0044 0532 0130 00 (Sparkasse)", "IBAN: [IBAN] (Sparkasse)"),
    (Category.IBAN, "pay GB82WEST12345698765432 today", "pay [IBAN] today"),
    (Category.IBAN, "FR14 2004 1010 0505 0001 3M02 606 is mine", "[IBAN] is mine"),
    (Category.IBAN, "Refund to NL91ABNA0417164300.", "Refund to [IBAN]."),
    (Category.IBAN, "CH93 0076 2011 6238 5295 7 (Swiss)", "[IBAN] (Swiss)"),
    # national id
    (Category.NATIONAL_ID, "My SSN is 123-45-6789.", "My SSN is [NATIONAL_ID]."),
    (Category.NATIONAL_ID, "ssn: 001-01-0001", "ssn: [NATIONAL_ID]"),
    # IP addresses
    (Category.IP_ADDRESS, "my IP is 203.0.113.42, can you unblock it?", "my IP is [IP_ADDRESS], can you unblock it?"),
    (Category.IP_ADDRESS, "server 10.0.0.1:8080 is down", "server [IP_ADDRESS]:8080 is down"),
    (Category.IP_ADDRESS, "from 2001:db8:85a3::8a2e:370:7334 today", "from [IP_ADDRESS] today"),
    (Category.IP_ADDRESS, "at [2001:db8::1]:443", "at [[IP_ADDRESS]]:443"),
    (Category.IP_ADDRESS, "link-local fe80::1ff:fe23:4567:890a.", "link-local [IP_ADDRESS]."),
    (Category.IP_ADDRESS, "mapped ::ffff:192.0.2.128", "mapped [IP_ADDRESS]"),
    # Decision: a valid dotted quad is an IP even when it is meant as a version (no way to tell them apart).
    (Category.IP_ADDRESS, "version 1.2.3.4 is installed", "version [IP_ADDRESS] is installed"),
    # secrets
    (Category.SECRET, f"here is my key:\n{PEM}\nthanks", "here is my key:\n[SECRET]\nthanks"),
    (
        Category.SECRET,
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\n(truncated)",
        "[SECRET]\n(truncated)",
    ),
    (Category.SECRET, "key id AKIAIOSFODNN7EXAMPLE, region eu-west-1", "key id [SECRET], region eu-west-1"),
    (Category.SECRET, "temp ASIAIOSFODNN7EXAMPLE", "temp [SECRET]"),
    (
        Category.SECRET,
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "aws_secret_access_key = [SECRET]",
    ),
    (Category.SECRET, f"my token is {GHP} ok", "my token is [SECRET] ok"),
    (Category.SECRET, "gho_" + "x" * 36, "[SECRET]"),
    (Category.SECRET, "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", "[SECRET]"),
    (Category.SECRET, "slack xoxb-1234567890-0987654321-AbCdEfGhIjKl", "slack [SECRET]"),
    (Category.SECRET, "stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", "stripe [SECRET]"),
    (Category.SECRET, "publishable pk_live_51H8abcdefghij", "publishable [SECRET]"),
    (Category.SECRET, "OPENAI_KEY sk-proj-abc123def456ghi789jkl012mno", "OPENAI_KEY [SECRET]"),
    (Category.SECRET, "claude key sk-ant-api03-Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8", "claude key [SECRET]"),
    (Category.SECRET, "maps AIzaSyA1234567890abcdefghijklmnopqrstuv", "maps [SECRET]"),
    (Category.SECRET, f"session {JWT}", "session [SECRET]"),
    (Category.SECRET, "Authorization: Bearer abc.def-ghi_123", "Authorization: Bearer [SECRET]"),
    (Category.SECRET, '{"Authorization": "Bearer tok3n"}', '{"Authorization": "Bearer [SECRET]"}'),
    (Category.SECRET, "use bearer 0a1b2c3d4e5f6a7b8c9d0e1f2a3b in the header", "use bearer [SECRET] in the header"),
    # assignments: the key stays, the value goes
    (Category.SECRET, "password=hunter2", "password=[SECRET]"),
    (Category.SECRET, "passwd: s3cr3t! and nothing else", "passwd: [SECRET] and nothing else"),
    (Category.SECRET, "pwd = letmein", "pwd = [SECRET]"),
    (Category.SECRET, "secret=abc123 token=xyz", "secret=[SECRET] token=[SECRET]"),
    (Category.SECRET, "?api_key=k3y&user=7", "?api_key=[SECRET]&user=7"),
    (Category.SECRET, '{"apiKey": "abc123", "user": "bob"}', '{"apiKey": "[SECRET]", "user": "bob"}'),
    (Category.SECRET, "export DB_PASSWORD='p@ss w0rd'", "export DB_PASSWORD='[SECRET]'"),
    (Category.SECRET, "client_secret: Zm9vYmFy", "client_secret: [SECRET]"),
    (Category.SECRET, "x-api-key: 12345", "x-api-key: [SECRET]"),
    (Category.SECRET, "url=https://x.example/cb?token=abc123&a=1", "url=https://x.example/cb?token=[SECRET]&a=1"),
    (Category.SECRET, "config:password=hunter2", "config:password=[SECRET]"),
    (
        Category.SECRET,
        "db is postgres://admin:hunter2@db.example.com/prod",
        "db is postgres://admin:[SECRET]@db.example.com/prod",
    ),
]


@pytest.mark.parametrize(("category", "text", "expected"), TRUE_POSITIVES, ids=lambda v: str(v)[:40])
def test_each_detector_finds_its_shape_in_a_sentence(category: Category, text: str, expected: str) -> None:
    result = redact(text)
    assert result.text == expected
    assert set(result.counts) == {category}


# (why it is not sensitive, text): each must come back unchanged with no counts.
NEAR_MISSES: list[tuple[str, str]] = [
    # e-mail-like
    ("no domain dot", "write to a@b"),
    ("no TLD", "foo@bar. is wrong"),
    ("a handle", "ping @handle on slack"),
    # Decision: a bare host name is a local mailbox, not a person's address on the internet.
    ("localhost", "logs go to user@localhost"),
    ("numeric TLD", "pin version@1.2.3"),
    ("one-letter TLD", "john@example.c"),
    ("label starts with hyphen", "foo@-bar.com"),
    ("double dot", "a..b@example.com"),
    # card-like
    ("fails Luhn", "card 4111 1111 1111 1112"),
    ("order number, unknown IIN", "Order #1234567890123456 shipped"),
    ("Luhn-valid, unknown IIN", "ref 1234567812345670"),
    ("tracking number", "Tracking 9400 1000 0000 0000 0000 00"),
    ("expiry and CVC", "exp 12/26 cvc 123"),
    ("ISBN", "ISBN 978-3-16-148410-0"),
    # IBAN-like
    ("wrong check digits", "IBAN DE88 3704 0044 0532 0130 00"),
    ("too short for DE", "DE89 3704 0044 0532 0130"),
    ("unknown country", "XX89 3704 0044 0532 0130 00"),
    ("lowercase", "de89 3704 0044 0532 0130 00"),
    # SSN-like
    ("area 000", "SSN 000-12-3456"),
    ("area 666", "SSN 666-12-3456"),
    ("area 9xx", "SSN 912-34-5678"),
    ("group 00", "SSN 123-00-4567"),
    ("serial 0000", "SSN 123-45-0000"),
    ("no dashes", "SSN 123456789"),
    # IP-like
    ("octet over 255", "from 999.1.1.1"),
    ("octet 256", "from 256.1.1.1"),
    ("five parts", "build 1.2.3.4.5"),
    ("prefixed version", "release v1.2.3.4"),
    ("three parts", "version 1.2.3"),
    # Decision: loopback and other addresses with under four hex digits identify no one.
    ("IPv6 loopback", "listening on ::1"),
    ("time", "at 12:30:45"),
    ("MAC address", "mac 00:1A:2B:3C:4D:5E"),
    ("C++ scope", "std::vector and a::b"),
    # phone-like
    ("year", "since 2024 and in 1999"),
    ("short order number", "Order #12345678"),
    ("bare digit run", "order 5551234567"),
    ("time", "at 12:30, or 10:45:00"),
    ("version", "v2.10.3 and 10.4.1"),
    ("ISO date", "on 2024-01-05"),
    ("slash date", "on 05/12/2024"),
    ("dotted date", "on 01.02.2024"),
    ("date then a count", "on 05-12-2024 10 people came"),
    ("prices", "$1,299.99, € 12.50 and 0.99"),
    ("percentage", "up +15% this year"),
    ("seven digits", "call 555-1234"),
    ("area code starting with 1", "dial 123-456-7890"),
    ("too few digits", "+1 555"),
    # secret-like
    ("bearer in prose", "the bearer of bad news"),
    ("not a secret key", "max_tokens=100 and token_count: 5"),
    ("no assignment", "I need a password reset"),
    ("sk- in prose", "sk-learn and task-1234567890abcdefghijkl"),
    ("short AWS-like", "AKIA1234"),
    ("already redacted", "password=[SECRET] and token: [SECRET]"),
]


@pytest.mark.parametrize(("reason", "text"), NEAR_MISSES, ids=[reason for reason, _ in NEAR_MISSES])
def test_near_misses_are_left_alone(reason: str, text: str) -> None:
    result = redact(text)
    assert result.text == text, reason
    assert result.counts == {}


SUPPORT_CHAT = (
    "Hi, it's Jane (jane@example.com, +44 20 7946 0958). My card 4111 1111 1111 1111 was charged twice, "
    "refund to DE89 3704 0044 0532 0130 00 please. Backup mail: j.doe@mail.example.org. "
    "I logged in from 203.0.113.7 with password=hunter2."
)


def test_counts_per_category_never_carry_values() -> None:
    result = redact(SUPPORT_CHAT)
    assert result.counts == {
        Category.EMAIL: 2,
        Category.PHONE: 1,
        Category.CARD: 1,
        Category.IBAN: 1,
        Category.IP_ADDRESS: 1,
        Category.SECRET: 1,
    }
    assert result.total == 7
    assert result.text == (
        "Hi, it's Jane ([EMAIL], [PHONE]). My card [CARD] was charged twice, refund to [IBAN] please. "
        "Backup mail: [EMAIL]. I logged in from [IP_ADDRESS] with password=[SECRET]."
    )
    for value in ("jane@", "7946", "4111", "DE89", "203.0", "hunter2"):
        assert value not in repr(result)


def test_placeholders_are_typed() -> None:
    assert [c.placeholder for c in Category] == [
        "[EMAIL]",
        "[PHONE]",
        "[CARD]",
        "[IBAN]",
        "[NATIONAL_ID]",
        "[IP_ADDRESS]",
        "[SECRET]",
    ]


def test_redacting_twice_changes_nothing() -> None:
    once = redact(SUPPORT_CHAT)
    twice = redact(once.text)
    assert twice.text == once.text
    assert twice.counts == {}


def test_empty_and_clean_text() -> None:
    assert redact("") == Redaction(text="", counts={})
    assert redact("Nothing to see here.").text == "Nothing to see here."


# --- policies -----------------------------------------------------------------------------------------------------


def test_default_policy_redacts_everything() -> None:
    assert all(DEFAULT_POLICY.action_for(c) is Action.REDACT for c in Category)
    assert RedactionPolicy() == DEFAULT_POLICY


def test_keep_leaves_a_category_verbatim_and_uncounted() -> None:
    policy = RedactionPolicy.from_mapping({"ip_address": "keep", "email": "keep"})
    result = redact(SUPPORT_CHAT, policy)
    assert "203.0.113.7" in result.text and "jane@example.com" in result.text
    assert Category.IP_ADDRESS not in result.counts and Category.EMAIL not in result.counts
    assert result.counts[Category.CARD] == 1


def test_a_kept_match_still_shields_its_text_from_looser_detectors() -> None:
    # "0532 0130 00" inside the IBAN is phone-shaped; keeping IBANs must not leave a half-redacted IBAN.
    result = redact("IBAN DE89 3704 0044 0532 0130 00", RedactionPolicy(iban=Action.KEEP))
    assert result.text == "IBAN DE89 3704 0044 0532 0130 00"
    assert result.counts == {}


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("card 4111 1111 1111 1111", Category.CARD),
        ("mail jane@example.com", Category.EMAIL),
        (f"token {GHP}", Category.SECRET),
        ("SSN 123-45-6789", Category.NATIONAL_ID),
    ],
)
def test_reject_raises_naming_the_category_and_the_fix_but_not_the_value(text: str, category: Category) -> None:
    policy = RedactionPolicy.from_mapping({category.value: "reject"})
    with pytest.raises(SensitiveContentRejected) as caught:
        redact(text, policy)
    error = caught.value
    assert isinstance(error, EngramError)
    assert error.categories == (category,)
    message = str(error)
    assert category.value in message
    assert "'redact'" in message and "'keep'" in message and "policy" in message
    assert text.split(" ", 1)[1] not in message


def test_reject_names_every_rejected_category_in_a_stable_order() -> None:
    policy = RedactionPolicy(card=Action.REJECT, secret=Action.REJECT, email=Action.REJECT)
    with pytest.raises(SensitiveContentRejected) as caught:
        redact(SUPPORT_CHAT, policy)
    assert caught.value.categories == (Category.EMAIL, Category.CARD, Category.SECRET)
    assert "email, card, secret" in str(caught.value)


def test_reject_only_fires_when_the_category_is_present() -> None:
    policy = RedactionPolicy(card=Action.REJECT)
    assert redact("mail jane@example.com", policy).text == "mail [EMAIL]"


def test_policy_from_mapping_is_forgiving_about_case_and_fills_defaults() -> None:
    policy = RedactionPolicy.from_mapping({"IP_ADDRESS": "Keep", " secret ": "REJECT"})
    assert policy.ip_address is Action.KEEP
    assert policy.secret is Action.REJECT
    assert policy.email is Action.REDACT
    assert RedactionPolicy.from_mapping({}) == DEFAULT_POLICY


def test_policy_strings_are_normalised_and_the_policy_is_frozen() -> None:
    policy = RedactionPolicy(phone="keep")  # type: ignore[arg-type]  # as Settings may hand it over
    assert policy.phone is Action.KEEP
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.phone = Action.REDACT  # type: ignore[misc]


@pytest.mark.parametrize(
    ("mapping", "field", "accepted"),
    [
        ({"ssn": "redact"}, "redaction_policy", "email, phone, card, iban, national_id, ip_address, secret"),
        ({"ip": "keep"}, "redaction_policy", "ip_address"),
        ({"email": "drop"}, "redaction_policy.email", "keep, redact, reject"),
        ({"card": ""}, "redaction_policy.card", "keep, redact, reject"),
    ],
)
def test_policy_parsing_refuses_unknown_names_saying_what_is_accepted(
    mapping: dict[str, str], field: str, accepted: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        RedactionPolicy.from_mapping(mapping)
    assert caught.value.field == field
    assert accepted in str(caught.value)


def test_direct_construction_with_a_bad_action_is_refused() -> None:
    with pytest.raises(InvalidInput, match="keep, redact, reject"):
        RedactionPolicy(email="erase")  # type: ignore[arg-type]


# --- overlaps -----------------------------------------------------------------------------------------------------

OVERLAPS: list[tuple[str, str, str]] = [
    ("a secret's value wins over the e-mail it looks like", "password=jane@example.com", "password=[SECRET]"),
    ("the rest of a match a secret cut short is still redacted", "pwd: +44 20 7946 0958", "pwd: [SECRET] [PHONE]"),
    ("the IBAN wins over the phone inside it", "IBAN DE89 3704 0044 0532 0130 00", "IBAN [IBAN]"),
    ("equal spans: the SSN wins over the national phone shape", "SSN 078-05-1120", "SSN [NATIONAL_ID]"),
    ("the IPv6 wins over the IPv4 it embeds", "::ffff:192.0.2.128", "[IP_ADDRESS]"),
    ("the JWT wins over the bearer shape", f"Authorization: Bearer {JWT}", "Authorization: Bearer [SECRET]"),
    ("the e-mail wins over the card in its local part", "4111111111111111@example.com", "[EMAIL]"),
    (
        "a phone run that continues into a card is split",
        "call +44 20 7946 0958 4111 1111 1111 1111",
        "call [PHONE] [CARD]",
    ),
    ("adjacent matches both go", "jane@example.com/203.0.113.7", "[EMAIL]/[IP_ADDRESS]"),
]


@pytest.mark.parametrize(("why", "text", "expected"), OVERLAPS, ids=[why for why, _, _ in OVERLAPS])
def test_overlaps_resolve_deterministically(why: str, text: str, expected: str) -> None:
    assert redact(text).text == expected, why
    assert redact(text) == redact(text)


# --- linear time --------------------------------------------------------------------------------------------------

SIZE = 100_000
ADVERSARIAL: dict[str, str] = {
    "letters": "a" * SIZE,
    "digits": "1" * SIZE,
    "at signs": "a@" * (SIZE // 2),
    "long local parts": ("x" * 70 + "@") * (SIZE // 71),
    "endless domain": "a@" + "b." * (SIZE // 2),
    "dotted digits": "1." * (SIZE // 2),
    "spaced digits": "4 " * (SIZE // 2),
    "card-like groups": "4444 " * (SIZE // 5),
    "plus signs": "+1 " * (SIZE // 3),
    "trunk zeros": "01 " * (SIZE // 3),
    "colons": ":" * SIZE,
    "hex and colons": "dead:beef:" * (SIZE // 10),
    "key headers": "-----BEGIN RSA PRIVATE KEY-----\n" * (SIZE // 32),
    "unterminated key": "-----BEGIN PRIVATE KEY-----" + "A" * SIZE,
    "assignments": "password: " * (SIZE // 10),
    "chained assignments": "a=" * (SIZE // 2),
    "chained secret assignments": "token=" * (SIZE // 6),
    "open quote": 'password="' + "a" * SIZE,
    "JWT-ish": "eyJ." * (SIZE // 4),
    "IBAN-ish": "DE89 " * (SIZE // 5),
    "sk-": "sk-" * (SIZE // 3),
    "bearer": "bearer " * (SIZE // 7),
    "URL credentials": "://" + "a:" * (SIZE // 2),
    "SSN-ish": "123-45-" * (SIZE // 7),
    "everything": SUPPORT_CHAT * (SIZE // len(SUPPORT_CHAT)),
}


def _cpu_seconds(text: str) -> float:
    """The least CPU time of three redactions of `text` (CPU time, not wall time: other jobs do not count)."""
    timings = []
    for _ in range(3):
        started = time.process_time()
        redact(text)
        timings.append(time.process_time() - started)
    return min(timings)


@pytest.mark.parametrize("text", list(ADVERSARIAL.values()), ids=list(ADVERSARIAL))
def test_adversarial_input_is_redacted_in_linear_time(text: str) -> None:
    # Catastrophic backtracking grows quadratically or worse: ten times the input would cost 100 times the time
    # or more. Linear work costs about 10 times; the bound leaves room for noise on a small measurement.
    small, large = _cpu_seconds(text[: SIZE // 10]), _cpu_seconds(text)
    assert large < 30 * max(small, 0.002), f"10 KB: {small * 1000:.1f} ms, 100 KB: {large * 1000:.1f} ms"
