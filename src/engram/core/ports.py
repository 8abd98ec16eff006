"""The interfaces the core needs from its embedder and stores; storage/ and embeddings/ implement them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import numpy as np
import numpy.typing as npt

from engram.core.models import Memory, RecallFilters, SessionInfo, Turn

Vectors = npt.NDArray[np.float32]


class Embedder(Protocol):
    """Turns texts into unit-length vectors; `embed` may block and is called from a worker thread."""

    @property
    def model_id(self) -> str:
        """Stable identity of the model (recorded with the stored vectors)."""
        ...

    @property
    def dimensions(self) -> int:
        """Length of every vector."""
        ...

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Return one L2-normalised float32 row per text."""
        ...


class LongTermStore(Protocol):
    """Durable store of memories with vector search; every read and delete is scoped to one user."""

    def add(self, memory: Memory, vector: Vectors) -> bool:
        """Insert unless a memory with this id exists; return whether it was inserted."""
        ...

    def get(self, user_id: str, ids: Sequence[str]) -> list[Memory]:
        """Return the user's memories with these ids (missing ones are skipped)."""
        ...

    def search(self, user_id: str, vector: Vectors, filters: RecallFilters, limit: int) -> list[tuple[Memory, float]]:
        """Return up to `limit` of the user's memories matching `filters`, by cosine similarity, best first."""
        ...

    def recent(self, user_id: str, limit: int) -> list[Memory]:
        """Return the user's most recently created memories, newest first."""
        ...

    def delete_user(self, user_id: str) -> int:
        """Delete every memory of the user; return how many were deleted."""
        ...

    def count(self) -> int:
        """Number of memories of all users."""
        ...

    def bytes_on_disk(self) -> int:
        """Size of the store's files."""
        ...

    def close(self) -> None:
        """Release the store."""
        ...


class SessionStore(Protocol):
    """Working memory (recent turns of a session) and short-term memory (recent sessions of a user)."""

    def append_turn(self, user_id: str, session_id: str, turn: Turn, now: datetime) -> int:
        """Record a turn in both tiers and refresh their expiry; return the working-memory turn count.

        The turn's `seq` is assigned by the store (its position in the session); the given one is ignored.
        """
        ...

    def working(self, user_id: str, session_id: str) -> list[Turn]:
        """The session's working memory, oldest first (empty when expired or unknown)."""
        ...

    def transcript(self, user_id: str, session_id: str) -> list[Turn] | None:
        """The session's short-term transcript (verbatim turns), or None when unknown or expired."""
        ...

    def summarized_until(self, user_id: str, session_id: str) -> int:
        """Seq before which the session's turns are already covered by a summary (0 if none)."""
        ...

    def apply_summary(self, user_id: str, session_id: str, summary: Turn, keep_from_seq: int, now: datetime) -> int:
        """Replace working turns older than `keep_from_seq` by `summary`; return the working turn count."""
        ...

    def sessions(self, user_id: str) -> list[SessionInfo]:
        """The user's sessions still in short-term memory, most recently active first."""
        ...

    def forget_user(self, user_id: str) -> tuple[int, int]:
        """Erase every entry of the user; return (working sessions, short-term sessions) erased."""
        ...

    def count(self) -> int:
        """Number of entries in the cache."""
        ...

    def bytes_on_disk(self) -> int:
        """Size of the cache's files."""
        ...

    def close(self) -> None:
        """Release the cache."""
        ...
