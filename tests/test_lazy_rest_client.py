"""LanceDB's unused REST namespace client stays unexecuted at start-up, yet gives its real objects when asked."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from engram.storage.lazy_rest_client import defer_rest_client, is_deferred


def _run(code: str) -> str:
    """Run `code` in a fresh interpreter (the test process may already hold the client) and return its stdout."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_importing_the_storage_layer_does_not_execute_the_rest_client_api() -> None:
    out = _run(
        "import sys\n"
        "import engram.storage.long_term, engram.storage.knowledge, lancedb\n"
        "assert 'lancedb.db' in sys.modules and 'lance_namespace' in sys.modules\n"
        "print(sorted(m for m in sys.modules if m.startswith('lance_namespace_urllib3_client.api')))\n"
    )
    assert out == "[]"


def test_the_deferred_client_gives_the_real_objects_when_asked() -> None:
    out = _run(
        "import importlib, sys\n"
        "import engram.storage.long_term, lancedb\n"
        "import lance_namespace_urllib3_client as client\n"
        "from engram.storage.lazy_rest_client import is_deferred\n"
        "assert is_deferred(client)\n"
        "api = importlib.import_module('lance_namespace_urllib3_client.api.table_api')\n"
        "assert client.TableApi is api.TableApi\n"
        "assert not is_deferred(client)\n"
        "from lance_namespace_urllib3_client import ApiClient, Configuration, __version__\n"
        "assert ApiClient is importlib.import_module('lance_namespace_urllib3_client.api_client').ApiClient\n"
        "assert client.models.JsonArrowField.__module__.startswith('lance_namespace_urllib3_client.models')\n"
        "Configuration(host='http://127.0.0.1:1')\n"
        "print(__version__)\n"
    )
    assert out and out[0].isdigit()


@pytest.fixture
def fake_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """A throwaway package laid out like the client: an `__init__` that imports its `api` and `models`."""
    name = "engram_fake_rest_client"
    root = tmp_path / name
    for sub in ("api", "models"):
        (root / sub).mkdir(parents=True)
        (root / sub / "__init__.py").write_text(f"WHAT = {sub!r}\n")
    (root / "__init__.py").write_text(
        "import builtins\n"
        "builtins.engram_fake_runs = getattr(builtins, 'engram_fake_runs', 0) + 1\n"
        f"from {name}.api import WHAT as API\n"
        "VERSION = '1.0'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, root
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]
    import builtins

    if hasattr(builtins, "engram_fake_runs"):
        del builtins.engram_fake_runs


def test_the_real_init_runs_once_and_only_for_a_missing_attribute(fake_package: tuple[str, Path]) -> None:
    import builtins

    name, _ = fake_package
    assert defer_rest_client(name)
    module = sys.modules[name]
    assert is_deferred(module)
    models = __import__(f"{name}.models", fromlist=["WHAT"])
    assert models.WHAT == "models"
    assert not hasattr(builtins, "engram_fake_runs")  # a submodule imported on its own
    assert module.VERSION == "1.0"
    assert module.API == "api"
    assert builtins.engram_fake_runs == 1
    assert not is_deferred(module)
    with pytest.raises(AttributeError):
        _ = module.NOT_THERE
    assert builtins.engram_fake_runs == 1


def test_a_differently_laid_out_package_is_left_alone(fake_package: tuple[str, Path]) -> None:
    name, root = fake_package
    (root / "api" / "__init__.py").unlink()
    (root / "api").rmdir()
    assert not defer_rest_client(name)
    assert name not in sys.modules


def test_an_absent_or_already_imported_package_is_left_alone(fake_package: tuple[str, Path]) -> None:
    name, _ = fake_package
    assert not defer_rest_client("engram_no_such_package_anywhere")
    __import__(name)
    assert not defer_rest_client(name)
    assert not is_deferred(sys.modules[name])
