"""Opening the shared engines of distributed mode: the object store (checked at start) and its replica locks."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from engram.core.errors import InvalidInput
from engram.storage.location import ObjectStore, StoreLock

logger = logging.getLogger(__name__)

#: Object stores LanceDB reaches; only s3:// is probed and tested, gs:// and az:// are passed through as they are.
SCHEMES = ("s3", "gs", "az")


def open_object_store(uri: str, sessions_url: str | None, storage_options: dict[str, str]) -> ObjectStore:
    """The object store ENGRAM_STORAGE_URI names, checked for conditional PUT, with Redis locks if Redis is set."""
    parts = urlsplit(uri)
    if parts.scheme not in SCHEMES or not parts.netloc:
        raise InvalidInput(
            "ENGRAM_STORAGE_URI", f"{uri!r} is not an object-store URI; use s3://bucket/prefix (or gs://, az://)."
        )
    lock_factory = None
    if sessions_url is not None:
        import redis

        from engram.storage.redis_lock import RedisLock

        client = redis.Redis.from_url(sessions_url, socket_timeout=30, health_check_interval=30)

        def lock_factory(name: str) -> StoreLock:
            return RedisLock(client, name)

    else:
        logger.warning(
            "ENGRAM_STORAGE_URI without ENGRAM_SESSIONS_URL: this server takes turns with no other replica before "
            "writing (commits still rely on conditional PUT); run several replicas only with a shared Redis"
        )
    store = ObjectStore(uri.rstrip("/"), storage_options if parts.scheme == "s3" else {}, lock_factory)
    if parts.scheme == "s3":
        from engram.storage.s3_probe import check_conditional_put

        check_conditional_put(store)
    return store


class EngineProbe:
    """Checks that the shared engines answer (Redis PING, the bucket's HEAD), for a replica's /healthz."""

    def __init__(self, sessions_url: str | None, storage_uri: str | None) -> None:
        self._sessions_url = sessions_url
        self._store = None if storage_uri is None else ObjectStore(storage_uri.rstrip("/"))
        self._redis: object | None = None
        self._s3: Any = None

    @property
    def configured(self) -> bool:
        """Whether there is any shared engine to check."""
        return self._sessions_url is not None or self._store is not None

    def check(self) -> dict[str, str]:
        """'ok' or what failed, per engine (never a credential); blocks for up to a few seconds."""
        report: dict[str, str] = {}
        if self._sessions_url is not None:
            report["redis"] = _outcome(self._ping_redis)
        if self._store is not None and self._store.uri.startswith("s3://"):
            report["object_store"] = _outcome(self._head_bucket)
        return report

    def _ping_redis(self) -> None:
        import redis

        if self._redis is None:
            assert self._sessions_url is not None
            self._redis = redis.Redis.from_url(self._sessions_url, socket_timeout=3, socket_connect_timeout=3)
        assert isinstance(self._redis, redis.Redis)
        self._redis.ping()

    def _head_bucket(self) -> None:
        from engram.storage.location import s3_client

        assert self._store is not None
        # One client for the probe's life: a load balancer asks every second or so, and a new one costs ~0.3 s CPU.
        if self._s3 is None:
            self._s3 = s3_client()
        self._s3.head_bucket(Bucket=self._store.bucket)


def _outcome(check: Callable[[], None]) -> str:
    try:
        check()
    except Exception as exc:  # reported, not raised: /healthz says which engine is down
        return f"unreachable ({type(exc).__name__})"
    return "ok"
