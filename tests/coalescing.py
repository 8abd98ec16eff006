"""Relays that hand a client each progress notification glued to the message after it, as a busy reader gets them.

A client that is slow to read finds several of the server's messages waiting and takes them in one read. These
relays make that happen every time, not only on a loaded machine: each progress notification is held back until
the server's next message arrives, and the two are written to the client in one write (one pipe write of under
4 KiB is atomic, and one small send on loopback arrives in one read).

- `python -m tests.coalescing -- COMMAND...` runs a stdio server and relays its stdout (a client's command).
  Consecutive progress notifications are held together, until the server writes anything else.
- `TcpCoalescer(target_port)` relays TCP connections to an HTTP server (SSE and streamable HTTP).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from types import TracebackType

#: The marker of a message worth holding back: server-to-client progress.
PROGRESS = b'"notifications/progress"'


def ends_with_progress(data: bytes) -> bool:
    """Whether the last message in `data` is a progress notification (requests and responses carry an "id")."""
    at = data.rfind(PROGRESS)
    return at >= 0 and b'"id"' not in data[at:]


def relay_stdio(command: list[str]) -> int:
    """Run `command` with this process's stdin passed through and its stdout lines coalesced; return its exit code."""
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdin is not None and child.stdout is not None
    child_stdin, child_stdout = child.stdin, child.stdout

    def forward_requests() -> None:
        with child_stdin:
            for line in sys.stdin.buffer:
                child_stdin.write(line)
                child_stdin.flush()

    threading.Thread(target=forward_requests, daemon=True).start()
    held = b""
    for line in child_stdout:
        if ends_with_progress(line):
            held += line
            continue
        os.write(1, held + line)
        held = b""
    if held:
        os.write(1, held)
    return child.wait()


class TcpCoalescer:
    """A loopback TCP relay to `127.0.0.1:target_port` that glues each chunk carrying progress to the next chunk."""

    def __init__(self, target_port: int) -> None:
        self._target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._accepting = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> TcpCoalescer:
        self._accepting.start()
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _value: BaseException | None, _tb: TracebackType | None
    ) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()
        self._accepting.join()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed by __exit__
                return
            upstream = socket.create_connection(self._target)
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, coalesce: bool) -> None:
        held = b""
        try:
            while chunk := source.recv(65536):
                if coalesce and ends_with_progress(chunk):
                    held += chunk
                    continue
                sink.sendall(held + chunk)
                held = b""
            if held:
                sink.sendall(held)
            sink.shutdown(socket.SHUT_WR)
        except OSError:  # the other side or __exit__ closed the connection
            pass


if __name__ == "__main__":
    if sys.argv[1:2] != ["--"] or len(sys.argv) < 3:
        sys.exit("usage: python -m tests.coalescing -- COMMAND...")
    sys.exit(relay_stdio(sys.argv[2:]))
