"""A package registered unexecuted: its real `__init__` runs only when a name it does not have is asked for."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import logging
import sys
import types
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


def find_package(package: str, label: str) -> importlib.machinery.ModuleSpec | None:
    """The package's spec, or None when the import system cannot locate it (logged at debug under `label`)."""
    try:
        return importlib.util.find_spec(package)
    except (ImportError, ValueError) as exc:
        log.debug("%s: cannot locate %s (%s); left alone", label, package, exc)
        return None


def register_unexecuted(
    spec: importlib.machinery.ModuleSpec,
    label: str,
    names: Mapping[str, object] | None = None,
    submodule: Callable[[str], object | None] | None = None,
) -> types.ModuleType:
    """Put the package of `spec` in `sys.modules` with its real `__path__` and `__spec__` but unexecuted.

    It holds `names`; a missing name is first asked of `submodule` (None: not one), and otherwise runs the real
    `__init__`, whose objects then stand in the module for that and every later look-up.
    """
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def load_on_demand(name: str) -> object:
        """Return a name the module lacks: a submodule if `submodule` finds one, else run the real `__init__`."""
        found = submodule(name) if submodule is not None else None
        if found is not None:
            return found
        # Removed first so that names the real `__init__` itself looks up cannot recurse into here.
        del module.__dict__["__getattr__"]
        loader.exec_module(module)
        log.debug("%s: %s loaded in full (asked for %r)", label, spec.name, name)
        return getattr(module, name)

    module.__dict__.update(names or {}, __getattr__=load_on_demand)
    sys.modules[spec.name] = module
    return module
