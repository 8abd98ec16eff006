"""Redaction on write: sensitive details never reach any tier, file or index; policies keep or reject."""

from __future__ import annotations

from pathlib import Path

import pytest

from engram.config import Settings
from engram.core.errors import InvalidInput
from engram.core.models import RememberItem
from engram.core.service import MemoryService
from engram.embeddings.hashing import HashEmbedder
from engram.runtime import open_memory
from tests.helpers import stepping_clock

pytestmark = pytest.mark.anyio

EMAIL = "zoe.quartermain@example.com"
CARD = "4539 1488 0343 6467"
SECRET = "ghp_1234567890abcdefghijklmnopqrstuvwxyzAB"


def _assert_no_secret_on_disk(settings: Settings) -> None:
    """No redacted detail, raw or without the card's spaces, is in any file of the data directory."""
    raw = _all_bytes(settings.data_dir)
    for secret in (EMAIL, CARD, CARD.replace(" ", ""), SECRET, "quartermain"):
        assert secret.encode() not in raw, secret


def _all_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


async def test_sensitive_details_are_replaced_before_anything_is_stored(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash")
    service = open_memory(settings, HashEmbedder(), clock=stepping_clock)
    try:
        result = await service.remember(
            "alice",
            f"My email is {EMAIL} and my card is {CARD}; token={SECRET}",
            session_id="s1",
            metadata={"note": f"backup address {EMAIL}"},
        )
        assert result.redacted == {"email": 2, "card": 1, "secret": 1}
        stored = service.long_term.get(service.user_key("alice"), [result.id])[0]
        assert stored.content == "My email is [EMAIL] and my card is [CARD]; token=[SECRET]"
        assert stored.metadata == {"note": "backup address [EMAIL]"}
        assert [t.content for t in service.sessions.working(service.user_key("alice"), "s1")] == [stored.content]
        hits = (await service.recall("alice", "zoe quartermain example")).memories
        assert all(EMAIL not in h.memory.content for h in hits)
        service.long_term.inner.optimize()  # type: ignore[attr-defined]  # fold rows into the keyword index too
    finally:
        service.close()
    _assert_no_secret_on_disk(settings)


async def test_a_rejecting_policy_stores_nothing_and_names_the_field(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, embedding_model="hash", redaction_policy={"card": "reject"})
    service = open_memory(settings, HashEmbedder(), clock=stepping_clock)
    try:
        with pytest.raises(InvalidInput) as raised:
            await service.remember_many("alice", [RememberItem(content="fine"), RememberItem(content=f"card {CARD}")])
        assert raised.value.field == "items[1].content"
        assert "card" in str(raised.value) and CARD not in str(raised.value)
        assert service.long_term.count() == 0
    finally:
        service.close()


async def test_a_keeping_policy_stores_the_detail(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, embedding_model="hash", redaction_policy={"email": "keep"})
    service = open_memory(settings, HashEmbedder(), clock=stepping_clock)
    try:
        result = await service.remember("alice", f"write to {EMAIL}")
        assert result.redacted == {}
        assert service.long_term.get(service.user_key("alice"), [result.id])[0].content == f"write to {EMAIL}"
    finally:
        service.close()


def test_an_unknown_policy_entry_is_refused_with_what_is_accepted(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, embedding_model="hash", redaction_policy={"emails": "keep"})
    with pytest.raises(InvalidInput, match="ENGRAM_REDACTION_POLICY") as raised:
        open_memory(settings, HashEmbedder(), clock=stepping_clock)
    assert "email" in str(raised.value)


async def test_a_callers_summary_is_redacted_too(service: MemoryService) -> None:
    for i in range(4):
        await service.remember("alice", f"turn {i}", session_id="s1")
    result = await service.summarize_session("alice", "s1", keep_recent=1, summary=f"She gave {EMAIL}.")
    assert result.summary == "She gave [EMAIL]."


async def test_new_content_given_to_update_memory_is_redacted_too(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash")
    service = open_memory(settings, HashEmbedder(), clock=stepping_clock)
    try:
        first = await service.remember("alice", "How to reach me: ask at the front desk.")
        updated = await service.update_memory(
            "alice", first.id, content=f"How to reach me: {EMAIL}, card {CARD}, token={SECRET}"
        )
        assert updated.memory.content == "How to reach me: [EMAIL], card [CARD], token=[SECRET]"
        stored = service.long_term.get(service.user_key("alice"), [updated.id])[0]
        assert stored.content == updated.memory.content
        hits = (await service.recall("alice", "zoe quartermain example com")).memories
        assert all(EMAIL not in h.memory.content for h in hits)
        service.long_term.inner.optimize()  # type: ignore[attr-defined]  # fold rows into the keyword index too
    finally:
        service.close()
    _assert_no_secret_on_disk(settings)


async def test_a_rejecting_policy_refuses_update_memory_content_too(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, embedding_model="hash", redaction_policy={"card": "reject"})
    service = open_memory(settings, HashEmbedder(), clock=stepping_clock)
    try:
        first = await service.remember("alice", "payment details to follow")
        with pytest.raises(InvalidInput) as raised:
            await service.update_memory("alice", first.id, content=f"card {CARD}")
        assert raised.value.field == "content" and CARD not in str(raised.value)
        assert service.long_term.get(service.user_key("alice"), [first.id])[0].content == "payment details to follow"
    finally:
        service.close()
