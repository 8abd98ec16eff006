"""Parameter types shared by the tools, so every tool describes the same argument the same way."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from engram.core.models import ID_PATTERN, ID_RULE, MEMORY_ID_PATTERN

UserIdArg = Annotated[
    str | None,
    Field(
        pattern=ID_PATTERN,
        description="Whose memory this is: a stable id for the person you are talking to "
        f"({ID_RULE}). Omit it when one person uses this server: a local (stdio) server then uses its default "
        "user (ENGRAM_DEFAULT_USER, else the OS login name), and an authenticated connection the token's user.",
    ),
]
SessionIdArg = Annotated[
    str,
    Field(pattern=ID_PATTERN, description=f"The conversation this belongs to ({ID_RULE})."),
]
OptionalSessionIdArg = Annotated[
    str | None,
    Field(
        pattern=ID_PATTERN,
        description=f"The current conversation, if any ({ID_RULE}). Enables its working memory.",
    ),
]
AgentIdArg = Annotated[
    str | None,
    Field(pattern=ID_PATTERN, description=f"Which assistant or agent is writing ({ID_RULE}); optional."),
]
AgentIdsArg = Annotated[
    list[Annotated[str, Field(pattern=ID_PATTERN)]] | None,
    Field(max_length=20, description="Agent ids (at most 20)."),
]
ViewerAgentArg = Annotated[
    str | None,
    Field(
        pattern=ID_PATTERN,
        description="Which assistant or agent is asking: it sees the user's shared memories and its own private "
        "ones (another agent's private memories are never returned).",
    ),
]
MemoryIdArg = Annotated[
    str, Field(pattern=MEMORY_ID_PATTERN, description="The id of the memory, as returned by remember or recall.")
]
