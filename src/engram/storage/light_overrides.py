"""Gives LanceDB on Python 3.11 the light `override` it uses on 3.12+, instead of the `overrides` package's checks.

On 3.11, `lancedb` imports `override` and `EnforceOverrides` from the `overrides` package, whose decorator
disassembles every decorated method and walks its base classes at import time (about 0.1 CPU-s of `import lancedb`,
README "Start-up"). These are checks for LanceDB's own developers; on 3.12+ LanceDB uses `typing.override` and a
plain base class instead. Registering the package unexecuted with those two names gives 3.11 the same; any other
name asked of it runs the real package, whose objects then replace the light ones for whoever imports them later.
"""

from __future__ import annotations

import logging
import sys

from typing_extensions import override

from engram.storage.unexecuted_package import find_package, register_unexecuted

log = logging.getLogger(__name__)

PACKAGE = "overrides"


class EnforceOverrides:
    """The plain base class LanceDB uses on Python 3.12+ in place of the package's checking metaclass."""


def lighten_overrides(package: str = PACKAGE) -> bool:
    """Register the light `overrides` stand-in (see module docstring); True if it was registered.

    Does nothing on Python 3.12+ (LanceDB does not import the package there), or when the package is already
    imported, absent, or not a plain package of files.
    """
    if sys.version_info >= (3, 12) or package in sys.modules:
        return False
    spec = find_package(package, "light overrides")
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return False
    if not hasattr(spec.loader, "exec_module"):
        return False
    register_unexecuted(spec, "light overrides", {"override": override, "EnforceOverrides": EnforceOverrides})
    return True
