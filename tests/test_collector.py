"""The garbage-collector tuning of `engram serve`: no young-generation collection pass on every recall."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from engram import collector


@pytest.fixture
def _threshold() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


@pytest.mark.usefixtures("_threshold")
def test_tuning_raises_the_young_threshold_and_keeps_the_older_ones() -> None:
    gc.set_threshold(700, 11, 12)
    assert collector.tune_collector() is True
    assert gc.get_threshold() == (collector.YOUNG_THRESHOLD, 11, 12)


@pytest.mark.usefixtures("_threshold")
def test_tuning_never_lowers_a_higher_threshold_nor_enables_a_disabled_collector() -> None:
    gc.set_threshold(collector.YOUNG_THRESHOLD * 2, 10, 10)
    assert collector.tune_collector() is True
    assert gc.get_threshold()[0] == collector.YOUNG_THRESHOLD * 2
    gc.set_threshold(0, 10, 10)  # what gc.disable()-style hosts set: left as the operator chose
    assert collector.tune_collector() is False
    assert gc.get_threshold()[0] == 0


def test_serve_tunes_the_collector_before_it_serves(tmp_path: Path) -> None:
    # A fresh process: `engram serve` with the server replaced by one that reports the threshold it runs under.
    script = (
        "import gc, sys\n"
        "import engram.server.app as app\n"
        "class Reporting:\n"
        "    def run(self) -> None:\n"
        "        print(gc.get_threshold()[0])\n"
        "app.build_server = lambda settings: Reporting()\n"
        "from engram.cli import main\n"
        "sys.argv = ['engram', 'serve']\n"
        "main()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")} | {"ENGRAM_DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.strip().splitlines()[-1]) == collector.YOUNG_THRESHOLD
