"""Summarising a session: its older turns become one summary memory, and working memory keeps the summary."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from functools import partial

from engram.core.context import MemoryContext, turn_admitted
from engram.core.errors import InvalidInput, NothingToSummarize, quoted
from engram.core.filters import MemoryFilters
from engram.core.identity import UserKey
from engram.core.indexing import index_text
from engram.core.models import Kind, Memory, SessionSummary, Turn, Visibility
from engram.core.summarizer import extractive_summary
from engram.core.validation import check_id, check_optional_id, memory_id
from engram.core.writing import MemoryWriter

logger = logging.getLogger(__name__)

Progress = Callable[[float, float, str], Awaitable[None]]


class SessionSummarizer:
    """summarize_session: replaces a session's older turns by a summary stored in long-term memory."""

    def __init__(self, context: MemoryContext, writer: MemoryWriter) -> None:
        self._ctx = context
        self._writer = writer

    async def summarize_session(
        self,
        user_id: str,
        session_id: str,
        *,
        keep_recent: int | None = None,
        summary: str | None = None,
        progress: Progress | None = None,
        agent_id: str | None = None,
    ) -> SessionSummary:
        """Replace the session's older turns with a summary (the caller's, or an extractive one) kept long-term.

        Only turns the asking `agent_id` may see are summarised; if any of them is private to it, so is the summary.
        """
        ctx = self._ctx
        key = ctx.user_key(user_id)
        check_id("session_id", session_id)
        visible = MemoryFilters().seen_by(check_optional_id("agent_id", agent_id))
        keep = ctx.policy.keep_recent_default if keep_recent is None else keep_recent
        if not (0 <= keep <= ctx.policy.max_keep_recent):
            raise InvalidInput("keep_recent", f"must be between 0 and {ctx.policy.max_keep_recent}, got {keep}.")
        summary_text = None if summary is None else ctx.content("summary", summary, {})
        working, verbatim, older, cutoff = await self._older_turns(key, session_id, keep)
        if progress:
            await progress(0, 3, f"Summarising {len(older)} older turns")
        method = "caller" if summary_text is not None else "extractive"
        if summary_text is None:
            # Earlier summary lines already carry their speakers ("user: ..."), so they get no label of their own.
            previous = [("", t.content) for t in working if t.is_summary]
            pieces = previous + [
                (t.role.value if t.role else "", t.content) for t in older if turn_admitted(visible, t)
            ]
            summary_text = await ctx.run(
                partial(extractive_summary, pieces, ctx.embedder, ctx.policy.summary_max_chars)
            )
        if progress:
            await progress(1, 3, "Storing the summary in long-term memory")
        private = any(t.visibility is Visibility.PRIVATE for t in older if turn_admitted(visible, t))
        memory = await self._store_summary(key, session_id, summary_text, older, cutoff, method, private, agent_id)
        if progress:
            await progress(3, 3, "Session summarised")
        logger.info("summarised %d turns of a session (%s)", len(older), method)
        return SessionSummary(
            summary_id=memory.id,
            summary=summary_text,
            method="caller" if method == "caller" else "extractive",
            summarized_turns=len(older),
            kept_turns=sum(1 for t in verbatim if t.seq >= cutoff),
            replaced_ids=list(memory.links),
        )

    async def _older_turns(
        self, key: UserKey, session_id: str, keep: int
    ) -> tuple[list[Turn], list[Turn], list[Turn], int]:
        """The session's working memory, its verbatim turns, those to summarise, and the seq the kept ones start at."""
        ctx = self._ctx
        transcript = await ctx.run(partial(ctx.sessions.transcript, key, session_id))
        working = await ctx.run(partial(ctx.sessions.working, key, session_id))
        verbatim = transcript if transcript is not None else [t for t in working if not t.is_summary]
        if not verbatim:
            raise InvalidInput(
                "session_id", f"no turns are stored for session {quoted(session_id)} of this user (unknown or expired)."
            )
        start = await ctx.run(partial(ctx.sessions.summarized_until, key, session_id))
        cutoff = verbatim[-1].seq + 1 - keep
        older = [t for t in verbatim if start <= t.seq < cutoff]
        if not older:
            raise NothingToSummarize(
                f"Session {quoted(session_id)} has no turns older than the {keep} to keep verbatim that are not "
                "already summarised. Call it again after more turns, or with a smaller keep_recent."
            )
        return working, verbatim, older, cutoff

    async def _store_summary(
        self,
        key: UserKey,
        session_id: str,
        text: str,
        older: list[Turn],
        cutoff: int,
        method: str,
        private: bool,
        agent_id: str | None,
    ) -> Memory:
        """Store the summary as a long-term memory and put it in working memory in place of the older turns."""
        ctx = self._ctx
        now = ctx.clock()
        links = list(dict.fromkeys(t.memory_id for t in older))
        # The summary repeats its turns: it belongs where they do, or it would carry a project's words elsewhere.
        projects = Counter(m.project for m in await ctx.run(partial(ctx.long_term.get, key, links)) if m.project)
        project = projects.most_common(1)[0][0] if projects else None
        memory = Memory(
            id=memory_id(key, text, project),
            user_id=key,
            agent_id=agent_id,
            visibility=Visibility.PRIVATE if private else Visibility.SHARED,
            session_id=session_id,
            project=project,
            kind=Kind.SUMMARY,
            content=text,
            created_at=now,
            links=links,
            metadata={"summarized_turns": len(older), "method": method},
        )
        await self._writer.store(memory, index_text(text, when=now, speaker="summary"))
        summary_turn = Turn(
            memory_id=memory.id,
            seq=cutoff,
            role=None,
            content=text,
            created_at=now,
            agent_id=agent_id,
            visibility=memory.visibility,
            is_summary=True,
        )
        await ctx.run(partial(ctx.sessions.apply_summary, key, session_id, summary_turn, cutoff, now))
        return memory
