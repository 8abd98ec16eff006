"""Parameter types shared by the tools, so every tool describes the same argument the same way, briefly."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from engram.core.limits import MAX_CONTENT_CHARS, MEMORY_ID_PATTERN
from engram.core.values import Id, Label, Tags

# The value types and their limits are the core's (`core/values.py`, `core/limits.py`): one declaration, parsed here.
__all__ = ["MAX_CONTENT_CHARS", "Id", "Label"]

UserIdArg = Annotated[
    Id | None,
    Field(description="Whose memory. Omit it for the default user (ENGRAM_DEFAULT_USER) or the token's user."),
]
SessionIdArg = Annotated[Id, Field(description="The conversation.")]
OptionalSessionIdArg = Annotated[Id | None, Field(description="The current conversation, if any.")]
AgentIdArg = Annotated[Id | None, Field(description="The agent writing.")]
ProjectArg = Annotated[Id | None, Field(description="Its project (default: global).")]
ViewerAgentArg = Annotated[Id | None, Field(description="The agent asking (it also sees its private memories).")]
LabelsArg = Tags
MemoryIdArg = Annotated[str, Field(pattern=MEMORY_ID_PATTERN, description="A memory id from remember or recall.")]
