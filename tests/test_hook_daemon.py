"""The hook daemon: hook processes hand events to it over a local socket and import no storage engine themselves;
the first event starts it; it answers what the in-process hook answers."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engram.hooks.client import ask, daemons_supported, private_directory, socket_path, wait_for_daemon

pytestmark = pytest.mark.skipif(not daemons_supported(), reason="no Unix domain sockets on this platform")

FIXTURES = Path(__file__).parent / "fixtures" / "claude_code"
#: Report, at exit, which heavy modules a hook process imported (its fast path must import none of them).
REPORT_IMPORTS = (
    "import atexit, runpy, sys\n"
    "atexit.register(lambda: sys.stderr.write('IMPORTED=' + ','.join(m for m in ('lancedb', 'pyarrow', 'click', "
    "'pydantic', 'numpy') if m in sys.modules) + '\\n'))\n"
    "sys.argv = ['engram', *sys.argv[1:]]\n"
    "runpy.run_module('engram', run_name='__main__')\n"
)


@pytest.fixture
def environ(tmp_path: Path) -> dict[str, str]:
    return os.environ | {
        "ENGRAM_DATA_DIR": str(tmp_path / "data"),
        "ENGRAM_EMBEDDING_MODEL": "hash",
        "ENGRAM_DEFAULT_USER": "alice",
        "ENGRAM_LOG_LEVEL": "INFO",
    }


def _stop(data_dir: Path) -> None:
    """Ask the daemon to stop, and wait until its socket is gone (it removes it on the way out).

    A daemon that cannot be asked (it never came up) is stopped by the process id it wrote in its lock file.
    """
    path = socket_path(data_dir)
    if wait_for_daemon(path, 1.0):
        assert ask(path, {"event": "shutdown"}, 30.0) == {"stopping": True}
    else:
        lock = Path(f"{path}.lock")
        pid = lock.read_text().strip() if lock.exists() else ""
        if pid.isdigit():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGTERM)
    deadline = time.monotonic() + 60
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not path.exists()


@pytest.fixture
def daemon(environ: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """`engram hook --serve`, once it says it listens."""
    with (tmp_path / "daemon.log").open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "engram", "hook", "--serve"],
            env=environ,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    assert process.stdout is not None
    with process.stdout:
        try:
            assert process.stdout.readline().startswith("engram hook daemon listening on ")
            yield process
        finally:
            _stop(Path(environ["ENGRAM_DATA_DIR"]))
            assert process.wait(timeout=60) == 0


def _run_hook(environ: dict[str, str], event: str, payload: str, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", REPORT_IMPORTS, "hook", event, *options],
        input=payload,
        env=environ,
        capture_output=True,
        text=True,
        check=False,
    )


def _payload(name: str, cwd: Path, transcript: Path, **changes: str) -> str:
    text = (FIXTURES / name).read_text().replace("${CWD}", str(cwd)).replace("${TRANSCRIPT}", str(transcript))
    return json.dumps(json.loads(text) | changes)


def test_hook_processes_go_through_the_daemon_without_importing_a_storage_engine(
    daemon: subprocess.Popen[str], environ: dict[str, str], tmp_path: Path
) -> None:
    webshop = tmp_path / "webshop"
    (webshop / ".git").mkdir(parents=True)
    transcript = tmp_path / "transcript.jsonl"
    transcript.write_text((FIXTURES / "transcript.jsonl").read_text().replace("${CWD}", str(webshop)))

    stored = _run_hook(environ, "stop", _payload("stop.json", webshop, transcript))
    assert stored.returncode == 0, stored.stderr
    assert "captured: 3 stored" in stored.stderr and "IMPORTED=\n" in stored.stderr
    again = _run_hook(environ, "stop", _payload("stop.json", webshop, transcript))
    assert "captured: 0 stored, 3 already stored" in again.stderr

    prompt = _payload("user_prompt_submit.json", webshop, transcript, session_id="a-new-session")
    injected = _run_hook(environ, "user-prompt-submit", prompt, "--budget-ms", "60000")
    assert injected.returncode == 0, injected.stderr
    assert "IMPORTED=\n" in injected.stderr
    context = json.loads(injected.stdout)["hookSpecificOutput"]["additionalContext"]
    assert "orders in PostgreSQL 16" in context


def test_the_first_event_starts_the_daemon_and_injects_nothing_meanwhile(
    environ: dict[str, str], tmp_path: Path
) -> None:
    data_dir = Path(environ["ENGRAM_DATA_DIR"])
    asked = json.dumps({"session_id": "s1", "prompt": "anything about orders?"})
    try:
        first = _run_hook(environ, "user-prompt-submit", asked)
        assert first.returncode == 0 and first.stdout == ""
        assert "no context injected: the hook daemon was not running; it is starting now" in first.stderr
        assert wait_for_daemon(socket_path(data_dir), 120.0)
        assert socket_path(data_dir).stat().st_mode & 0o777 == 0o600  # only this user may connect
        generic = _run_hook(environ, "context", asked, "--budget-ms", "60000")
        assert json.loads(generic.stdout)["context"] == ""
    finally:
        _stop(data_dir)


def test_a_long_data_path_puts_the_socket_in_a_directory_of_the_users_own(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)
    path = socket_path(deep)
    assert path.parent.name == f"engram-{os.getuid()}" and path.parent.parent == Path(tempfile.gettempdir())


def test_the_socket_directory_is_refused_when_others_may_write_it_or_it_is_a_link(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    with pytest.raises(PermissionError, match="no one else can write"):
        private_directory(shared)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    with pytest.raises(PermissionError):
        private_directory(link)
    mine = tmp_path / "mine"
    private_directory(mine)
    assert mine.stat().st_mode & 0o777 == 0o700
