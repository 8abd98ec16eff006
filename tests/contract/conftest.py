"""Every back end of a storage port, opened fresh in a temp dir: the contract tests run once per back end.

A new back end (a distributed one, say) joins by adding its factory here; the contract tests stay unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis

from engram.config import aws_storage_options
from engram.core.health import TierHealth
from engram.core.ports import GraphStore, LongTermStore, SessionStore
from engram.embeddings.hashing import HashEmbedder
from engram.storage.direct import DirectLongTermStore
from engram.storage.graph import LanceGraphStore
from engram.storage.guarded import GuardedGraphStore, GuardedLongTermStore
from engram.storage.journal import WriteJournal
from engram.storage.journaled import JournaledLongTermStore
from engram.storage.location import ObjectStore
from engram.storage.long_term import LanceLongTermStore
from engram.storage.redis_sessions import RedisSessionStore
from engram.storage.sessions import DiskSessionStore
from tests.engines import RedisEngine

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


def _radosgw(uri: str) -> LongTermStore:
    """The distributed back end: LanceDB on a fresh radosgw bucket, committing directly (storage/direct.py)."""
    table = LanceLongTermStore(ObjectStore(uri, aws_storage_options()), dimensions=DIMENSIONS, model_id=MODEL_ID)
    return DirectLongTermStore(table)


def _diskcache(directory: Path) -> SessionStore:
    return DiskSessionStore(
        directory,
        working_turns=3,
        working_ttl=timedelta(days=1),
        short_term_turns=5,
        short_term_ttl=timedelta(days=7),
    )


SESSION_BACK_ENDS: dict[str, Callable[[Path], SessionStore]] = {"diskcache": _diskcache}


def _redis(engine: RedisEngine) -> SessionStore:
    """The Redis back end on the session's Redis, emptied first so that every test starts fresh."""
    with redis.Redis.from_url(engine.url) as client:
        client.flushdb()
    return RedisSessionStore.from_url(
        engine.url,
        working_turns=3,
        working_ttl=timedelta(days=1),
        short_term_turns=5,
        short_term_ttl=timedelta(days=7),
        rewrite_after_erasure=False,
    )


def _guarded_graph(directory: Path) -> GraphStore:
    return GuardedGraphStore(LanceGraphStore(directory), "graph", directory, TierHealth())


GRAPH_BACK_ENDS: dict[str, Callable[[Path], GraphStore]] = {"lance": LanceGraphStore, "guarded-lance": _guarded_graph}


@pytest.fixture(params=[*sorted(LONG_TERM_BACK_ENDS), pytest.param("radosgw", marks=pytest.mark.distributed)])
def long_term(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LongTermStore]:
    """A fresh long-term store of each back end."""
    if request.param == "radosgw":
        store = _radosgw(request.getfixturevalue("s3_bucket"))
    else:
        store = LONG_TERM_BACK_ENDS[request.param](tmp_path / "long-term")
    yield store
    store.close()


@pytest.fixture(params=[*sorted(SESSION_BACK_ENDS), pytest.param("redis", marks=pytest.mark.distributed)])
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionStore]:
    """A fresh session store of each back end: working memory keeps 3 turns, short-term 5."""
    if request.param == "redis":
        store = _redis(request.getfixturevalue("redis_engine"))
    else:
        store = SESSION_BACK_ENDS[request.param](tmp_path / "sessions")
    yield store
    store.close()


@pytest.fixture(params=[*sorted(GRAPH_BACK_ENDS), pytest.param("radosgw", marks=pytest.mark.distributed)])
def graph(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GraphStore]:
    """A fresh graph store of each back end (on radosgw: what every replica of a distributed deployment shares)."""
    if request.param == "radosgw":
        store: GraphStore = LanceGraphStore(ObjectStore(request.getfixturevalue("s3_bucket"), aws_storage_options()))
    else:
        store = GRAPH_BACK_ENDS[request.param](tmp_path / "graph")
    yield store
    store.close()
