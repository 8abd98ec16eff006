"""Thread pools of the native libraries under the embedders, capped for a small machine that is busy."""

from __future__ import annotations

import os

#: The variables that size OpenMP, OpenBLAS, MKL, Accelerate and numexpr pools. They are read when each library
#: loads, so they must be set before numpy, torch or onnxruntime is imported.
POOL_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def native_thread_env(threads: int) -> dict[str, str]:
    """Environment variables that cap every native thread pool at `threads`."""
    return {name: str(threads) for name in POOL_VARIABLES}


def cap_native_threads(threads: int) -> None:
    """Cap native thread pools at `threads` in this process, unless the user set a variable already.

    By default each pool starts one spinning thread per core; on 2 busy cores that made a short query 10 to
    100 times slower than one thread (see the README's embedding section). Call it before numpy is imported.
    """
    for name, value in native_thread_env(threads).items():
        os.environ.setdefault(name, value)
    # The Rust tokenizer's own pool would compete with inference for the same cores.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
