"""Opens the memory service on a background thread so a server can answer before the model is loaded."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio.to_thread

from engram.core.errors import BackendUnavailable, EngramError

if TYPE_CHECKING:
    # Annotations only: the service pulls in numpy, which the handshake does not need.
    from engram.core.service import MemoryService


logger = logging.getLogger(__name__)


class BackgroundService:
    """A MemoryService being opened in the background; `get()` waits for it, or re-raises why it failed."""

    def __init__(self, opener: Callable[[], MemoryService]) -> None:
        self._opener = opener
        self._done = threading.Event()
        self._service: MemoryService | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._lock = threading.Lock()

    def start(self) -> None:
        """Begin opening the service; returns at once."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._open, name="engram-open", daemon=True)
            self._thread.start()

    def _open(self) -> None:
        try:
            service = self._opener()
        except BaseException as exc:  # kept and re-raised to every caller of get()
            logger.error("could not open Engram's memory: %s", exc)
            self._error = exc
            self._done.set()
            return
        with self._lock:
            if self._closed:
                # The server stopped while the model was loading: nobody will use the service.
                service.close()
            else:
                self._service = service
        # Nothing is warmed up here: what recall does not need (the metadata extractors: YAKE and networkx, ~0.15-0.4
        # CPU-s) is built by the first write that needs it, so it stays off the CPU spent before the first answer.
        self._done.set()

    @property
    def ready(self) -> bool:
        """True once the service is open and usable."""
        return self._service is not None

    @property
    def closed(self) -> bool:
        """True once `close()` was called: the stores are closed or closing."""
        return self._closed

    @property
    def error(self) -> BaseException | None:
        """Why opening failed, if it did."""
        return self._error

    async def settled(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the open to finish (or fail); True if it did."""
        self.start()
        if self._done.is_set():
            return True
        return await anyio.to_thread.run_sync(self._done.wait, timeout)

    async def get(self) -> MemoryService:
        """The open service, waiting for it if it is still loading."""
        self.start()
        if not self._done.is_set():
            await anyio.to_thread.run_sync(self._done.wait)
        if self._service is not None:
            return self._service
        if self._closed:
            raise BackendUnavailable("Engram is shutting down; try again once it has restarted.")
        if isinstance(self._error, EngramError):
            raise self._error
        raise BackendUnavailable(f"Engram's memory could not be opened: {self._error}. See the server log.")

    def close(self) -> None:
        """Close the stores; a load still in progress closes them itself when it finishes.

        Never waits for the model: a client that disconnects right after the handshake must see the server
        exit at once rather than after the load.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            service = self._service
        if service is not None:
            service.close()
