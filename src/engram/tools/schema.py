"""Compact JSON schemas for `tools/list`: every byte of them is read by the model on every turn."""

from __future__ import annotations

import inspect
from typing import Any

_NULL = {"type": "null"}
#: Keys whose value maps names to schemas (not schema keywords themselves).
_NAMED_SCHEMAS = ("properties", "$defs")


def description(text: str) -> str:
    """A tool description without the docstring's indentation, its paragraphs joined into one block."""
    return " ".join(inspect.cleandoc(text).split())


def compact_input(schema: dict[str, Any]) -> dict[str, Any]:
    """An input schema without titles, closed sets written in place, and an optional argument shown as its type
    (omitting it means "none")."""
    defs: dict[str, Any] = schema.get("$defs", {})
    enums = {name: sub for name, sub in defs.items() if "enum" in sub}
    inlined = _inline_enums(schema, enums)
    if "$defs" in inlined:
        inlined["$defs"] = {name: sub for name, sub in inlined["$defs"].items() if name not in enums}
        if not inlined["$defs"]:
            del inlined["$defs"]
    result: dict[str, Any] = _compact(inlined, drops=("title",), optional_as_type=True)
    return result


def _inline_enums(schema: Any, enums: dict[str, Any]) -> Any:
    """`schema` with each reference to an enum replaced by its values (a def's prose is dropped)."""
    if isinstance(schema, list):
        return [_inline_enums(item, enums) for item in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref", "")
    name = ref.rsplit("/", 1)[-1]
    if name in enums:
        target = {key: enums[name][key] for key in ("type", "enum") if key in enums[name]}
        rest = {key: value for key, value in schema.items() if key != "$ref"}
        return {**target, **rest}
    return {key: _inline_enums(value, enums) for key, value in schema.items()}


def compact_output(schema: dict[str, Any]) -> dict[str, Any]:
    """An output schema reduced to the reply's top-level shape: its fields and their types, nested objects as
    plain objects, no prose. `structuredContent` still validates against it; the tool description says the rest.
    """
    defs: dict[str, Any] = schema.get("$defs", {})
    return _shape(schema, defs, depth=0)


def _shape(schema: dict[str, Any], defs: dict[str, Any], depth: int) -> dict[str, Any]:
    if "$ref" in schema:
        return _shape(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, depth)
    if "anyOf" in schema:
        options = [_shape(option, defs, depth) for option in schema["anyOf"]]
        if all(set(option) == {"type"} and isinstance(option["type"], str) for option in options):
            return {"type": [option["type"] for option in options]}
        return {"anyOf": options}
    kind = schema.get("type")
    if kind == "object":
        if depth > 0 or "properties" not in schema:
            return {"type": "object"}
        shaped: dict[str, Any] = {
            "type": "object",
            "properties": {name: _shape(sub, defs, depth + 1) for name, sub in schema["properties"].items()},
        }
        if schema.get("required"):
            shaped["required"] = schema["required"]
        return shaped
    if kind == "array":
        return {"type": "array", "items": _shape(schema.get("items", {}), defs, depth)}
    return {key: schema[key] for key in ("type", "enum", "const") if key in schema}


def _plain(option: Any) -> bool:
    """A schema that is one JSON type, with at most a length bound."""
    return isinstance(option, dict) and isinstance(option.get("type"), str) and set(option) <= {"type", "maxLength"}


def _compact(schema: Any, *, drops: tuple[str, ...], optional_as_type: bool) -> Any:
    if isinstance(schema, list):
        return [_compact(item, drops=drops, optional_as_type=optional_as_type) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in drops:
            continue
        if key in _NAMED_SCHEMAS and isinstance(value, dict):
            out[key] = {
                name: _compact(sub, drops=drops, optional_as_type=optional_as_type) for name, sub in value.items()
            }
        else:
            out[key] = _compact(value, drops=drops, optional_as_type=optional_as_type)
    any_of = out.get("anyOf")
    if isinstance(any_of, list) and len(any_of) > 2 and all(_plain(option) for option in any_of):
        # A union of plain types is one type list; integer is already a number.
        kinds = [option["type"] for option in any_of]
        if "number" in kinds and "integer" in kinds:
            kinds.remove("integer")
        merged = {key: value for option in any_of for key, value in option.items() if key != "type"}
        rest = {key: value for key, value in out.items() if key != "anyOf"}
        return {**merged, **rest, "type": kinds}
    if not (isinstance(any_of, list) and len(any_of) == 2 and _NULL in any_of):
        return out
    other = any_of[0] if any_of[1] == _NULL else any_of[1]
    rest = {key: value for key, value in out.items() if key != "anyOf"}
    if optional_as_type and rest.get("default", ...) is None:
        # An optional argument: a client leaves it out rather than sending null (null is still accepted).
        rest.pop("default")
        return {**other, **rest}
    if isinstance(other.get("type"), str) and not {"enum", "const", "$ref"} & other.keys():
        return {**other, **rest, "type": [other["type"], "null"]}
    return out
