"""Which networkx generators a scenario may name (``connectivity: {rule: networkx, generator: ...}``).

Kept in the scenarios layer so that validation can refuse an unknown name when a scenario is
loaded, and the environment calls the very function that was checked (environment/connectivity.py).
networkx is imported when a name is looked up, so loading a scenario without a networkx rule does
not import it.
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["networkx_generator"]


def networkx_generator(name: str) -> Callable[..., Any]:
    """The networkx graph generator called ``name`` (``'watts_strogatz_graph'``,
    ``'bipartite.random_graph'``); only functions of networkx's generator modules are allowed.

    Raises ValueError naming the problem when there is no such generator."""
    import networkx as nx

    target: object = nx
    for part in name.split("."):
        if part.startswith("_") or not hasattr(target, part):
            raise ValueError(f"networkx has no graph generator named '{name}'")
        target = getattr(target, part)
    module = getattr(target, "__module__", "") or ""
    if not callable(target) or not (module.startswith("networkx.generators")
                                    or module.startswith("networkx.algorithms.bipartite.generators")):
        raise ValueError(f"'{name}' is not a networkx graph generator")
    return target
