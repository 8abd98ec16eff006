"""The recall and list_memories filters are declared once (`core/filters.py`): the tools' schema is that model."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from mcp import Client
from pydantic import ValidationError

from engram.core.filters import MemoryFilters
from engram.core.models import Visibility
from tests.helpers import error, ok

pytestmark = pytest.mark.anyio


def _filters_schema(tool_schema: dict[str, Any]) -> dict[str, Any]:
    """The object schema a tool's `filters` argument points at."""
    ref = tool_schema["properties"]["filters"]["$ref"].rsplit("/", 1)[-1]
    found: dict[str, Any] = tool_schema["$defs"][ref]
    return found


#: Validity in time is set by the service (from recall's own `as_of`, or "now"): not in the tools' schema.
SERVICE_SET = {"as_of", "open_at"}


async def test_the_tools_filter_properties_are_the_models_fields(client: Client) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    for name in ("recall", "list_memories"):
        schema = _filters_schema(tools[name].input_schema)
        assert list(schema["properties"]) == [f for f in MemoryFilters.model_fields if f not in SERVICE_SET], name
        assert schema["additionalProperties"] is False, name
        # Each field's limits reach the schema from the same declaration.
        assert schema["properties"]["from_agents"]["maxItems"] == 20
        assert schema["properties"]["min_importance"]["maximum"] == 1.0


@pytest.mark.parametrize(
    ("given", "field", "accepted"),
    [
        ({"tags": ["ok", "a\x00b"]}, ("tags", 1), "non-blank characters without control"),
        ({"tags_all": [" "]}, ("tags_all", 0), "non-blank characters without control"),
        ({"category": "x\x00"}, ("category",), "non-blank characters without control"),
        ({"entity": "   "}, ("entity",), "non-blank characters"),
        ({"since": datetime(1, 1, 1)}, ("since",), "between the years 1000 and 9998"),
        ({"since": datetime(2026, 2, 1), "until": datetime(2026, 1, 1)}, ("until",), "earlier than 'until'"),
        ({"from_agents": ["bad id"]}, ("from_agents", 0), "pattern"),
        ({"min_importance": 1.5}, ("min_importance",), "less than or equal to 1"),
        ({"viewer_agent": "someone-else"}, ("viewer_agent",), "Extra inputs"),
    ],
)
def test_a_filter_value_is_refused_once_when_parsed_naming_its_field(
    given: dict[str, Any], field: tuple[str | int, ...], accepted: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        MemoryFilters.model_validate(given)
    (problem,) = raised.value.errors()
    assert problem["loc"][: len(field)] == field and accepted in problem["msg"]


def test_parsed_filters_are_in_the_form_stores_keep() -> None:
    parsed = MemoryFilters(tags=[" Billing", "billing", "URGENT"], category=" issue ", since=datetime(2026, 1, 1))
    assert parsed.tags == ["billing", "urgent"]
    assert parsed.category == "issue"
    assert parsed.since == datetime(2026, 1, 1, tzinfo=UTC)


def test_only_the_service_says_who_is_asking() -> None:
    private = Visibility.PRIVATE
    assert not MemoryFilters().admits("desk", private)
    assert MemoryFilters().seen_by("desk").admits("desk", private)
    assert not MemoryFilters(shared_only=True).seen_by("desk").admits("desk", private)
    assert MemoryFilters().seen_by("desk") != MemoryFilters()


async def test_a_caller_cannot_name_the_viewer_through_the_filters(client: Client) -> None:
    ok(
        await client.call_tool(
            "remember", {"user_id": "alice", "agent_id": "desk", "content": "desk secret", "visibility": "private"}
        )
    )
    message = error(
        await client.call_tool("recall", {"user_id": "alice", "query": "secret", "filters": {"viewer_agent": "desk"}})
    )
    assert "unknown argument 'viewer_agent' in 'filters'" in message


async def test_the_batch_items_schema_is_the_cores_remember_item(client: Client) -> None:
    from engram.core.models import RememberItem

    tools = {t.name: t for t in (await client.list_tools()).tools}
    schema = tools["remember_many"].input_schema
    ref = schema["properties"]["items"]["items"]["$ref"].rsplit("/", 1)[-1]
    assert list(schema["$defs"][ref]["properties"]) == list(RememberItem.model_fields)
    # And remember's own arguments are the same fields, parsed by the same types.
    assert set(RememberItem.model_fields) <= set(tools["remember"].input_schema["properties"])


def test_the_conditioned_fields_are_read_from_the_declaration_once_per_class() -> None:
    # Every search asks for the conditions (a recall four times): the fields' metadata is scanned once, not per call.
    from engram.core import filters as declared

    declared.conditioned_fields.cache_clear()
    asked = [
        MemoryFilters(tags=["work"], min_importance=0.5),
        MemoryFilters(),
        MemoryFilters(category="health", tags=[]),
    ]
    found = [list(f.conditions()) for f in asked for _ in range(3)]
    assert declared.conditioned_fields.cache_info().misses == 1
    # What each yields is still every set filter's own condition and value, in declaration order.
    assert [(c.attribute, c.kind, v) for c, v in found[0]] == [
        ("tags", "has_any", ["work"]),
        ("importance", "at_least", 0.5),
    ]
    assert found[3] == []
    assert [(c.attribute, v) for c, v in found[6]] == [("category", "health")]
