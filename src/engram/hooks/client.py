"""The hook's fast path: hand the payload to a running hook daemon over a local socket (standard library only).

A hook process lives for one event. Importing LanceDB alone takes from half a second on a quiet machine to several
seconds on a loaded one, so the process that Claude Code starts on every prompt imports none of it: it passes the
payload to `engram hook --serve`, a daemon that keeps the stores open (and, once a capture needed it, the model),
and prints the daemon's answer. When no daemon runs, this process starts one and injects nothing this time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

INJECTING = ("session-start", "user-prompt-submit", "context")
CAPTURING = ("stop", "pre-compact", "capture")
#: How long a capturing hook (run in the background) waits for a daemon it started to listen.
DAEMON_START_S = 60.0
#: The most a reply may hold (a briefing is a few kilobytes; this is a guard, not a limit anyone reaches).
_MAX_REPLY = 8 * 1024 * 1024
_OPTIONS = {"--budget-ms": "budget_ms", "--max-tokens": "max_tokens", "--user-id": "user_id"}


def socket_path(data_dir: Path) -> Path:
    """Where the daemon of `data_dir` listens: in the data directory, or (path too long for a socket) in /tmp."""
    path = data_dir / "hook.sock"
    if len(os.fsencode(path)) < 100:
        return path
    digest = hashlib.sha256(os.fsencode(data_dir.resolve())).hexdigest()[:16]
    # A directory of the user's own, not /tmp itself: other users can plant files (or links) in /tmp.
    return Path(tempfile.gettempdir()) / f"engram-{os.getuid()}" / f"{digest}.sock"


def private_directory(directory: Path) -> None:
    """Create `directory` owner-only, or refuse one that another user owns, that others may write, or a link."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    found = directory.lstat()
    if stat.S_ISLNK(found.st_mode) or found.st_uid != os.getuid() or found.st_mode & 0o022:
        raise PermissionError(f"{directory} must be a directory of this user that no one else can write")


def daemons_supported() -> bool:
    """Whether this platform has local (Unix domain) sockets."""
    return os.name == "posix" and hasattr(socket, "AF_UNIX")


def ask(path: Path, request: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Send one request to the daemon at `path` and return its reply; OSError if none answers within `timeout`."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(max(0.001, timeout))
        connection.connect(str(path))
        connection.sendall(json.dumps(request).encode() + b"\n")
        received = b""
        while not received.endswith(b"\n"):
            connection.settimeout(max(0.001, deadline - time.monotonic()))
            chunk = connection.recv(65536)
            if not chunk:
                break
            received += chunk
            if len(received) > _MAX_REPLY:
                raise OSError("the hook daemon's reply is too long")
    try:
        reply = json.loads(received)
    except json.JSONDecodeError as exc:
        raise OSError("the hook daemon closed the connection without a reply") from exc
    if not isinstance(reply, dict):
        raise OSError("the hook daemon sent something other than a reply")
    return reply


def start_daemon(data_dir: Path) -> None:
    """Start `engram hook --serve` in the background, detached, logging to `hook-daemon.log` in the data directory."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    log = os.open(data_dir / "hook-daemon.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        subprocess.Popen(
            [sys.executable, "-m", "engram", "hook", "--serve"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,  # not a child of the assistant's process group: it outlives the hook
        )
    finally:
        os.close(log)


def wait_for_daemon(path: Path, timeout: float) -> bool:
    """Whether a daemon answers at `path` within `timeout` (polled: it is a process starting up elsewhere)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):
            if ask(path, {"event": "ping"}, max(0.1, min(5.0, deadline - time.monotonic()))).get("pong"):
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


def via_daemon(
    data_dir: Path, event: str, text: str, user_id: str | None, max_tokens: int, budget_ms: int
) -> dict[str, Any]:
    """The daemon's reply to one hook event, starting the daemon if none runs.

    Injecting events wait at most `budget_ms` and, when no daemon was running, say so instead of waiting for it;
    capturing events (run in the background) wait for a daemon they started.
    """
    path = socket_path(data_dir)
    request = {"event": event, "stdin": text, "user_id": user_id, "max_tokens": max_tokens}
    timeout = budget_ms / 1000 if event in INJECTING else 600.0
    try:
        return ask(path, request, timeout)
    except (FileNotFoundError, ConnectionRefusedError):
        start_daemon(data_dir)
    except OSError as exc:
        return _nothing(event, f"the hook daemon did not answer within {budget_ms} ms ({exc or 'timed out'})")
    if event in INJECTING:
        return _nothing(event, "the hook daemon was not running; it is starting now, so the next prompt gets memory")
    if not wait_for_daemon(path, DAEMON_START_S):
        return {"stdout": "", "messages": ["the hook daemon did not start; see hook-daemon.log"], "exit": 1}
    return ask(path, request, timeout)


def _nothing(event: str, why: str) -> dict[str, Any]:
    if event in INJECTING:
        return {"stdout": "", "messages": [f"no context injected: {why}"], "exit": 0}
    return {"stdout": "", "messages": [f"nothing captured: {why}"], "exit": 1}


def emit(reply: dict[str, Any]) -> int:
    """Print a reply as the hook's output (stdout) and log (stderr); return the exit code."""
    stdout = reply.get("stdout") or ""
    if stdout:
        sys.stdout.write(stdout if stdout.endswith("\n") else stdout + "\n")
    for message in reply.get("messages") or []:
        sys.stderr.write(f"engram hook: {message}\n")
    code = reply.get("exit", 0)
    return code if isinstance(code, int) and code in (0, 1) else 1


def fast_main(argv: list[str]) -> int | None:
    """Handle `hook EVENT [options]` through the daemon; None when the full command line must handle it instead.

    Only what needs no configuration is handled here: ENGRAM_DATA_DIR must be set (the installed hook commands
    set it), and every option must be one this path knows.
    """
    if len(argv) < 2 or argv[0] != "hook" or argv[1] not in (*INJECTING, *CAPTURING) or not daemons_supported():
        return None
    options = {"budget_ms": "300", "max_tokens": "1000", "user_id": None}
    rest = argv[2:]
    if len(rest) % 2:
        return None
    for flag, value in zip(rest[::2], rest[1::2], strict=True):
        if flag not in _OPTIONS:
            return None
        options[_OPTIONS[flag]] = value
    data_dir = os.environ.get("ENGRAM_DATA_DIR")
    if not data_dir or not str(options["budget_ms"]).isdigit() or not str(options["max_tokens"]).isdigit():
        return None
    text = sys.stdin.read()
    user_id = options["user_id"] or os.environ.get("ENGRAM_DEFAULT_USER") or None
    reply = via_daemon(
        Path(data_dir).expanduser(),
        argv[1],
        text,
        user_id,
        int(str(options["max_tokens"])),
        int(str(options["budget_ms"])),
    )
    return emit(reply)
