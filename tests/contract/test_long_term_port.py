"""The LongTermStore contract, in domain terms: what any back end must do, run against each one."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from engram.core.filters import MemoryFilters
from engram.core.models import Kind, Memory, Visibility
from engram.core.ports import LongTermStore
from engram.embeddings.hashing import HashEmbedder

EMBED = HashEmbedder()
T0 = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)
ALICE, BOB = "k-alice", "k-bob"
EVERYONE = MemoryFilters()


def memory(user: str, n: int, content: str, **fields: object) -> Memory:
    return Memory.model_validate(
        {"id": f"{user}-m{n}", "user_id": user, "content": content, "created_at": T0 + timedelta(minutes=n), **fields}
    )


def store(target: LongTermStore, *memories: Memory) -> None:
    for m in memories:
        assert target.add(m, m.content, EMBED.embed([m.content]))


def test_an_insert_is_conditional_on_the_id(long_term: LongTermStore) -> None:
    first = memory(ALICE, 1, "green tea every morning")
    assert long_term.add(first, first.content, EMBED.embed([first.content]))
    assert not long_term.add(first, first.content, EMBED.embed([first.content]))
    batch = [first, memory(ALICE, 2, "a violin lesson on tuesdays"), memory(ALICE, 3, "allergic to peanuts")]
    inserted = long_term.add_many(batch, [m.content for m in batch], EMBED.embed([m.content for m in batch]))
    assert inserted == {f"{ALICE}-m2", f"{ALICE}-m3"}
    assert long_term.count() == 3


def test_reads_and_deletes_see_only_the_named_user(long_term: LongTermStore) -> None:
    store(long_term, memory(ALICE, 1, "green tea every morning"), memory(BOB, 1, "green tea in the evening"))
    assert [m.id for m in long_term.get(ALICE, [f"{ALICE}-m1", f"{BOB}-m1"])] == [f"{ALICE}-m1"]
    query = EMBED.embed(["green tea"])
    assert {c.memory.user_id for c in long_term.vector_search(ALICE, query, EVERYONE, 10)} == {ALICE}
    assert {c.memory.user_id for c in long_term.keyword_search(BOB, "green tea", EVERYONE, 10)} == {BOB}
    assert long_term.delete(ALICE, [f"{BOB}-m1"]) == 0  # another user's id deletes nothing
    assert [m.id for m in long_term.list_memories(BOB, EVERYONE, 10)] == [f"{BOB}-m1"]


def test_searches_rank_best_first_within_the_limit(long_term: LongTermStore) -> None:
    store(
        long_term,
        memory(ALICE, 1, "the cat sleeps on the sofa"),
        memory(ALICE, 2, "green tea every morning before work"),
        memory(ALICE, 3, "a violin lesson on tuesdays"),
    )
    by_meaning = long_term.vector_search(ALICE, EMBED.embed(["green tea every morning"]), EVERYONE, 2)
    assert len(by_meaning) == 2 and by_meaning[0].memory.id == f"{ALICE}-m2"
    assert by_meaning[0].score >= by_meaning[1].score
    assert by_meaning[0].vector.shape == (EMBED.dimensions,)
    by_words = long_term.keyword_search(ALICE, "violin tuesdays", EVERYONE, 5)
    assert by_words[0].memory.id == f"{ALICE}-m3"
    assert all(earlier.score >= later.score for earlier, later in itertools.pairwise(by_words))


def test_filters_and_agent_visibility_apply_to_every_read(long_term: LongTermStore) -> None:
    store(
        long_term,
        memory(ALICE, 1, "shared note about the garden", agent_id="planner", tags=["garden"]),
        memory(ALICE, 2, "private note about the garden", agent_id="coder", visibility=Visibility.PRIVATE),
        memory(ALICE, 3, "summary of the garden talk", kind=Kind.SUMMARY, agent_id="planner"),
    )
    query = EMBED.embed(["note about the garden"])
    planner = MemoryFilters().seen_by("planner")
    seen = {c.memory.id for c in long_term.vector_search(ALICE, query, planner, 10)}
    assert seen == {f"{ALICE}-m1", f"{ALICE}-m3"}  # never another agent's private memory
    coder = MemoryFilters().seen_by("coder")
    assert f"{ALICE}-m2" in {m.id for m in long_term.list_memories(ALICE, coder, 10)}
    tagged = long_term.keyword_search(ALICE, "garden", MemoryFilters(tags=["garden"]), 10)
    assert [c.memory.id for c in tagged] == [f"{ALICE}-m1"]
    summaries = long_term.list_memories(ALICE, MemoryFilters(kind=Kind.SUMMARY), 10)
    assert [m.id for m in summaries] == [f"{ALICE}-m3"]


def test_listing_is_newest_first_and_pages(long_term: LongTermStore) -> None:
    store(long_term, *(memory(ALICE, n, f"entry number {n}") for n in range(5)))
    newest = [m.id for m in long_term.list_memories(ALICE, EVERYONE, 2)]
    assert newest == [f"{ALICE}-m4", f"{ALICE}-m3"]
    assert [m.id for m in long_term.list_memories(ALICE, EVERYONE, 2, offset=2)] == [f"{ALICE}-m2", f"{ALICE}-m1"]


def test_a_replacement_keeps_the_vector_unless_given(long_term: LongTermStore) -> None:
    old = memory(ALICE, 1, "meeting on monday")
    store(long_term, old)
    new = old.model_copy(update={"id": f"{ALICE}-m1b", "content": "meeting moved to friday", "updated_at": T0})
    assert long_term.replace(ALICE, old.id, new, new.content, EMBED.embed([new.content]))
    assert [m.content for m in long_term.get(ALICE, [old.id, new.id])] == ["meeting moved to friday"]
    assert long_term.keyword_search(ALICE, "friday", EVERYONE, 5)[0].memory.id == new.id


def test_retention_deletes_only_what_is_older_than_the_cutoff(long_term: LongTermStore) -> None:
    store(
        long_term,
        memory(ALICE, 1, "old chat", category="chit-chat"),
        memory(BOB, 2, "old fact", category="health"),
        memory(ALICE, 90, "new chat", category="chit-chat"),
    )
    cutoff = T0 + timedelta(minutes=30)
    assert long_term.delete_older_than(cutoff, exclude=["health"]) == 1
    assert long_term.delete_older_than(cutoff, category="health") == 1
    assert [m.content for m in long_term.list_memories(ALICE, EVERYONE, 10)] == ["new chat"]


def test_erasing_a_user_leaves_no_trace_and_keeps_the_others(long_term: LongTermStore) -> None:
    store(long_term, *(memory(ALICE, n, f"alice secret {n}") for n in range(3)), memory(BOB, 1, "bob's note"))
    assert long_term.traces_of(ALICE) != []
    assert long_term.delete_user(ALICE) == 3
    assert long_term.traces_of(ALICE) == []
    assert long_term.count() == 1 and [m.id for m in long_term.get(BOB, [f"{BOB}-m1"])] == [f"{BOB}-m1"]
    activity = long_term.agent_activity(BOB)
    assert [a.shared for a in activity] == [1]


def test_project_filters_reach_the_current_project_and_global_memories(long_term: LongTermStore) -> None:
    store(
        long_term,
        memory(ALICE, 1, "deploy on weekdays"),
        memory(ALICE, 2, "deploy the webshop with the blue pipeline", project="webshop"),
        memory(ALICE, 3, "deploy the firmware by hand", project="firmware"),
    )

    def listed(**filters: object) -> list[str]:
        found = long_term.list_memories(ALICE, MemoryFilters.model_validate(filters), 10)
        return sorted(m.id.removeprefix(f"{ALICE}-") for m in found)

    assert listed() == ["m1"]
    assert listed(project="webshop") == ["m1", "m2"]
    assert listed(project="webshop", projects="only") == ["m2"]
    assert listed(projects="any") == ["m1", "m2", "m3"]
    hits = long_term.keyword_search(ALICE, "deploy", MemoryFilters(project="firmware"), 10)
    assert sorted(c.memory.id for c in hits) == [f"{ALICE}-m1", f"{ALICE}-m3"]


def test_stored_memories_and_project_erasure_cover_every_agent_and_only_that_project(
    long_term: LongTermStore,
) -> None:
    store(
        long_term,
        memory(ALICE, 1, "global note"),
        memory(ALICE, 2, "private webshop note", project="webshop", agent_id="ide", visibility=Visibility.PRIVATE),
        memory(ALICE, 3, "shared webshop note", project="webshop"),
        memory(BOB, 1, "bob's webshop note", project="webshop"),
    )
    everything = long_term.stored_memories(ALICE)
    assert [s.memory.id for s in everything] == [f"{ALICE}-m1", f"{ALICE}-m2", f"{ALICE}-m3"]  # oldest first
    assert everything[0].index_text == "global note" and everything[0].vector.shape == (EMBED.dimensions,)
    assert [s.memory.id for s in long_term.stored_memories(ALICE, "webshop")] == [f"{ALICE}-m2", f"{ALICE}-m3"]
    assert sorted(long_term.delete_project(ALICE, "webshop")) == [f"{ALICE}-m2", f"{ALICE}-m3"]
    assert [s.memory.id for s in long_term.stored_memories(ALICE)] == [f"{ALICE}-m1"]
    assert [s.memory.id for s in long_term.stored_memories(BOB)] == [f"{BOB}-m1"]


def test_validity_filters_keep_what_held_at_a_time(long_term: LongTermStore) -> None:
    day = timedelta(days=1)
    store(
        long_term,
        memory(ALICE, 1, "lives in Paris", valid_from=T0, valid_until=T0 + 10 * day, superseded_by=[f"{ALICE}-m2"]),
        memory(ALICE, 2, "lives in Berlin", valid_from=T0 + 10 * day, supersedes=[f"{ALICE}-m1"]),
        memory(ALICE, 3, "likes green tea"),  # no valid_from: it holds from its created_at
    )
    query = EMBED.embed(["lives in"])

    def found(**filters: object) -> list[str]:
        seen = long_term.vector_search(ALICE, query, MemoryFilters.model_validate(filters), 10)
        return sorted(c.memory.id.removeprefix(f"{ALICE}-") for c in seen)

    assert found(as_of=T0 + 5 * day) == ["m1", "m3"]
    assert found(as_of=T0 + 20 * day) == ["m2", "m3"]
    assert found(as_of=T0 - day) == []
    assert found(open_at=T0 + 20 * day) == ["m2", "m3"]
    (paris,) = long_term.get(ALICE, [f"{ALICE}-m1"])
    assert paris.valid_until == T0 + 10 * day and paris.superseded_by == [f"{ALICE}-m2"]


def test_a_long_memory_scores_by_its_best_passage_and_goes_with_it(long_term: LongTermStore) -> None:
    long = memory(ALICE, 1, "an opening about gardening schedules")
    store(long_term, long, memory(ALICE, 2, "a violin lesson on tuesdays"), memory(BOB, 1, "bob's spare key"))
    later = ["the spare key is taped under the blue flowerpot"]
    long_term.add_passages(ALICE, long.id, later, EMBED.embed(later))
    query = EMBED.embed(["spare key blue flowerpot"])
    (best, *_) = long_term.vector_search(ALICE, query, EVERYONE, 2)
    assert best.memory.id == long.id and best.passage == later[0]
    own = long_term.vector_search(ALICE, query, EVERYONE, 2, passages=False)
    assert all(c.passage is None for c in own) and own[0].score < best.score
    assert long_term.delete(ALICE, [long.id]) == 1
    assert long.id not in {c.memory.id for c in long_term.vector_search(ALICE, query, EVERYONE, 5)}
    assert long_term.delete_user(ALICE) == 1
    assert long_term.traces_of(ALICE) == []
