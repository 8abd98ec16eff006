"""A tiny stdio server for transport tests: Engram's server class with probe tools instead of memory.

Run as `python -m tests.stdio_probe`; it serves stdio through `EngramServer.run()` (the path `engram serve`
takes). With `--say-served` it then writes `served` to fd 1, to show that the descriptor is the real stdout again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from engram.server.app import EngramServer


async def echo(text: str) -> str:
    """Return `text` unchanged."""
    return text


async def noisy(text: str) -> str:
    """Write stray output every way a handler might (print, fd 1, a child), let a child read stdin; return `text`."""
    print("stray print from a handler")
    sys.stdout.flush()
    os.write(1, b"stray write to fd 1\n")
    subprocess.run(["echo", "stray output of a child"], check=True)
    # A child reading stdin must find it empty, not take the client's next request off the wire (or wait for it).
    subprocess.run(["cat"], stdout=subprocess.DEVNULL, check=True)
    return text


async def worker_threads() -> int:
    """How many AnyIO worker threads this process has started (the SDK's stdio starts one to read stdin)."""
    return sum(thread.name.startswith("AnyIO worker") for thread in threading.enumerate())


def main() -> None:
    """Serve the probe tools over stdio until stdin ends."""
    server = EngramServer("probe")
    for tool in (echo, noisy, worker_threads):
        server.add_tool(tool)
    server.run()
    if "--say-served" in sys.argv:
        os.write(1, b"served\n")


if __name__ == "__main__":
    main()
