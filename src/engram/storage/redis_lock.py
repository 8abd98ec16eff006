"""A lock held across replicas in Redis, kept alive while held, and freed by expiry when its holder is killed."""

from __future__ import annotations

import threading
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis

#: A killed holder blocks the others at most this long; a live one renews its hold every third of it.
LEASE_S = 6.0
#: How long a blocking acquire waits before failing loudly (a store this busy needs attention).
_WAIT_S = 300.0

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end
"""
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end
"""


class RedisLock:
    """An exclusive lease on one Redis key, renewed by a thread while held; a StoreLock for replicas.

    Not re-entrant; a thread lock in front of it keeps two threads of one process from queueing on Redis.
    """

    def __init__(self, client: redis.Redis, name: str, lease_s: float = LEASE_S) -> None:
        self._redis = client
        self._key = f"engram:lock:{name}"
        self._lease_ms = int(lease_s * 1000)
        self._threads = threading.Lock()
        self._token = ""
        self._released = threading.Event()
        self._renewer: threading.Thread | None = None

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock; without `blocking`, return False at once if any replica holds it."""
        if not self._threads.acquire(blocking=blocking):
            return False
        token = uuid.uuid4().hex
        waited = threading.Event()
        pause, spent = 0.005, 0.0
        while not self._redis.set(self._key, token, nx=True, px=self._lease_ms):
            if not blocking or spent >= _WAIT_S:
                self._threads.release()
                if blocking:
                    raise TimeoutError(f"the shared lock {self._key} was held by another replica for {_WAIT_S:.0f} s")
                return False
            # Back off up to a quarter second: a holder's commit on object storage takes tens of milliseconds.
            waited.wait(pause)
            spent += pause
            pause = min(pause * 2, 0.25)
        self._token = token
        self._released.clear()
        self._renewer = threading.Thread(target=self._renew, name="engram-lock-lease", daemon=True)
        self._renewer.start()
        return True

    def _renew(self) -> None:
        while not self._released.wait(self._lease_ms / 3000):
            if not self._redis.eval(_RENEW, 1, self._key, self._token, self._lease_ms):
                return  # lost (the lease expired while this process stalled): nothing left to renew

    def release(self) -> None:
        """Give the lock back (only if this holder still owns it)."""
        self._released.set()
        if self._renewer is not None:
            self._renewer.join()
            self._renewer = None
        try:
            self._redis.eval(_RELEASE, 1, self._key, self._token)
        finally:
            self._threads.release()

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
