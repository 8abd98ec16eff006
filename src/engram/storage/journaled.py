"""Fast durable writes: acknowledge once journalled, move to LanceDB in batches, and let every read catch up first."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

import numpy as np

from engram.core.filters import MemoryFilters
from engram.core.identity import UserKey
from engram.core.models import AgentActivity, Memory
from engram.core.ports import Candidate, LongTermStore, StoredMemory, Vectors
from engram.storage.flush_policy import FlushPolicy, FlushWindow
from engram.storage.journal import WriteJournal
from engram.storage.lance_support import FileLock
from engram.storage.upkeep import Upkeep
from engram.storage.waiting_index import WaitingIndex
from engram.storage.waiting_search import merged

logger = logging.getLogger(__name__)

#: With nothing of its own waiting, the flusher still looks for other processes' waiting writes this often.
_IDLE_CHECK_S = 5.0


class JournalableStore(LongTermStore, Protocol):
    """What the journal needs of the store it decorates besides the port: which ids it holds, and compaction."""

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of these ids the store holds (any user)."""
        ...

    def all_ids(self) -> list[str]:
        """The id of every stored memory."""
        ...

    def optimize(self) -> None:
        """Compact and fold new rows into the indexes now."""
        ...


class JournaledLongTermStore(LongTermStore):
    """The LongTermStore port decorating another one, with writes acknowledged from a durable journal.

    A write is acknowledged once it is fsync'd in the journal (a few ms) instead of after a LanceDB commit (tens of
    ms, and one fragment per write). A background thread moves journalled writes into the table in batches, when
    `policy` says (storage/flush_policy.py: once writing pauses, at a batch size or at an age). Every read, count
    and erasure first moves whatever is waiting (from any process), so a caller always reads its own writes; the
    vector search instead scores the user's waiting writes in memory (storage/waiting_index.py). Opening replays what a
    crashed process left; ids are content-addressed and the insert is conditional on them, so a replay is a no-op
    for rows that had already made it. The decorator replays through the store's own `add_many` (durable when it
    returns) and only then lets the journal forget the entries.
    """

    def __init__(
        self,
        store: JournalableStore,
        journal: WriteJournal,
        *,
        policy: FlushPolicy | None = None,
        upkeep: Upkeep | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self._journal = journal
        # Every process's waiting writes, read and decoded once each, for the vector search.
        self.waiting = WaitingIndex(journal)
        # Two processes never move the same entries at once: the journal is shared by every server on the directory.
        self._replaying = FileLock(journal.path.with_name(journal.path.name + ".replay.lock"))
        self._window = FlushWindow(policy or FlushPolicy())
        self._batch_rows = self._window.policy.batch_rows
        self._upkeep = upkeep
        self._clock = clock
        self._signal = threading.Condition()
        self._stopping = False
        self.catch_up()  # whatever a previous process acknowledged but did not move
        if not journal.knows_any() and store.count():
            journal.reset_known(store.all_ids())  # a table written before the journal existed
        self._flusher = threading.Thread(target=self._flush_loop, name="engram-journal-flush", daemon=True)
        self._flusher.start()
        if upkeep is not None:
            upkeep.start()

    # -- writes ---------------------------------------------------------------------------------------------------

    def add(self, memory: Memory, index_text: str, vector: Vectors) -> bool:
        """Insert unless a memory with this id exists; return whether it was inserted."""
        return bool(self.add_many([memory], [index_text], np.asarray(vector, dtype=np.float32).reshape(1, -1)))

    def add_many(self, memories: Sequence[Memory], index_texts: Sequence[str], vectors: Vectors) -> set[str]:
        """Durably journal the memories whose id is neither stored nor waiting; return those ids."""
        created, seen = self._journal.append(memories, index_texts, vectors)
        if seen:
            # Rare (a repeat of a stored memory): only these need the table. An id erased since comes back.
            missing = seen - self.store.existing_ids(sorted(seen))
            if missing:
                chosen = [i for i, m in enumerate(memories) if m.id in missing]
                again, _ = self._journal.append(
                    [memories[i] for i in chosen], [index_texts[i] for i in chosen], vectors[chosen], force=True
                )
                created |= again
        if created:
            with self._signal:
                self._window.written(len(created), self._clock())
                self._signal.notify_all()
        return created

    def add_passages(self, user_id: UserKey, memory_id: str, texts: Sequence[str], vectors: Vectors) -> None:
        """Store a long memory's later passages straight in their table (reads merge them by memory id), and move the
        waiting writes, the memory among them: a vector search scores waiting memories by their own vector alone, so
        a long memory left waiting would be found without its passages (rare: long memories only)."""
        self.store.add_passages(user_id, memory_id, texts, vectors)
        self.catch_up()

    def catch_up(self) -> int:
        """Move every waiting write (of any process) into the table now; return how many moved."""
        moved = 0
        while True:
            if not self._journal.has_pending():
                break
            count = self._replay(self._batch_rows)
            moved += count
            if count < self._batch_rows:
                break
        # Whatever any process moved (and may erase next) leaves this process's copy of the waiting writes.
        self.waiting.forget_moved()
        if moved and self._upkeep is not None:
            self._upkeep.notify()
        return moved

    def _replay(self, batch: int) -> int:
        """Move up to `batch` journalled writes into the store through its port, durably; return how many moved.

        An entry moved twice (a crash between the store's commit and the trim) is a no-op the second time, since
        the insert is conditional on the id.
        """
        with self._replaying:
            entries = self._journal.pending(batch)
            if not entries:
                return 0
            vectors = np.stack([np.asarray(e.vector, dtype=np.float32) for e in entries])
            self.store.add_many([e.memory for e in entries], [e.index_text for e in entries], vectors)
            self._journal.trim(entries[-1].seq)
        return len(entries)

    def optimize(self) -> None:
        """Move what is waiting, then compact the store and fold new rows into its indexes."""
        self.catch_up()
        self.store.optimize()

    def _flush_loop(self) -> None:
        window = self._window
        while True:
            with self._signal:
                while not self._stopping and not window.due(self._clock()):
                    wait = window.wait_s(self._clock())
                    if wait is not None:
                        self._signal.wait(wait)
                    elif not self._signal.wait(_IDLE_CHECK_S):
                        if self._journal.has_pending():
                            break  # left by a server that was killed, while the live ones only write
                        # Another process moved (and may have erased) what this one holds a copy of.
                        self.waiting.forget_moved()
                if self._stopping:
                    return
                window.moved()
            try:
                self.catch_up()
                # Off the request path: keeps the journal's log small and its moved entries' copies short-lived.
                self._journal.scrub()
            except Exception:  # the writes stay journalled; the next flush or read retries them
                logger.exception("moving journalled writes into the long-term table failed; will retry")
                time.sleep(1.0)

    # -- reads: each one sees every acknowledged write (most catch up first) ---------------------------------------

    def get(self, user_id: UserKey, ids: Sequence[str]) -> list[Memory]:
        """Return the user's memories with these ids (missing ones are skipped)."""
        self.catch_up()
        return self.store.get(user_id, ids)

    def vector_search(
        self, user_id: UserKey, vector: Vectors, filters: MemoryFilters, limit: int, *, passages: bool = True
    ) -> list[Candidate]:
        """Up to `limit` of the user's memories matching `filters`, by cosine similarity (the score), best first.

        The user's waiting writes are scored in memory rather than moved first: every fact's `remember` runs this
        search (for what it may supersede), and moving them would make each single write its own commit."""
        # The journal is read before the table: an entry moved in between is then found twice, never missed.
        found = self.waiting.search(user_id, vector, filters, limit, passages_too=passages)
        if found is None:  # only the table can answer this one exactly
            self.catch_up()
            return self.store.vector_search(user_id, vector, filters, limit, passages=passages)
        return merged(self.store.vector_search(user_id, vector, filters, limit, passages=passages), found, limit)

    def keyword_search(self, user_id: UserKey, text: str, filters: MemoryFilters, limit: int) -> list[Candidate]:
        """Up to `limit` of the user's memories matching `filters`, by BM25 over the index text, best first."""
        self.catch_up()
        return self.store.keyword_search(user_id, text, filters, limit)

    def list_memories(self, user_id: UserKey, filters: MemoryFilters, limit: int, offset: int = 0) -> list[Memory]:
        """The user's memories matching `filters` (agent visibility included), newest first, after `offset`."""
        self.catch_up()
        return self.store.list_memories(user_id, filters, limit, offset)

    def agent_activity(self, user_id: UserKey) -> list[AgentActivity]:
        """Per agent that wrote the user's memories: shared and private counts and the latest write."""
        self.catch_up()
        return self.store.agent_activity(user_id)

    def replace(
        self,
        user_id: UserKey,
        old_id: str,
        memory: Memory,
        index_text: str | None = None,
        vector: Vectors | None = None,
    ) -> bool:
        """Replace memory `old_id` by `memory` atomically (after moving waiting writes, which may include it)."""
        self.catch_up()
        return self.store.replace(user_id, old_id, memory, index_text, vector)

    def count(self) -> int:
        """Number of memories of all users."""
        self.catch_up()
        return self.store.count()

    def bytes_on_disk(self) -> int:
        """Size of the store's files (the journal lives in the same directory)."""
        return self.store.bytes_on_disk()

    # -- erasure: waiting writes are moved first, so they are erased with the rest; then the journal is scrubbed --

    def delete(self, user_id: UserKey, ids: Sequence[str]) -> int:
        """Delete the user's memories with these ids; return how many were deleted."""
        self.catch_up()
        deleted = self.store.delete(user_id, ids)
        self._scrub()
        return deleted

    def delete_older_than(self, cutoff: datetime, category: str | None = None, exclude: Sequence[str] = ()) -> int:
        """Delete memories of every user created before `cutoff`: of one category, or of all but `exclude`."""
        self.catch_up()
        deleted = self.store.delete_older_than(cutoff, category, exclude)
        self._scrub()
        return deleted

    def stored_memories(self, user_id: UserKey, project: str | None = None) -> list[StoredMemory]:
        """Every memory of the user (of one project, if given), whatever its agent or visibility, oldest first."""
        self.catch_up()
        return self.store.stored_memories(user_id, project)

    def delete_project(self, user_id: UserKey, project: str) -> list[str]:
        """Delete every memory of the user's project; return the ids deleted."""
        self.catch_up()
        deleted = self.store.delete_project(user_id, project)
        self._scrub()
        return deleted

    def delete_user(self, user_id: UserKey) -> int:
        """Delete every memory of the user; return how many were deleted."""
        self.catch_up()
        deleted = self.store.delete_user(user_id)
        self._scrub()
        return deleted

    def _scrub(self) -> None:
        # The erased ids must not count as seen, and nothing of them may stay in the journal's files.
        self._journal.reset_known(self.store.all_ids())
        # Moved entries were overwritten in the journal file (secure_delete), but the write-ahead log still holds
        # copies of their pages until it is checkpointed and truncated.
        if not self._journal.scrub():
            logger.warning("the write journal's log could not be truncated yet (another process is reading it)")

    def traces_of(self, user_id: UserKey) -> list[str]:
        """What is left of the user on disk, the journal's files included, named without content."""
        self.catch_up()
        return self.store.traces_of(user_id)

    def close(self) -> None:
        """Stop the background threads, move what is waiting, and release the journal and the table."""
        with self._signal:
            self._stopping = True
            self._signal.notify_all()
        self._flusher.join()
        if self._upkeep is not None:
            self._upkeep.stop()
        try:
            self.catch_up()
        except Exception:  # still journalled: the next open replays it
            logger.exception("could not move journalled writes at shutdown; they will be replayed at the next start")
        self._journal.close()
        self.store.close()


def _the_journal_is_a_long_term_store(store: JournaledLongTermStore) -> LongTermStore:
    # Never called: the type checker refuses it if the decorator lacks a method of the port or changes one.
    return store
