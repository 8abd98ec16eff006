"""The allocator tuning: applied once on glibc, and never over an operator's own malloc settings."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from engram import allocator


@pytest.fixture(autouse=True)
def _untuned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator, "_tuned", False)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_the_settings_are_applied_on_linux() -> None:
    assert allocator.tune_allocator() is True
    assert allocator.tune_allocator() is True  # idempotent


@pytest.mark.parametrize("name", ["MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"])
def test_an_operators_malloc_setting_wins(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "4")
    assert allocator.tune_allocator() is False


def _arrow_pool_after_tuning(env: dict[str, str]) -> str:
    """The default Arrow memory pool of a fresh process that tuned the allocator before importing pyarrow."""
    script = (
        "from engram.allocator import tune_allocator; tune_allocator(); "
        "import pyarrow; print(pyarrow.default_memory_pool().backend_name)"
    )
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_arrow_allocates_through_the_tuned_system_malloc_unless_the_operator_chose_a_pool() -> None:
    # pyarrow's default pool (mimalloc) kept what LanceDB's results had used: 47 MB more resident memory after 2,000
    # single writes, growing with them.
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    assert _arrow_pool_after_tuning(env) == "system"
    assert _arrow_pool_after_tuning(env | {"ARROW_DEFAULT_MEMORY_POOL": "jemalloc"}) == "jemalloc"
