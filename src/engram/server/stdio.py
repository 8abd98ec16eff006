"""MCP over stdin/stdout pipes served from the event loop, without a worker-thread round trip per line.

The SDK's `stdio_server` wraps stdin and stdout in `anyio.wrap_file`: every line read, every write and every
flush is a hop to a worker thread (three or more per request), a large share of a fast call's CPU. Here the
pipes are non-blocking and the loop waits on them directly. What the SDK's transport guarantees is kept:
newline-delimited JSON-RPC in UTF-8 (invalid bytes replaced, lines of any length), lines that are not
JSON-RPC handed to the session as exceptions (which it logs and skips), EOF on stdin ends the server, whole
messages written however slowly the client reads, and fd 0 and fd 1 diverted while serving (to /dev/null and
to stderr) so that a stray `print()` or a child's output never reaches the wire, then restored.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server
from mcp.shared._context_streams import ContextReceiveStream, ContextSendStream, create_context_streams
from mcp.shared.message import SessionMessage
from mcp.types import jsonrpc_message_adapter

logger = logging.getLogger(__name__)

#: Bytes asked of the stdin pipe per read: a typical request fits in one, and it stays below the size at which
#: the C allocator maps fresh pages for every buffer.
_READ_CHUNK = 64 * 1024


def pipes_usable(stdin_fd: int = 0, stdout_fd: int = 1) -> bool:
    """Whether stdio can be served natively: a POSIX system whose stdin and stdout are pipes or sockets.

    A TTY, a regular file or /dev/null cannot be waited on by the event loop (a file is always "ready" and a
    terminal is shared with the user's shell, whose flags must not change), and Windows has no non-blocking
    pipes for the loop to wait on: those are served by the SDK's own threaded `stdio_server`.
    """
    if sys.platform == "win32":
        return False
    for fd in (stdin_fd, stdout_fd):
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            return False
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            return False
    return True


async def serve_stdio(server: MCPServer[Any]) -> None:
    """Serve `server` over this process's stdin and stdout until stdin ends (natively where `pipes_usable`)."""
    lowlevel = server._lowlevel_server  # what MCPServer.run_stdio_async serves, with the same init options
    # The SDK's threaded transport where the loop cannot wait on the descriptors (see `pipes_usable`), or where
    # sys.stdin/sys.stdout are not fds 0 and 1 (a host replaced them: the SDK serves those objects in place).
    backed = _backed_by(sys.stdin, 0) and _backed_by(sys.stdout, 1)
    transport = native_stdio_server() if backed and pipes_usable() else stdio_server()
    async with transport as (read_stream, write_stream):
        await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())


def _backed_by(stream: Any, fd: int) -> bool:
    """Whether a sys stream still writes to its standard descriptor (an embedding host may have replaced it)."""
    try:
        return bool(stream.fileno() == fd)
    except (AttributeError, OSError, ValueError):
        return False


class _ClaimedFd:
    """A standard descriptor taken over for the wire: the pipe moves to a private non-blocking duplicate."""

    def __init__(self, fd: int, diversion: int) -> None:
        import fcntl

        self.fd = fd
        # Above the standard range and close-on-exec, so that no child inherits the wire.
        self.wire: int = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
        # O_NONBLOCK belongs to the pipe's open file description, which the restored fd shares: put it back.
        self._flags: int = fcntl.fcntl(self.wire, fcntl.F_GETFL)
        try:
            fcntl.fcntl(self.wire, fcntl.F_SETFL, self._flags | os.O_NONBLOCK)
            os.dup2(diversion, fd)
        except OSError:
            self._close_wire()
            raise

    def release(self) -> None:
        """Point the standard descriptor back at the pipe, blocking again as it was."""
        with suppress(OSError):
            os.dup2(self.wire, self.fd)
        self._close_wire()

    def _close_wire(self) -> None:
        import fcntl

        with suppress(OSError):
            fcntl.fcntl(self.wire, fcntl.F_SETFL, self._flags)
        with suppress(OSError):
            os.close(self.wire)


def _claim(fd: int, open_diversion: Callable[[], int]) -> _ClaimedFd:
    diversion = open_diversion()
    try:
        return _ClaimedFd(fd, diversion)
    finally:
        os.close(diversion)


def _stdout_diversion() -> int:
    """Where stray writes to fd 1 go while serving: stderr, or nowhere if there is no stderr."""
    try:
        return os.dup(2)
    except OSError:
        return os.open(os.devnull, os.O_WRONLY)


@asynccontextmanager
async def native_stdio_server() -> AsyncGenerator[
    tuple[ContextReceiveStream[SessionMessage | Exception], ContextSendStream[SessionMessage]], None
]:
    """The SDK's `stdio_server` contract on non-blocking pipes: the read and write streams of one session."""
    # Anything already buffered for the real stdout goes out before fd 1 is pointed at stderr.
    sys.stdout.flush()
    stdin = _claim(0, lambda: os.open(os.devnull, os.O_RDONLY))
    try:
        stdout = _claim(1, _stdout_diversion)
    except OSError:
        stdin.release()
        raise
    try:
        read_sender, read_stream = create_context_streams[SessionMessage | Exception](0)
        write_stream, write_receiver = create_context_streams[SessionMessage](0)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_read_messages, stdin.wire, read_sender)
            tasks.start_soon(_write_messages, stdout.wire, write_receiver)
            yield read_stream, write_stream
    finally:
        stdout.release()
        stdin.release()


async def _read_messages(wire: int, sink: ContextSendStream[SessionMessage | Exception]) -> None:
    """Frame stdin into lines and hand each to the session as a message, or as the error that parsing raised."""
    try:
        async with sink:
            partial = bytearray()  # the start of a line whose newline has not arrived yet
            while chunk := await _read_some(wire):
                start = 0
                end = chunk.find(b"\n")
                while end >= 0:
                    if partial:
                        partial += chunk[start:end]
                        line: bytes = bytes(partial)
                        partial.clear()
                    else:
                        line = chunk[start:end]
                    await sink.send(_parse(line))
                    start = end + 1
                    end = chunk.find(b"\n", start)
                partial += chunk[start:]
            if partial:  # a last line without its newline, as the SDK's line reader yields it too
                await sink.send(_parse(bytes(partial)))
    except (anyio.ClosedResourceError, anyio.BrokenResourceError):
        pass  # the session stopped listening (it is shutting down): what is left on stdin stays unread


async def _read_some(wire: int) -> bytes:
    """The next bytes on the pipe (empty at EOF), waiting in the event loop while there are none."""
    while True:
        try:
            return os.read(wire, _READ_CHUNK)
        except BlockingIOError:
            await anyio.wait_readable(wire)


def _parse(line: bytes) -> SessionMessage | Exception:
    # Decoded as the SDK's reader does (invalid UTF-8 replaced), so the same lines parse or fail.
    try:
        message = jsonrpc_message_adapter.validate_json(line.decode("utf-8", "replace"), by_name=False)
    except Exception as exc:
        return exc
    return SessionMessage(message)


async def _write_messages(wire: int, source: ContextReceiveStream[SessionMessage]) -> None:
    """Write each outgoing message as one line, whole, whatever the reader's pace."""
    connected = True
    async with source:
        async for outgoing in source:
            if not connected:
                continue  # drained so that the session never blocks on a client that has gone
            message = outgoing.message
            # The bytes `model_dump_json` would return as text, without decoding and encoding them again.
            data = message.__pydantic_serializer__.to_json(message, by_alias=True, exclude_unset=True) + b"\n"
            try:
                await _write_all(wire, data)
            except OSError as exc:
                # The client closed its end (EPIPE): its stdin EOF ends the server; nothing is left to answer.
                logger.info("stdout closed by the client (%s); replies are dropped", exc)
                connected = False


async def _write_all(wire: int, data: bytes) -> None:
    """Write `data` in as few syscalls as the pipe allows, waiting in the loop while it is full."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(wire, view)
        except BlockingIOError:
            await anyio.wait_writable(wire)
            continue
        view = view[written:]
