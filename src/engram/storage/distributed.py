"""Opening the shared engines of distributed mode: the object store (checked at start) and its replica locks."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from engram.core.errors import InvalidInput
from engram.storage.location import ObjectStore, StoreLock, storage_options_from_environment

logger = logging.getLogger(__name__)

#: Object stores LanceDB reaches; only s3:// is probed and tested, gs:// and az:// are passed through as they are.
SCHEMES = ("s3", "gs", "az")


def open_object_store(uri: str, sessions_url: str | None) -> ObjectStore:
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
    store = ObjectStore(
        uri.rstrip("/"), storage_options_from_environment() if parts.scheme == "s3" else {}, lock_factory
    )
    if parts.scheme == "s3":
        from engram.storage.s3_probe import check_conditional_put

        check_conditional_put(store)
    return store
