"""Every back end of a storage port, opened fresh in a temp dir: the contract tests run once per back end.

A new back end (a distributed one, say) joins by adding its factory here; the contract tests stay unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from engram.core.health import TierHealth
from engram.core.ports import LongTermStore, SessionStore
from engram.embeddings.hashing import HashEmbedder
from engram.storage.guarded import GuardedLongTermStore
from engram.storage.journal import WriteJournal
from engram.storage.journaled import JournaledLongTermStore
from engram.storage.long_term import LanceLongTermStore
from engram.storage.sessions import DiskSessionStore

DIMENSIONS = HashEmbedder().dimensions
MODEL_ID = HashEmbedder().model_id


def _lance(directory: Path) -> LongTermStore:
    return LanceLongTermStore(directory, dimensions=DIMENSIONS, model_id=MODEL_ID)


def _journaled(directory: Path) -> LongTermStore:
    table = LanceLongTermStore(directory, dimensions=DIMENSIONS, model_id=MODEL_ID)
    return JournaledLongTermStore(table, WriteJournal(directory / "journal.sqlite"))


def _guarded(directory: Path) -> LongTermStore:
    # The stack a server runs: the fault translator over the journal over LanceDB, each a decorator of the port.
    return GuardedLongTermStore(_journaled(directory), "long-term", directory, TierHealth())


LONG_TERM_BACK_ENDS: dict[str, Callable[[Path], LongTermStore]] = {
    "lance": _lance,
    "journaled-lance": _journaled,
    "guarded-journaled-lance": _guarded,
}


def _diskcache(directory: Path) -> SessionStore:
    return DiskSessionStore(
        directory,
        working_turns=3,
        working_ttl=timedelta(days=1),
        short_term_turns=5,
        short_term_ttl=timedelta(days=7),
    )


SESSION_BACK_ENDS: dict[str, Callable[[Path], SessionStore]] = {"diskcache": _diskcache}


@pytest.fixture(params=sorted(LONG_TERM_BACK_ENDS))
def long_term(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LongTermStore]:
    """A fresh long-term store of each back end."""
    store = LONG_TERM_BACK_ENDS[request.param](tmp_path / "long-term")
    yield store
    store.close()


@pytest.fixture(params=sorted(SESSION_BACK_ENDS))
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionStore]:
    """A fresh session store of each back end: working memory keeps 3 turns, short-term 5."""
    store = SESSION_BACK_ENDS[request.param](tmp_path / "sessions")
    yield store
    store.close()
