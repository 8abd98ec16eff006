"""Defers the body of LanceDB's unused REST namespace client until something really asks for it.

`import lancedb` imports `lance_namespace`, which imports `lance_namespace_urllib3_client.models`; the client
package's own `__init__` then imports its whole generated `api` package and HTTP stack (about half of the CPU of
`import lancedb`, README "Start-up"). Engram never talks to a REST namespace. Registering the package
unexecuted, with its real `__path__` and `__spec__`, lets `.models.x` import on its own; the real `__init__`
runs the first time an attribute the module does not yet have is asked for, so code that uses the client sees
exactly the objects it would have seen.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import types
from pathlib import Path

from engram.storage.unexecuted_package import find_package, register_unexecuted

log = logging.getLogger(__name__)

CLIENT_PACKAGE = "lance_namespace_urllib3_client"
#: The layout this deferral was written against: a package whose `__init__` imports these subpackages.
_EXPECTED_SUBPACKAGES = ("api", "models")


def defer_rest_client(package: str = CLIENT_PACKAGE) -> bool:
    """Register the REST client package unexecuted (see module docstring); True if it was deferred.

    Does nothing when the package is already imported, absent, or laid out differently than expected.
    """
    if package in sys.modules:
        return False
    spec = find_package(package, "lazy REST client")
    if not _expected_layout(spec):
        log.debug("lazy REST client: %s is absent or laid out differently; left alone", package)
        return False
    assert spec is not None

    def submodule(name: str) -> object | None:
        """Import just the submodule `name`, if the package has one."""
        if not name.startswith("__") and importlib.util.find_spec(f"{package}.{name}") is not None:
            return importlib.import_module(f"{package}.{name}")
        return None

    register_unexecuted(spec, "lazy REST client", submodule=submodule)
    return True


def _expected_layout(spec: importlib.machinery.ModuleSpec | None) -> bool:
    """Whether the installed client is a regular package from files holding the subpackages we expect."""
    if spec is None or spec.loader is None or spec.origin is None or not spec.submodule_search_locations:
        return False
    if not hasattr(spec.loader, "exec_module"):
        return False
    root = Path(spec.origin).parent
    return all((root / sub / "__init__.py").is_file() for sub in _EXPECTED_SUBPACKAGES)


def is_deferred(module: types.ModuleType) -> bool:
    """Whether the given client module is still waiting for its real `__init__` to run."""
    return "__getattr__" in module.__dict__ and module.__dict__["__getattr__"].__name__ == "load_on_demand"
