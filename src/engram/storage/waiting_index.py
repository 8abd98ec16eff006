"""The journal's waiting writes, decoded once and indexed per user, kept in step with the shared journal by seq.

Every fact's `remember` searches the user's waiting writes for what it may supersede. Reading, decoding and
indexing all of them on every search made a write's cost grow with the number waiting (hundreds while one user
writes through the journal's 10 s maximum wait), a burst of single writes O(n^2). Journal entries are numbered in
the order they commit and leave the journal oldest first (`WriteJournal.trim`), so this process stays in step by
reading only the rows past the last seq it read and dropping what it holds below the oldest seq still waiting:
each entry is read and decoded once per process, whichever process wrote it, and an entry moved by any process (and
perhaps erased since) is dropped at the next search or move.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from engram.core.filters import MemoryFilters
from engram.core.passages import passages
from engram.core.ports import Candidate, Vectors
from engram.storage.journal import JournalEntry, WriteJournal, decoded
from engram.storage.memory_rows import _to_row
from engram.storage.recall_index import UserIndex


@dataclass
class _UserWaiting:
    """One user's waiting writes, oldest first: rows not decoded yet, decoded entries, and their index."""

    raw: deque[tuple[int, str, str, bytes]] = field(default_factory=deque)  # (seq, id, body, vector)
    entries: dict[str, JournalEntry] = field(default_factory=dict)  # by memory id
    long: set[str] = field(default_factory=set)  # ids whose content has later passages (the table scores those)
    index: UserIndex | None = None  # built from `entries` at a search, grown by later entries

    def holds(self, memory_id: str) -> bool:
        return memory_id in self.entries or any(row[1] == memory_id for row in self.raw)


class WaitingIndex:
    """This process's copy of every process's waiting writes (thread-safe): each read once, decoded and indexed
    when its user is searched."""

    def __init__(self, journal: WriteJournal) -> None:
        self._journal = journal
        self._lock = threading.Lock()
        self._last_seq = 0  # the highest seq read from the journal
        self._oldest: int | None = None  # the oldest seq waiting when last checked
        self._users: dict[str, _UserWaiting] = {}

    def search(
        self, user_id: str, vector: Vectors, filters: MemoryFilters, limit: int, *, passages_too: bool
    ) -> list[Candidate] | None:
        """Up to `limit` of the user's waiting writes matching `filters`, by cosine similarity, best first.

        None when the answer would differ from the table's once they are moved: a filter the in-memory index does
        not evaluate, or (with `passages_too`) a long memory, whose passages score in the table but not here.
        """
        with self._lock:
            # New rows first, then what left: a row moved in between is dropped here and found in the table.
            self._read_new()
            self._drop_moved(self._journal.oldest_waiting())
            waiting = self._users.get(user_id)
            if waiting is None:
                return []
            self._decode(waiting)
            if passages_too and waiting.long:
                return None
            if waiting.index is None:
                waiting.index = _indexed(list(waiting.entries.values()))
            admitted = waiting.index.mask(filters)
            return None if admitted is None else waiting.index.vector_search(vector, admitted, limit)

    def forget_moved(self) -> None:
        """Drop every entry no longer waiting (moved by any process, and perhaps erased since)."""
        with self._lock:
            self._drop_moved(self._journal.oldest_waiting())

    def holds(self, memory_id: str) -> bool:
        """Whether any copy of this memory is held here, decoded or not."""
        with self._lock:
            return any(waiting.holds(memory_id) for waiting in self._users.values())

    def _read_new(self) -> None:
        for seq, user_id, memory_id, body, blob in self._journal.waiting_after(self._last_seq):
            self._users.setdefault(user_id, _UserWaiting()).raw.append((seq, memory_id, body, blob))
            self._last_seq = seq

    def _decode(self, waiting: _UserWaiting) -> None:
        fresh: list[JournalEntry] = []
        while waiting.raw:
            seq, _, body, blob = waiting.raw.popleft()
            entry = decoded(seq, body, blob)
            memory_id = entry.memory.id
            if memory_id in waiting.entries:
                # Moved, erased and written again before this process saw it go: the newer entry counts.
                self._remove(waiting, [memory_id])
            waiting.entries[memory_id] = entry
            if passages(entry.memory.content):
                waiting.long.add(memory_id)
            fresh.append(entry)
        if fresh and waiting.index is not None:
            _add(waiting.index, fresh)

    def _drop_moved(self, oldest: int | None) -> None:
        """Drop the entries below `oldest` (all when None): they were moved, so the table answers for them."""
        if oldest is not None and oldest == self._oldest:
            return  # nothing moved since the last check
        self._oldest = oldest
        for user_id in list(self._users):
            waiting = self._users[user_id]
            while waiting.raw and (oldest is None or waiting.raw[0][0] < oldest):
                waiting.raw.popleft()
            gone = []
            for memory_id, entry in waiting.entries.items():  # oldest first: stop at the first still waiting
                if oldest is not None and entry.seq >= oldest:
                    break
                gone.append(memory_id)
            if gone:
                self._remove(waiting, gone)
            if not waiting.raw and not waiting.entries:
                del self._users[user_id]

    @staticmethod
    def _remove(waiting: _UserWaiting, ids: list[str]) -> None:
        for memory_id in ids:
            del waiting.entries[memory_id]
            waiting.long.discard(memory_id)
        # Rebuilt at the next search from what still waits: a removed slot's terms would stay in the index's
        # postings otherwise, and an erased memory must leave no copy. Cheap: a move takes every waiting row.
        waiting.index = None


def _indexed(entries: list[JournalEntry]) -> UserIndex:
    index = UserIndex(int(np.asarray(entries[0].vector).size))
    _add(index, entries)
    return index


def _add(index: UserIndex, entries: list[JournalEntry]) -> None:
    index.add_rows([_to_row(e.memory, e.index_text, e.vector) for e in entries])
