"""Erasure: a user's memory from every tier, verified on disk; one memory; and retention's purge."""

from __future__ import annotations

import logging
from functools import partial

import anyio

from engram.core.context import MemoryContext
from engram.core.errors import ConfirmationRequired, ErasureIncomplete, InvalidInput, quoted
from engram.core.identity import UserKey
from engram.core.models import ForgetReceipt, MemoryForgotten, PurgeReport
from engram.core.policy import ERASURE_PASSES
from engram.core.validation import check_memory_id

logger = logging.getLogger(__name__)


class Eraser:
    """forget_user, forget_memory and purge: everything that removes memory, and the proof that it is gone."""

    def __init__(self, context: MemoryContext) -> None:
        self._ctx = context

    async def forget_user(self, user_id: str, *, confirm: bool) -> ForgetReceipt:
        """Erase everything held for the user in every tier; refuses without `confirm=True`."""
        ctx = self._ctx
        key = ctx.user_key(user_id)
        if not confirm:
            raise ConfirmationRequired(
                # No user id in the message: tool errors are logged, and logs must not carry raw ids.
                "forget_user erases every memory of this user in every tier and cannot be undone; "
                "call it again with confirm=true once the user has asked for this."
            )
        counts: dict[str, int] = {}
        # Other servers on the data directory keep writing meanwhile: their commits can leave the erasure's files
        # (a write-ahead log another process was reading, say) for a moment. Erasing again once they settled is
        # cheap and idempotent, so a few passes turn that race into a success.
        for attempt in range(1, ERASURE_PASSES + 1):
            for tier in ctx.tiers:
                _add(counts, await tier.erase_user(key))
            left = await self.traces_of(key)
            if not left:
                break
            # Places only (store, file, version): never the user's id or content.
            logger.info("erasure pass %d of %d left %s", attempt, ERASURE_PASSES, "; ".join(left))
            if attempt < ERASURE_PASSES:
                await anyio.sleep(0.1 * attempt)  # let the other servers' commits and readers move on
        else:
            logger.warning("erasure incomplete after %d passes: %s", ERASURE_PASSES, "; ".join(left))
            raise ErasureIncomplete(
                f"Erasure ran {ERASURE_PASSES} times but traces of the user remain: {'; '.join(left)}. Call "
                "forget_user again; if they persist, stop the servers on this data directory and delete or "
                "restore the files named (the server log lists them too)."
            )
        logger.info("erased a user: %s", ", ".join(f"{n} {field}" for field, n in counts.items()))
        return ForgetReceipt(
            user_id=user_id,
            erased=True,
            **{"working": 0, "short_term": 0, "long_term": 0, **counts},
            finished_at=ctx.clock(),
            verification=(
                "no row, older table version, index entry or file byte of the user's pseudonymous id remains in "
                "long-term, knowledge or graph memory (compacted, indexes rebuilt, old versions removed); no "
                "session-cache entry or file byte of it remains (secure delete, write-ahead log truncated)"
            ),
        )

    async def traces_of(self, key: UserKey) -> list[str]:
        """Every trace of the user left in any tier, as 'store: place' (never the user's id or content)."""
        return [trace for tier in self._ctx.tiers for trace in await tier.traces_of(key)]

    async def forget_memory(self, user_id: str, memory_id_: str, *, agent_id: str | None = None) -> MemoryForgotten:
        """Delete one of the user's memories from long-term memory and from the user's session transcripts.

        Another agent's private memory is treated as absent: an agent cannot delete what it may not see.
        """
        ctx = self._ctx
        key = ctx.user_key(user_id)
        check_memory_id(memory_id_)
        await ctx.visible_memory(key, memory_id_, agent_id, required=False)
        deleted = await ctx.run(partial(ctx.long_term.delete, key, [memory_id_]))
        removed_turns = await ctx.run(partial(ctx.sessions.remove_memory, key, memory_id_))
        if not deleted and not removed_turns:
            raise InvalidInput("memory_id", f"no memory {quoted(memory_id_)} is held for this user.")
        return MemoryForgotten(memory_id=memory_id_, long_term=deleted, session_turns=removed_turns)

    async def purge(self) -> PurgeReport:
        """Apply retention: delete long-term memories past their age limit and expired session entries."""
        ctx = self._ctx
        now = ctx.clock()
        counts: dict[str, int] = {"long_term": 0, "expired_session_entries": 0}
        for tier in ctx.tiers:
            _add(counts, await tier.purge(now, ctx.policy))
        if any(counts.values()):
            logger.info("retention purge: %s", ", ".join(f"{n} {field}" for field, n in counts.items()))
        return PurgeReport(**counts, finished_at=ctx.clock())


def _add(counts: dict[str, int], more: dict[str, int]) -> None:
    """Add one tier's counts to the totals, field by field."""
    for field, n in more.items():
        counts[field] = counts.get(field, 0) + n
