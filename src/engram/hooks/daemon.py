"""`engram hook --serve`: the daemon that answers hook events with the stores (and model) kept open.

It listens on a Unix socket in the data directory (owner-only, like everything there), serves one JSON request
per connection (`{"event", "stdin", "user_id", "max_tokens"}` -> `{"stdout", "messages", "exit"}`), and exits
after a spell without requests. One daemon per data directory: a second one finds the lock taken and leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from engram.hooks.answer import HookReply, answer
from engram.hooks.client import private_directory, socket_path

if TYPE_CHECKING:
    from engram.config import Settings
    from engram.core.service import MemoryService

logger = logging.getLogger("engram.hook")
#: The largest request accepted (a generic capture carries its turns inline).
MAX_REQUEST = 32 * 1024 * 1024


class HookDaemon:
    """Serves hook requests on one memory service until idle for `idle_s` or asked to stop."""

    def __init__(self, memory: MemoryService, default_user: str | None, idle_s: float) -> None:
        self._memory = memory
        self._default_user = default_user
        self._idle_s = idle_s
        self._last = time.monotonic()
        self._busy = 0
        self._stop = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read one request, answer it, close the connection."""
        self._busy += 1
        try:
            reply = await self._reply(await reader.readline())
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, ValueError) as exc:  # a client that gave up, or a request over the size limit
            logger.info("a hook connection ended early: %s", type(exc).__name__)
        finally:
            self._busy -= 1
            self._last = time.monotonic()
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _reply(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except json.JSONDecodeError:
            return HookReply(messages=["the request is not JSON"], exit=1).as_dict()
        if not isinstance(request, dict):
            return HookReply(messages=["the request must be a JSON object"], exit=1).as_dict()
        event = request.get("event")
        if event == "ping":
            return {"pong": True}
        if event == "shutdown":
            self._stop.set()
            return {"stopping": True}
        user = request.get("user_id") or self._default_user
        tokens = request.get("max_tokens")
        reply = await answer(
            self._memory,
            str(event),
            str(request.get("stdin") or ""),
            user if isinstance(user, str) else None,
            tokens if isinstance(tokens, int) and 50 <= tokens <= 20_000 else 1000,
        )
        return reply.as_dict()

    async def until_idle(self) -> None:
        """Return once asked to stop, or once no request came for the idle period (none in flight)."""
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=min(30.0, self._idle_s))
            if not self._busy and time.monotonic() - self._last >= self._idle_s:
                logger.info("no hook request for %.0f s: stopping", self._idle_s)
                return


def serve(settings: Settings, idle_s: float, announce: Any = print) -> bool:
    """Run the daemon of `settings.data_dir` until idle; False when another one already serves it."""
    from engram.hooks.command import lazy_model
    from engram.runtime import open_memory

    path = socket_path(settings.data_dir)
    if path.parent == settings.data_dir:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    else:  # the fallback under the temporary directory, shared with other users
        private_directory(path.parent)
    with open(f"{path}.lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("a hook daemon already serves %s", settings.data_dir)
            return False
        # Which process serves, for whoever must stop it without a working socket.
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        path.unlink(missing_ok=True)  # left by a daemon that was killed
        memory = open_memory(settings, lazy_model(settings))
        try:
            asyncio.run(_run(HookDaemon(memory, settings.default_user, idle_s), str(path), announce))
        finally:
            path.unlink(missing_ok=True)
            memory.close()
    return True


async def _run(daemon: HookDaemon, path: str, announce: Any) -> None:
    server = await asyncio.start_unix_server(daemon.handle, path=path, limit=MAX_REQUEST)
    os.chmod(path, 0o600)  # whatever the umask: only this user may connect
    async with server:
        announce(f"engram hook daemon listening on {path}")
        await daemon.until_idle()
