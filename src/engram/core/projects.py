"""Projects: erasing one project of a user (long-term memories and their session turns), leaving the rest alone."""

from __future__ import annotations

import logging
from functools import partial

from pydantic import BaseModel, Field

from engram.core.context import MemoryContext
from engram.core.errors import ConfirmationRequired
from engram.core.validation import check_id

logger = logging.getLogger(__name__)


class ProjectForgotten(BaseModel):
    """Outcome of `forget_project`: what was erased of one project of a user."""

    user_id: str
    project: str
    long_term: int = Field(description="Long-term memories of the project erased.")
    session_turns: int = Field(description="Turns holding those memories removed from the user's sessions.")


class ProjectEraser:
    """forget_project: one project of a user, in long-term memory and in the session transcripts."""

    def __init__(self, context: MemoryContext) -> None:
        self._ctx = context

    async def forget_project(self, user_id: str, project: str, *, confirm: bool) -> ProjectForgotten:
        """Erase every memory the user keeps in `project`; global memories and other projects stay. Needs confirm."""
        ctx = self._ctx
        key = ctx.user_key(user_id)
        check_id("project", project)
        if not confirm:
            raise ConfirmationRequired(
                "forget_project erases every memory of this project of the user and cannot be undone; call it "
                "again with confirm=true once the user has asked for this."
            )
        ids = await ctx.run(partial(ctx.long_term.delete_project, key, project))
        turns = 0
        for memory_id in ids:
            turns += await ctx.run(partial(ctx.sessions.remove_memory, key, memory_id))
        logger.info("erased a project: %d memories, %d session turns", len(ids), turns)
        return ProjectForgotten(user_id=user_id, project=project, long_term=len(ids), session_turns=turns)
