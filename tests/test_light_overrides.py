"""LanceDB's import on Python 3.11 skips the `overrides` package's import-time checks, as it does on 3.12+."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(sys.version_info >= (3, 12), reason="LanceDB uses typing.override on 3.12+")


def _run(code: str) -> str:
    """Run `code` in a fresh interpreter (the test process holds LanceDB already) and return its stdout."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_importing_lancedb_through_the_storage_layer_runs_no_override_checks() -> None:
    # The checks disassemble every decorated method at import (~0.1 CPU-s of `import lancedb`); on 3.12+ LanceDB
    # itself uses typing.override and a plain base class instead, which is what it gets here.
    out = _run(
        "import sys\n"
        "import engram.storage.long_term, lancedb, lancedb.db\n"
        "print(sorted(m for m in sys.modules if m.startswith('overrides.')))\n"
        "print(type(lancedb.db.DBConnection).__name__)\n"
    )
    modules, metaclass = out.splitlines()
    assert modules == "[]" and metaclass != "EnforceOverridesMeta"


def test_the_light_module_gives_the_real_package_for_any_other_name() -> None:
    out = _run(
        "import importlib\n"
        "import engram.storage.long_term, lancedb\n"
        "from overrides import __VERSION__, EnforceOverrides, final, overrides, override\n"
        "real = importlib.import_module('overrides.overrides')\n"
        "enforce = importlib.import_module('overrides.enforce')\n"
        "assert overrides is real.overrides and __VERSION__ == real.__VERSION__\n"
        "import overrides as package\n"
        "assert package.override is real.override and package.EnforceOverrides is enforce.EnforceOverrides\n"
        "print('ok')\n"
    )
    assert out == "ok"


def test_lancedb_still_works_through_the_light_module(tmp_path: object) -> None:
    out = _run(
        "import sys\n"
        "import engram.storage.long_term, lancedb, pyarrow as pa\n"
        f"db = lancedb.connect({str(tmp_path)!r})\n"
        "table = db.create_table('t', pa.table({'x': [1, 2, 3]}))\n"
        "print(table.count_rows(), sorted(db.table_names()))\n"
    )
    assert out == "3 ['t']"
