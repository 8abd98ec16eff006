"""The allocator tuning: applied once on glibc, and never over an operator's own malloc settings."""

from __future__ import annotations

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
