"""Tool arguments as a model sees them: strict input models, and one-line messages for the arguments they refuse."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from engram.core.problems import argument_problem, field_name

__all__ = ["argument_error", "argument_problem", "field_name", "forbid_unknown", "loggable"]

#: At most this many problems are spelled out in one message; the model fixes them and learns of the rest next.
_MAX_PROBLEMS = 3

Model = TypeVar("Model", bound=BaseModel)


def forbid_unknown(arg_model: type[Model]) -> type[Model]:
    """`arg_model` refusing arguments it does not declare (`additionalProperties: false` in its schema)."""
    config = ConfigDict(**{**arg_model.model_config, "extra": "forbid"})
    strict: type[Model] = type(arg_model.__name__, (arg_model,), {"model_config": config, "__module__": __name__})
    return strict


def loggable(exc: ValidationError) -> ValidationError:
    """`exc` with only the refused fields' names, cut short, and no values: what the SDK's log line may show."""
    errors = [
        {"type": "value_error", "loc": (field_name(error["loc"]),), "input": None, "ctx": {"error": error["type"]}}
        for error in exc.errors(include_url=False)
    ]
    return ValidationError.from_exception_data(exc.title, errors)  # type: ignore[arg-type]


def argument_error(exc: ValidationError, accepted: Sequence[str]) -> str:
    """Every refused argument of one call, on one line, never the library's dump or its help links."""
    problems = [argument_problem(error, accepted) for error in exc.errors(include_url=False)]
    shown = "; ".join(problems[:_MAX_PROBLEMS])
    more = len(problems) - _MAX_PROBLEMS
    suffix = f"; and {more} more" if more > 0 else ""
    return f"Invalid arguments: {shown}{suffix}.".replace("\n", " ")
