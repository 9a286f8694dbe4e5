"""Executors by name: each executor's sub-package registers itself here, and a scenario's
``backend.kind`` is looked up.

Registration names the class by its import path, so that listing the executors imports none of
them (the batched executor imports torch; the Ray executor, Ray).  A new executor is a new folder
under scheduler/ whose ``__init__.py`` calls :func:`register` once.
"""

from __future__ import annotations

import pkgutil
from importlib import import_module
from pathlib import Path

__all__ = ["executor_class", "register", "registered"]

_EXECUTORS: dict[str, str] = {}


def register(name: str, target: str) -> None:
    """Make the executor class at ``target`` ("package.module:Class") available as ``name``."""
    if _EXECUTORS.get(name, target) != target:
        raise ValueError(f"an executor called {name!r} is already registered ({_EXECUTORS[name]})")
    _EXECUTORS[name] = target


def registered() -> dict[str, str]:
    """Every registered executor, by name (the sub-packages of scheduler/ are imported once, so
    that each registers itself)."""
    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if module.ispkg:
            import_module(f"{__package__}.{module.name}")
    return dict(_EXECUTORS)


def executor_class(name: str) -> type:
    """The class registered as ``name``."""
    executors = registered()
    if name not in executors:
        raise KeyError(f"no executor called {name!r}; registered: {', '.join(sorted(executors))}")
    module, _, cls = executors[name].partition(":")
    return getattr(import_module(module), cls)
