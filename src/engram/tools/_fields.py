"""Parameter types shared by the tools, so every tool describes the same argument the same way, briefly."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from engram.core.models import ID_PATTERN, MAX_TAGS, MEMORY_ID_PATTERN
from engram.core.models import MAX_CONTENT_CHARS as CONTENT_LIMIT

#: Bounds the schemas publish; the service checks the same limits (and the configured ones) with its own messages.
MAX_LABEL_CHARS = 64
MAX_METADATA_VALUE_CHARS = 1000
MAX_CONTENT_CHARS = CONTENT_LIMIT  # the one limit (core.models); the server's own setting may be lower

Id = Annotated[str, Field(pattern=ID_PATTERN)]  # the pattern bounds the length too
Label = Annotated[str, Field(max_length=MAX_LABEL_CHARS)]
MetadataText = Annotated[str, Field(max_length=MAX_METADATA_VALUE_CHARS)]
Metadata = dict[Label, MetadataText | int | float | bool | None]

UserIdArg = Annotated[
    Id | None,
    Field(description="Whose memory. Omit it for the default user (ENGRAM_DEFAULT_USER) or the token's user."),
]
SessionIdArg = Annotated[Id, Field(description="The conversation.")]
OptionalSessionIdArg = Annotated[Id | None, Field(description="The current conversation, if any.")]
AgentIdArg = Annotated[Id | None, Field(description="The agent writing.")]
ProjectArg = Annotated[Id | None, Field(description="Its project (default: global).")]
ViewerAgentArg = Annotated[Id | None, Field(description="The agent asking (it also sees its private memories).")]
LabelsArg = Annotated[list[Label] | None, Field(max_length=MAX_TAGS)]
MemoryIdArg = Annotated[str, Field(pattern=MEMORY_ID_PATTERN, description="A memory id from remember or recall.")]
