"""The GraphStore contract, in domain terms: what any back end must do, run against each one."""

from __future__ import annotations

from datetime import UTC, datetime

from engram.core.filters import MemoryFilters
from engram.core.graph_models import Entity, Relation, entity_key
from engram.core.models import Visibility
from engram.core.ports import GraphStore

T0 = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)
ALICE, BOB = "k-alice", "k-bob"
EVERYONE = MemoryFilters()


def entity(user: str, name: str, **fields: object) -> Entity:
    return Entity.model_validate({"id": f"{user}-{name}", "user_id": user, "name": name, "created_at": T0, **fields})


def relation(user: str, source: str, target: str, **fields: object) -> Relation:
    return Relation.model_validate(
        {
            "id": f"{user}-{source}-{target}",
            "user_id": user,
            "source": source,
            "target": target,
            "relation_type": "works at",
            "valid_from": T0,
            "created_at": T0,
            **fields,
        }
    )


def test_reads_and_deletes_see_only_the_named_user(graph: GraphStore) -> None:
    graph.upsert_entities([entity(ALICE, "Priya", aliases=["P. Patel"]), entity(BOB, "Priya"), entity(ALICE, "Acme")])
    assert graph.upsert_relations([relation(ALICE, "Priya", "Acme"), relation(BOB, "Priya", "Acme")]) == {
        f"{ALICE}-Priya-Acme",
        f"{BOB}-Priya-Acme",
    }
    assert {e.id for e in graph.entities(ALICE, EVERYONE, None, 10)} == {f"{ALICE}-Priya", f"{ALICE}-Acme"}
    by_alias = graph.entities(ALICE, EVERYONE, [entity_key("p. patel")], 10)
    assert [e.id for e in by_alias] == [f"{ALICE}-Priya"]
    assert [r.id for r in graph.relations(BOB, EVERYONE, [entity_key("Acme")], 10)] == [f"{BOB}-Priya-Acme"]
    assert graph.delete_entities(ALICE, [f"{BOB}-Priya"]) == 0  # another user's id deletes nothing
    assert graph.delete_relations(ALICE, [f"{BOB}-Priya-Acme"]) == 0
    assert graph.count() == 5
    assert graph.delete_user(ALICE) == 3
    assert graph.entities(ALICE, EVERYONE, None, 10) == []
    assert [e.id for e in graph.entities(BOB, EVERYONE, None, 10)] == [f"{BOB}-Priya"]


def test_an_upsert_replaces_the_row_with_the_same_id(graph: GraphStore) -> None:
    graph.upsert_entities([entity(ALICE, "Priya")])
    graph.upsert_entities([entity(ALICE, "Priya", aliases=["Pri"], entity_type="person")])
    (stored,) = graph.entities(ALICE, EVERYONE, None, 10)
    assert stored.aliases == ["Pri"] and stored.entity_type == "person"
    assert graph.upsert_relations([relation(ALICE, "Priya", "Acme")]) == {f"{ALICE}-Priya-Acme"}
    assert graph.upsert_relations([relation(ALICE, "Priya", "Acme", valid_until=T0)]) == set()  # not new
    (edge,) = graph.relations(ALICE, EVERYONE, None, 10)
    assert edge.valid_until == T0


def test_agent_visibility_applies_to_every_read(graph: GraphStore) -> None:
    private = {"agent_id": "coder", "visibility": Visibility.PRIVATE}
    graph.upsert_entities([entity(ALICE, "Priya"), entity(ALICE, "Secret", **private)])
    graph.upsert_relations([relation(ALICE, "Priya", "Secret", **private)])
    planner = MemoryFilters().seen_by("planner")
    assert [e.name for e in graph.entities(ALICE, planner, None, 10)] == ["Priya"]
    assert graph.relations(ALICE, planner, None, 10) == []
    coder = MemoryFilters().seen_by("coder")
    assert {e.name for e in graph.entities(ALICE, coder, None, 10)} == {"Priya", "Secret"}
    assert len(graph.relations(ALICE, coder, None, 10)) == 1
    assert graph.traces_of(ALICE) != [] and graph.bytes_on_disk() > 0
