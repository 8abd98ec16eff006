"""glibc malloc settings that keep a long-running server's memory flat under a stream of writes."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

logger = logging.getLogger(__name__)

# mallopt parameters (glibc <malloc.h>).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
#: Two arenas: LanceDB's and onnxruntime's worker threads otherwise each get one, and freed memory stays in them.
ARENA_MAX = 2
#: Buffers from 64 KiB up are mapped and unmapped on their own instead of raising glibc's dynamic threshold
#: (which lets LanceDB's multi-megabyte decode buffers fragment the heap for good).
MMAP_THRESHOLD = 64 * 1024
TRIM_THRESHOLD = 128 * 1024
_tuned = False


def tune_allocator() -> bool:
    """Apply the settings once per process (Linux with glibc only); return whether they are in force.

    Also makes Arrow allocate through the system malloc (any platform).

    A setting the operator gave in the environment (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`,
    `MALLOC_TRIM_THRESHOLD_`) wins: then nothing is changed.
    """
    global _tuned
    # pyarrow's default pool (mimalloc) keeps what it freed: LanceDB's results and the recall index's loads left
    # ~47 MB more resident after 2,000 single writes, growing with them. The system malloc, tuned below, returns it.
    # Read by pyarrow when it first allocates; an operator's own ARROW_DEFAULT_MEMORY_POOL wins.
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    if _tuned:
        return True
    if not sys.platform.startswith("linux") or any(
        name in os.environ for name in ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
    ):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    done = all(
        mallopt(parameter, value) == 1
        for parameter, value in (
            (_M_ARENA_MAX, ARENA_MAX),
            (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        )
    )
    if not done:
        logger.debug("malloc tuning not applied (mallopt refused a setting)")
    _tuned = done
    return done
