"""MemoryService over real LanceDB and diskcache (fast deterministic embedder)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engram.config import Settings
from engram.core.errors import ConfirmationRequired, EmbeddingModelMismatch, InvalidInput, NothingToSummarize
from engram.core.filters import MemoryFilters
from engram.core.models import Kind, RememberItem, Role, Visibility
from engram.core.service import MemoryService, memory_id
from engram.embeddings.hashing import HashEmbedder
from engram.runtime import open_memory
from tests.helpers import TEST_NOW, stepping_clock

pytestmark = pytest.mark.anyio


async def test_remember_then_recall_returns_the_memory_with_its_tier_and_score(service: MemoryService) -> None:
    stored = await service.remember("alice", "Alice keeps bees on her roof", tags=["hobby"])
    assert stored.created
    result = await service.recall("alice", "bees roof")
    assert [h.memory.id for h in result.memories] == [stored.id]
    hit = result.memories[0]
    assert hit.tier == "long_term"
    assert 0.5 < hit.score <= 1.0
    assert hit.memory.tags == ["hobby"]
    assert hit.memory.kind is Kind.FACT


async def test_identical_content_is_stored_once_per_user(service: MemoryService) -> None:
    first = await service.remember("alice", "likes green tea")
    again = await service.remember("alice", "  likes green tea \n")
    other_user = await service.remember("bob", "likes green tea")
    assert first.created and not again.created and other_user.created
    assert first.id == again.id == memory_id(service.user_key("alice"), "likes green tea")
    assert other_user.id != first.id
    assert service.long_term.count() == 2


async def test_a_retried_turn_is_not_duplicated_but_a_new_turn_is_appended(service: MemoryService) -> None:
    await service.remember("alice", "hello", session_id="s1")
    await service.remember("alice", "hello", session_id="s1")  # retry
    await service.remember("alice", "hi there", session_id="s1", role=Role.ASSISTANT)
    await service.remember("alice", "hello", session_id="s1")  # said again, later: a new turn
    turns = service.sessions.working(service.user_key("alice"), "s1")
    assert [(t.role, t.content, t.seq) for t in turns] == [
        (Role.USER, "hello", 0),
        (Role.ASSISTANT, "hi there", 1),
        (Role.USER, "hello", 2),
    ]


async def test_working_memory_keeps_only_the_most_recent_turns(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, embedding_model="hash", working_memory_turns=3)
    service = open_memory(settings, HashEmbedder(), clock=stepping_clock)
    try:
        for i in range(5):
            result = await service.remember("alice", f"turn number {i}", session_id="s1")
        assert result.session_turns == 3
        recalled = await service.recall("alice", "turn", session_id="s1")
        assert [t.content for t in recalled.working] == ["turn number 2", "turn number 3", "turn number 4"]
        assert all(t.tier == "working" for t in recalled.working)
        # Short-term memory still has the whole session.
        transcript = service.sessions.transcript(service.user_key("alice"), "s1")
        assert transcript is not None and len(transcript) == 5
    finally:
        service.close()


async def test_working_memory_expires_but_the_session_stays_in_short_term(tmp_path: Path) -> None:
    # Working memory that lives 3.6 microseconds: expired by the time remember returns, with no sleeping.
    # (diskcache expires entries by the wall clock, which no test can move.)
    settings = Settings(data_dir=tmp_path, embedding_model="hash", working_memory_ttl_hours=1e-9)
    service = open_memory(settings, HashEmbedder(), clock=stepping_clock)
    try:
        await service.remember("alice", "a passing remark", session_id="s1")
        assert service.sessions.working(service.user_key("alice"), "s1") == []
        transcript = await service.transcript("alice", "s1")
        assert transcript.tier == "short_term"
        assert [t.content for t in transcript.turns] == ["a passing remark"]
        assert [s.session_id for s in await service.sessions_of("alice")] == ["s1"]
    finally:
        service.close()


async def test_sessions_are_listed_per_user_most_recent_first(service: MemoryService) -> None:
    await service.remember("alice", "first session turn", session_id="s1", agent_id="desktop")
    await service.remember("alice", "second session turn", session_id="s2", agent_id="ide")
    await service.remember("alice", "back in the first one", session_id="s1", agent_id="ide")
    await service.remember("bob", "bob's own session", session_id="s9")
    sessions = await service.sessions_of("alice")
    assert [(s.session_id, s.turns, s.agents) for s in sessions] == [("s1", 2, ["desktop", "ide"]), ("s2", 1, ["ide"])]


async def test_users_are_isolated_and_forgetting_one_leaves_the_other(service: MemoryService) -> None:
    await service.remember("alice", "alice secret plan for the garden", session_id="s1")
    await service.remember("bob", "bob plan for the garden", session_id="s1")
    bob_hits = (await service.recall("bob", "secret plan garden", top_k=10)).memories
    assert [h.memory.user_id for h in bob_hits] == ["bob"]

    with pytest.raises(ConfirmationRequired):
        await service.forget_user("alice", confirm=False)
    receipt = await service.forget_user("alice", confirm=True)
    assert (receipt.long_term, receipt.working, receipt.short_term) == (1, 1, 1)
    assert (await service.recall("alice", "garden")).memories == []
    assert service.sessions.working(service.user_key("alice"), "s1") == []
    assert await service.sessions_of("alice") == []
    assert [h.memory.content for h in (await service.recall("bob", "garden")).memories] == ["bob plan for the garden"]
    assert len(service.sessions.working(service.user_key("bob"), "s1")) == 1


@pytest.mark.parametrize("hostile", ["x' OR '1'='1", "alice' OR user_id != '", "a'); DROP TABLE memories; --"])
async def test_hostile_user_ids_are_refused_by_the_service(service: MemoryService, hostile: str) -> None:
    await service.remember("alice", "alice only")
    with pytest.raises(InvalidInput, match="user_id"):
        await service.recall(hostile, "alice")
    with pytest.raises(InvalidInput, match="user_id"):
        await service.forget_user(hostile, confirm=True)
    assert service.long_term.count() == 1


@pytest.mark.parametrize("hostile", ["x' OR '1'='1", "alice' OR user_id != '", "' OR 1=1 --"])
async def test_hostile_ids_reaching_storage_match_and_delete_nothing(service: MemoryService, hostile: str) -> None:
    # Defence in depth: even past the id check, storage quotes every literal.
    await service.remember("alice", "alice only")
    await service.remember("bob", "bob only")
    vector = service.embedder.embed(["only"])[0]
    store = service.long_term
    assert store.vector_search(hostile, vector, MemoryFilters(), 10) == []
    assert store.keyword_search(hostile, "only", MemoryFilters(), 10) == []
    assert (
        store.vector_search(
            service.user_key("alice"), vector, MemoryFilters.model_construct(tags=[hostile], category=hostile), 10
        )
        == []
    )
    assert store.list_memories(hostile, MemoryFilters(), 10) == []
    # Built without the filters' own checks: storage must hold even for values that got past them.
    every_field = MemoryFilters.model_construct(
        from_agents=[hostile],
        exclude_agents=[hostile],
        from_session=hostile,
        tags_all=[hostile],
        entity=hostile,
        category=hostile,
    ).seen_by(hostile)
    alice = service.user_key("alice")
    assert store.list_memories(alice, every_field, 10) == []
    assert store.keyword_search(alice, "only", every_field, 10) == []
    assert store.agent_activity(hostile) == []
    assert store.get(hostile, [memory_id(service.user_key("alice"), "alice only")]) == []
    assert store.delete(hostile, [memory_id(service.user_key("alice"), "alice only")]) == 0
    assert store.delete_user(hostile) == 0
    assert service.long_term.count() == 2


async def test_filters_narrow_long_term_recall(service: MemoryService) -> None:
    await service.remember("alice", "invoice was charged twice", agent_id="billing", tags=["billing"], category="issue")
    await service.remember("alice", "app crashes on start", agent_id="support", tags=["technical"], session_id="s2")
    await service.remember("alice", "prefers email contact", category="preference")

    async def contents(**filters: object) -> set[str]:
        hits = (await service.recall("alice", "invoice app email", top_k=10, filters=MemoryFilters(**filters))).memories
        return {h.memory.content for h in hits}

    assert await contents() == {"invoice was charged twice", "app crashes on start", "prefers email contact"}
    assert await contents(from_agents=["billing"]) == {"invoice was charged twice"}
    assert await contents(from_session="s2") == {"app crashes on start"}
    assert await contents(tags=["technical", "nope"]) == {"app crashes on start"}
    assert await contents(category="preference") == {"prefers email contact"}
    assert await contents(kind=Kind.TURN) == {"app crashes on start"}
    assert await contents(category="issue", from_agents=["support"]) == set()
    future = TEST_NOW + timedelta(days=1)
    assert await contents(since=future) == set()
    assert len(await contents(until=future)) == 3


async def test_min_score_drops_weak_matches_and_says_how_many(service: MemoryService) -> None:
    await service.remember("alice", "the quick brown fox")
    await service.remember("alice", "completely unrelated words here")
    # Hash embeddings of the indexed text "(date) the quick brown fox": 3 of 7 words shared gives cosine
    # 3/sqrt(21) ~ 0.65; the other memory shares no word with the query (~0).
    result = await service.recall("alice", "quick brown fox", top_k=10, min_score=0.5)
    assert [h.memory.content for h in result.memories] == ["the quick brown fox"]
    assert result.dropped_below_min_score == 1


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda s: s.remember("alice", "   \n\t "), "content"),
        (lambda s: s.remember("alice", "x" * 100_001), "content"),
        (lambda s: s.remember("", "hello"), "user_id"),
        (lambda s: s.remember("alice", "hello", session_id="bad id"), "session_id"),
        (lambda s: s.remember("alice", "hello", agent_id="-leading-dash"), "agent_id"),
        (lambda s: s.remember("alice", "hello", tags=["ok", " "]), "tags"),
        (lambda s: s.remember("alice", "hello", tags=[f"t{i}" for i in range(33)]), "tags"),
        (lambda s: s.remember("alice", "hello", metadata={f"k{i}": i for i in range(33)}), "metadata"),
        (lambda s: s.remember("alice", "hello", metadata={"x": float("nan")}), "metadata"),
        (lambda s: s.remember("alice", "hello", importance=1.5), "importance"),
        (lambda s: s.recall("alice", "  "), "query"),
        (lambda s: s.recall("alice", "tea", top_k=0), "top_k"),
        (lambda s: s.recall("alice", "tea", top_k=51), "top_k"),
        (lambda s: s.recall("alice", "tea", min_score=2.0), "min_score"),
        (lambda s: s.summarize_session("alice", "s1", keep_recent=-1), "keep_recent"),
        (lambda s: s.summarize_session("alice", "unknown-session"), "session_id"),
        (lambda s: s.transcript("alice", "unknown-session"), "session_id"),
    ],
)
async def test_bad_input_names_the_field(service: MemoryService, call, field: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput) as raised:
        await call(service)
    assert raised.value.field == field
    assert str(raised.value).startswith(f"Invalid '{field}':")


async def _thirty_turn_session(service: MemoryService) -> list[str]:
    ids = []
    for i in range(30):
        role = Role.USER if i % 2 == 0 else Role.ASSISTANT
        result = await service.remember(
            "alice", f"Turn {i}: we talked about topic {i % 5}.", session_id="s1", role=role
        )
        ids.append(result.id)
    return ids


async def test_summarize_with_the_callers_summary(service: MemoryService) -> None:
    ids = await _thirty_turn_session(service)
    result = await service.summarize_session(
        "alice", "s1", keep_recent=5, summary="Alice and the assistant went through topics 0 to 4 in turn."
    )
    assert result.method == "caller"
    assert (result.summarized_turns, result.kept_turns) == (25, 5)
    assert result.replaced_ids == ids[:25]

    working = service.sessions.working(service.user_key("alice"), "s1")
    assert [t.is_summary for t in working] == [True, False, False, False, False, False]
    assert working[0].content == result.summary
    assert [t.content for t in working[1:]] == [f"Turn {i}: we talked about topic {i % 5}." for i in range(25, 30)]

    stored = service.long_term.get(service.user_key("alice"), [result.summary_id])[0]
    assert stored.kind is Kind.SUMMARY and stored.links == ids[:25] and stored.session_id == "s1"
    recalled = await service.recall("alice", "went through topics", filters=MemoryFilters(kind=Kind.SUMMARY))
    assert [h.memory.id for h in recalled.memories] == [result.summary_id]
    sessions = await service.sessions_of("alice")
    assert sessions[0].summary == result.summary and sessions[0].turns == 30


async def test_summarize_builds_an_extractive_summary_within_budget(service: MemoryService) -> None:
    await _thirty_turn_session(service)
    result = await service.summarize_session("alice", "s1", keep_recent=5)
    assert result.method == "extractive"
    assert 0 < len(result.summary) <= service.policy.summary_max_chars
    lines = result.summary.splitlines()
    assert all(line.startswith(("user: Turn ", "assistant: Turn ")) for line in lines)
    # Only the 25 older turns are summarised, never the kept ones.
    assert all(int(line.split("Turn ")[1].split(":")[0]) < 25 for line in lines)


async def test_summaries_roll_forward_and_refuse_when_nothing_is_older(service: MemoryService) -> None:
    await _thirty_turn_session(service)
    await service.summarize_session("alice", "s1", keep_recent=5, summary="First part.")
    with pytest.raises(NothingToSummarize):
        await service.summarize_session("alice", "s1", keep_recent=5)
    for i in range(30, 34):
        await service.remember("alice", f"Later turn {i}.", session_id="s1")
    second = await service.summarize_session("alice", "s1", keep_recent=5, summary="Second part.")
    assert second.summarized_turns == 4  # turns 25..28, not the ones already summarised
    working = service.sessions.working(service.user_key("alice"), "s1")
    assert working[0].content == "Second part." and len(working) == 6


async def test_memories_survive_a_restart(settings: Settings) -> None:
    first = open_memory(settings, HashEmbedder(), clock=stepping_clock)
    stored = await first.remember("alice", "persisted across restarts", session_id="s1")
    first.close()
    second = open_memory(settings, HashEmbedder(), clock=stepping_clock)
    try:
        result = await second.recall("alice", "persisted restarts", session_id="s1")
        assert [h.memory.id for h in result.memories] == [stored.id]
        assert [t.content for t in result.working] == ["persisted across restarts"]
    finally:
        second.close()


async def test_a_store_built_with_another_model_fails_fast(settings: Settings) -> None:
    open_memory(settings, HashEmbedder(256), clock=stepping_clock).close()
    with pytest.raises(EmbeddingModelMismatch, match="ENGRAM_EMBEDDING_MODEL"):
        open_memory(settings, HashEmbedder(128), clock=stepping_clock)


async def test_recent_memories_are_newest_first(service: MemoryService) -> None:
    for i in range(3):
        await service.remember("alice", f"memory {i}")
    assert [m.content for m in await service.recent_memories("alice", 2)] == ["memory 2", "memory 1"]


async def test_remember_many_stores_a_batch_with_one_embedding_call(service: MemoryService, embedder) -> None:  # type: ignore[no-untyped-def]
    items = [
        RememberItem(content="first turn of the import", session_id="old", metadata={"speaker": "Ana"}),
        RememberItem(content="second turn of the import", session_id="old", role=Role.ASSISTANT),
        RememberItem(content="a standalone fact", tags=["import"]),
        RememberItem(content="first turn of the import", session_id="other"),  # same content: stored once
    ]
    calls = embedder.calls
    results = await service.remember_many("alice", items)
    assert embedder.calls == calls + 1
    assert [r.created for r in results] == [True, True, True, False]
    assert results[0].id == results[3].id
    assert service.long_term.count() == 3
    turns = service.sessions.working(service.user_key("alice"), "old")
    assert [(t.seq, t.speaker, t.content) for t in turns] == [
        (0, "Ana", "first turn of the import"),
        (1, None, "second turn of the import"),
    ]
    stored = service.long_term.get(service.user_key("alice"), [results[1].id])[0]
    assert stored.turn_index == 1 and stored.role is Role.ASSISTANT
    again = await service.remember_many("alice", items[:3])
    assert [r.created for r in again] == [False, False, False]
    assert service.long_term.count() == 3


async def test_a_bad_item_stores_nothing_and_is_named(service: MemoryService) -> None:
    items = [RememberItem(content="fine"), RememberItem(content="   ")]
    with pytest.raises(InvalidInput) as raised:
        await service.remember_many("alice", items)
    assert raised.value.field == "items[1].content"
    assert service.long_term.count() == 0
    with pytest.raises(InvalidInput, match="1 to 500"):
        await service.remember_many("alice", [RememberItem(content="x")] * 501)


async def test_two_servers_on_one_data_dir_see_each_others_writes(settings: Settings) -> None:
    first, second = (
        open_memory(settings, HashEmbedder(), clock=stepping_clock),
        open_memory(settings, HashEmbedder(), clock=stepping_clock),
    )
    try:
        written = await first.remember("alice", "tulips in the front garden")
        assert [h.memory.id for h in (await second.recall("alice", "tulips garden")).memories] == [written.id]
        again = await second.remember("alice", "tulips in the front garden")
        assert not again.created and second.long_term.count() == 1  # no duplicate across processes
        await second.remember("alice", "roses in the back garden")
        receipt = await first.forget_user("alice", confirm=True)
        assert receipt.long_term == 2
        assert (await second.recall("alice", "garden")).memories == []
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda s: s.remember("alice", "tea", occurred_at=datetime(1, 1, 1, tzinfo=UTC)), "occurred_at"),
    ],
)
async def test_values_storage_cannot_hold_are_refused_by_name(service: MemoryService, call, field: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput) as raised:
        await call(service)
    assert raised.value.field == field


async def test_min_score_is_applied_before_the_top_k_cut(service: MemoryService) -> None:
    await service.remember("alice", "orchid orchid orchid greenhouse")  # keyword-heavy, semantically weaker
    await service.remember("alice", "the orchid needs a greenhouse")
    ranked = (await service.recall("alice", "orchid greenhouse", top_k=2)).memories
    weakest = min(ranked, key=lambda h: h.scores.similarity)
    strongest = max(ranked, key=lambda h: h.scores.similarity)
    threshold = (weakest.scores.similarity + strongest.scores.similarity) / 2
    result = await service.recall("alice", "orchid greenhouse", top_k=1, min_score=threshold)
    assert [h.memory.id for h in result.memories] == [strongest.memory.id]
    assert result.dropped_below_min_score == (1 if ranked[0].memory.id == weakest.memory.id else 0)


async def test_extractive_summaries_replace_older_turns_and_do_not_nest_labels(service: MemoryService) -> None:
    await _thirty_turn_session(service)
    first = await service.summarize_session("alice", "s1", keep_recent=5)
    working = service.sessions.working(service.user_key("alice"), "s1")
    assert [t.is_summary for t in working] == [True] + [False] * 5
    recalled = await service.recall("alice", "topic", top_k=5, filters=MemoryFilters(kind=Kind.SUMMARY))
    assert [h.memory.id for h in recalled.memories] == [first.summary_id]
    for round_ in range(2):
        for i in range(3):
            await service.remember("alice", f"Round {round_} extra turn {i} about topic {i}.", session_id="s1")
        later = await service.summarize_session("alice", "s1", keep_recent=2)
        assert not any(line.startswith((": ", "summary:")) for line in later.summary.splitlines()), later.summary


def test_log_level_is_case_insensitive(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path, log_level="info").log_level == "INFO"  # type: ignore[arg-type]


async def test_a_transcript_shows_another_agents_private_turns_in_neither_tier(tmp_path: Path) -> None:
    # A working memory that has always expired by the next read, so the transcript comes from short-term memory.
    for ttl_hours, tier in ((1.0, "working"), (1e-9, "short_term")):
        settings = Settings(data_dir=tmp_path / tier, embedding_model="hash", working_memory_ttl_hours=ttl_hours)
        service = open_memory(settings, HashEmbedder(), clock=stepping_clock)
        try:
            await service.remember("alice", "ide says hello", session_id="s1", agent_id="ide")
            await service.remember(
                "alice", "ide thinks", session_id="s1", agent_id="ide", visibility=Visibility.PRIVATE
            )
            await service.remember("alice", "desk answers", session_id="s1", agent_id="desk")
            for viewer, expected in (
                ("ide", ["ide says hello", "ide thinks", "desk answers"]),
                ("desk", ["ide says hello", "desk answers"]),
                (None, ["ide says hello", "desk answers"]),
            ):
                transcript = await service.transcript("alice", "s1", agent_id=viewer)
                assert transcript.tier == tier
                assert [t.content for t in transcript.turns] == expected, (tier, viewer)
        finally:
            service.close()
