"""The versions of Python and of the packages a run depends on, as its log header and its
``summary.json`` record them (so that a result can be traced to the software that made it)."""

from __future__ import annotations

import platform
from importlib import metadata

__all__ = ["PACKAGES", "package_versions"]

#: The packages whose versions a run records, in this order.
PACKAGES = ("ribbed", "numpy", "torch", "mesa", "networkx", "scikit-learn", "pydantic", "msgpack")


def package_versions() -> dict[str, str]:
    """Python's version and each of :data:`PACKAGES`' (``"not installed"`` where missing)."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
