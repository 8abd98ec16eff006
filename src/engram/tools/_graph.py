"""What the graph tools share: the service's graph (or a clear error without one) and their common arguments."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from engram.core.errors import InvalidInput
from engram.core.graph import GraphKeeper
from engram.core.graph_models import MAX_NAME_CHARS
from engram.core.models import Visibility
from engram.core.service import MemoryService

Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS)]
GraphVisibilityArg = Annotated[
    Visibility, Field(description="'private': only agent_id sees what this call adds; 'shared': every agent.")
]


def graph_of(memory: MemoryService) -> GraphKeeper:
    """The service's graph; a server opened without a graph store says so instead of failing obscurely."""
    if memory.graph is None:
        raise InvalidInput("graph", "this server has no graph store; use remember and recall instead.")
    return memory.graph
