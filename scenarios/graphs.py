"""Which networkx generators a scenario may name (``connectivity: {rule: networkx, generator: ...}``),
how they are called, and how big a graph they make.

Kept in the scenarios layer so that validation can refuse an unknown name, a call that cannot
bind (a parameter given twice, one the generator does not have) and a graph of the wrong number
of nodes when a scenario is loaded, and estimate its synapses from the arguments alone, without
running the generator: networkx builds a graph in Python objects (about 500 bytes an edge), so a
``complete_graph`` on 200,000 neurons must be refused from its formula, not discovered by building
it.  The environment calls the very function that was checked (environment/connectivity.py).
networkx is imported when a name is looked up, so loading a scenario without a networkx rule does
not import it.

The call convention (docs/semantics.md): for a projection of a population onto itself the
generator is called as ``generator(n, **params)``; between two populations as
``generator(n_pre, n_post, **params)``, which only a bipartite generator (two node counts) can
take.  In both, ``seed`` is supplied when the generator has one.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Mapping, NamedTuple

__all__ = ["BIPARTITE", "GeneratorCallError", "GraphShape", "bound_arguments", "graph_shape", "known_generators",
           "networkx_generator"]

#: Generators that take two node counts (the presynaptic and the postsynaptic side).
BIPARTITE = ("bipartite.random_graph", "bipartite.gnmk_random_graph", "bipartite.complete_bipartite_graph",
             "complete_bipartite_graph")
#: What the fix of a call between two populations suggests.
_BIPARTITE_FIX = ("between two populations use a bipartite generator (bipartite.random_graph with params {p: ...}, "
                  "bipartite.gnmk_random_graph with params {k: ...}, or complete_bipartite_graph), "
                  "or project a population onto itself")


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


class GeneratorCallError(ValueError):
    """A generator that cannot be called with a projection's sizes and params; ``key`` is the
    connectivity field to change (``generator`` or ``params``), ``fix`` says how."""

    def __init__(self, message: str, key: str, fix: str):
        super().__init__(message)
        self.key, self.fix = key, fix


def bound_arguments(name: str, sizes: tuple[int, ...], params: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments ``generator(*sizes, **params)`` would get (defaults filled in, ``seed``
    left to its default), without calling it.  Raises :class:`GeneratorCallError` when the call
    cannot bind: a parameter the generator does not have, more sizes than it takes, a parameter
    given twice (by a size and by params), or one it needs and nothing gives."""
    generator = networkx_generator(name)
    try:
        signature = inspect.signature(generator)
    except (TypeError, ValueError):  # no signature to read (a compiled function): checked when it runs
        return {**dict(zip(("n", "m"), sizes)), **params}
    parameters = signature.parameters
    positional = [p.name for p in parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    takes_many = any(p.kind == p.VAR_POSITIONAL for p in parameters.values())
    keywords = {p.name for p in parameters.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    between = len(sizes) == 2
    call = _call_text(name, sizes)
    fix_sizes = _BIPARTITE_FIX if between else ("use a generator whose first argument is the number of nodes "
                                                "(watts_strogatz_graph, erdos_renyi_graph, barabasi_albert_graph...)")
    by_size = {} if takes_many else dict(zip(positional, sizes))
    for key in params:  # networkx's **backend_kwargs would take any name: only its own parameters count
        if key not in keywords:
            usable = sorted(keywords - {"seed", "backend", "create_using"} - set(by_size))
            raise GeneratorCallError(f"{name} has no parameter '{key}'", "params", f"remove '{key}' from params"
                                     + (f"; its parameters are: {', '.join(usable)}" if usable else ""))
    if not takes_many and len(sizes) > len(positional):
        raise GeneratorCallError(f"{call}: {name} takes {len(positional)} size{'s' if len(positional) != 1 else ''}, "
                                 f"not {len(sizes)}", "generator", fix_sizes)
    for key in params:
        if key in by_size:
            position = positional.index(key)
            size_is_count = not between and position == 0 and key == "n"  # the generator's n is the size: drop it
            raise GeneratorCallError(
                f"{call}: {name}'s argument '{key}' gets {('n_pre', 'n_post')[position] if between else 'n'}"
                f" = {by_size[key]} from the call, and params sets it again", "params",
                f"remove '{key}' from params (it is the population size)" if size_is_count else fix_sizes)
    missing = [key for key, p in parameters.items() if p.default is inspect.Parameter.empty and key != "seed"
               and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and key not in by_size and key not in params]
    if missing:
        raise GeneratorCallError(f"{call}: {name} needs {', '.join(repr(m) for m in missing)}, which params does not "
                                 "give", "params", "add " + ", ".join(f"'{m}: ...'" for m in missing) + " to params")
    bound = signature.bind(*sizes, **{k: v for k, v in params.items() if k != "seed"})
    bound.apply_defaults()
    return dict(bound.arguments)


def _call_text(name: str, sizes: tuple[int, ...]) -> str:
    if len(sizes) == 2:
        return (f"between two populations the generator is called as {name}(n_pre={sizes[0]}, n_post={sizes[1]}, "
                "**params)")
    return f"{name} is called as {name}(n={sizes[0]}, **params)"


# --------------------------------------------------------------------------- graph sizes


class GraphShape(NamedTuple):
    """What a generator call makes, from its arguments alone.

    ``nodes``: the graph's node count (None when ribbed has no formula); ``edges``: the edges
    networkx holds while building it (what its memory grows with); ``synapses``: the synapses
    they become; ``exact``: whether ``synapses`` is the count the build will make (otherwise an
    expectation, or for an unknown generator a bound)."""

    nodes: int | None
    edges: int
    synapses: int
    exact: bool
    known: bool = True


class _Unknown(Exception):
    """An argument whose value the formula cannot use (a string, a fraction where a count goes)."""


def _count(args: Mapping[str, Any], key: str) -> int:
    value = args.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 0:
        raise _Unknown(key)
    return int(value)


def _fraction(args: Mapping[str, Any], key: str) -> float:
    value = args.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _Unknown(key)
    return min(1.0, max(0.0, float(value)))


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def _undirected(nodes: int, edges: int, exact: bool = True) -> GraphShape:
    """A graph without self-loops whose undirected edges each become two synapses."""
    return GraphShape(nodes, edges, 2 * edges, exact)


def _directed(nodes: int, edges: int, exact: bool = True) -> GraphShape:
    return GraphShape(nodes, edges, edges, exact)


def _gnp(a: Mapping[str, Any]) -> GraphShape:
    n, p = _count(a, "n"), _fraction(a, "p")
    expected = round(p * n * (n - 1))  # ordered pairs: the synapses, directed or not
    return GraphShape(n, expected if a.get("directed") else expected // 2, expected, p in (0.0, 1.0))


def _gnm(a: Mapping[str, Any]) -> GraphShape:
    n, m = _count(a, "n"), _count(a, "m")
    if a.get("directed"):
        return _directed(n, min(m, n * (n - 1)))
    return _undirected(n, min(m, _pairs(n)))


def _watts_strogatz(a: Mapping[str, Any]) -> GraphShape:
    n, k = _count(a, "n"), _count(a, "k")
    if k >= n:  # k == n: networkx's complete graph (k > n fails when it runs)
        return _undirected(n, _pairs(n), k == n)
    return _undirected(n, n * (k // 2))  # rewiring moves edges, never adds or drops one


def _newman_watts_strogatz(a: Mapping[str, Any]) -> GraphShape:
    n, k, p = _count(a, "n"), _count(a, "k"), _fraction(a, "p")
    ring = n * (k // 2) if k < n else _pairs(n)
    return _undirected(n, min(_pairs(n), round(ring * (1 + p))), p == 0.0 or k >= n)


def _barabasi_albert(a: Mapping[str, Any]) -> GraphShape:
    n, m = _count(a, "n"), _count(a, "m")
    return _undirected(n, m * max(0, n - m))  # a star on m + 1 nodes, then m edges per new node


def _dual_barabasi_albert(a: Mapping[str, Any]) -> GraphShape:
    n, m = _count(a, "n"), max(_count(a, "m1"), _count(a, "m2"))
    return _undirected(n, m * max(0, n - m), False)


def _powerlaw_cluster(a: Mapping[str, Any]) -> GraphShape:
    n, m = _count(a, "n"), _count(a, "m")
    return _undirected(n, m * max(0, n - m), False)


def _geometric(a: Mapping[str, Any]) -> GraphShape:
    """Points uniform in the unit cube, joined within ``radius``: the share of pairs joined is at
    most the ball's volume (p=2) or the cube's of side 2r (other norms), edge effects aside."""
    n, r, dim = _count(a, "n"), float(_count_or_float(a, "radius")), _count(a, "dim")
    if dim == 0:
        raise _Unknown("dim")
    if a.get("p", 2) == 2:
        share = math.pi ** (dim / 2) / math.gamma(dim / 2 + 1) * r ** dim if r < 10 else 1.0
    else:
        share = (2 * r) ** dim if r < 10 else 1.0
    return _undirected(n, round(min(1.0, share) * _pairs(n)), False)


def _count_or_float(a: Mapping[str, Any], key: str) -> float:
    value = a.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise _Unknown(key)
    return float(value)


def _random_regular(a: Mapping[str, Any]) -> GraphShape:
    n, d = _count(a, "n"), _count(a, "d")
    return _undirected(n, n * d // 2)


def _power_of_two(exponent: int) -> int:
    """2**exponent, capped where it could not be a population's size anyway (2**63)."""
    return 2 ** min(exponent, 63)


def _self_formulas() -> dict[str, Callable[[Mapping[str, Any]], GraphShape]]:
    """Graph sizes of the generators ribbed knows, called for a population onto itself."""
    return {
        "complete_graph": lambda a: _undirected(_count(a, "n"), _pairs(_count(a, "n"))),
        "empty_graph": lambda a: _undirected(_count(a, "n"), 0),
        "path_graph": lambda a: _undirected(_count(a, "n"), max(0, _count(a, "n") - 1)),
        "cycle_graph": lambda a: _undirected(_count(a, "n"), _count(a, "n") if _count(a, "n") > 2 else 1, False),
        "star_graph": lambda a: _undirected(_count(a, "n") + 1, _count(a, "n")),
        "wheel_graph": lambda a: _undirected(_count(a, "n"), 2 * max(0, _count(a, "n") - 1), False),
        "ladder_graph": lambda a: _undirected(2 * _count(a, "n"), max(0, 3 * _count(a, "n") - 2)),
        "circular_ladder_graph": lambda a: _undirected(2 * _count(a, "n"), 3 * _count(a, "n"), False),
        "hypercube_graph": lambda a: _undirected(_power_of_two(_count(a, "n")), 0, False),
        "binomial_tree": lambda a: _undirected(_power_of_two(_count(a, "n")), 0, False),
        "erdos_renyi_graph": _gnp, "gnp_random_graph": _gnp, "binomial_graph": _gnp, "fast_gnp_random_graph": _gnp,
        "gnm_random_graph": _gnm, "dense_gnm_random_graph": _gnm,
        "watts_strogatz_graph": _watts_strogatz, "connected_watts_strogatz_graph": _watts_strogatz,
        "newman_watts_strogatz_graph": _newman_watts_strogatz,
        "barabasi_albert_graph": _barabasi_albert, "dual_barabasi_albert_graph": _dual_barabasi_albert,
        "powerlaw_cluster_graph": _powerlaw_cluster,
        "random_regular_graph": _random_regular,
        "random_k_out_graph": lambda a: _directed(_count(a, "n"), _count(a, "n") * _count(a, "k"), False),
        "gn_graph": lambda a: _directed(_count(a, "n"), max(0, _count(a, "n") - 1)),
        "gnr_graph": lambda a: _directed(_count(a, "n"), max(0, _count(a, "n") - 1)),
        "random_geometric_graph": _geometric, "soft_random_geometric_graph": _geometric,
        "navigable_small_world_graph": lambda a: _directed(
            _count(a, "n") ** min(_count(a, "dim"), 8), _count(a, "n") ** min(_count(a, "dim"), 8)
            * (2 * _count(a, "dim") * _count(a, "p") + _count(a, "q")), False),
    }


def _bipartite_formulas() -> dict[str, Callable[[Mapping[str, Any]], tuple[int, int, int, bool]]]:
    """Bipartite generators: (top nodes, bottom nodes, edges between them, exact)."""
    def random(a: Mapping[str, Any]) -> tuple[int, int, int, bool]:
        n, m, p = _count(a, "n"), _count(a, "m"), _fraction(a, "p")
        return n, m, round(p * n * m), p in (0.0, 1.0)

    def gnmk(a: Mapping[str, Any]) -> tuple[int, int, int, bool]:
        n, m, k = _count(a, "n"), _count(a, "m"), _count(a, "k")
        return n, m, min(k, n * m), not a.get("directed")

    def complete(a: Mapping[str, Any]) -> tuple[int, int, int, bool]:
        n1, n2 = _count(a, "n1"), _count(a, "n2")
        return n1, n2, n1 * n2, True

    return {"bipartite.random_graph": random, "bipartite.gnmk_random_graph": gnmk,
            "bipartite.complete_bipartite_graph": complete, "complete_bipartite_graph": complete}


_SELF = _self_formulas()
_BIPARTITE_SIZES = _bipartite_formulas()


def graph_shape(name: str, sizes: tuple[int, ...], args: Mapping[str, Any]) -> GraphShape:
    """The size of the graph ``name`` makes from the bound ``args`` (:func:`bound_arguments`) of a
    call with ``sizes`` (``(n,)`` onto itself, ``(n_pre, n_post)`` between two populations).

    Where ribbed has no formula, the graph is bounded by all N² ordered pairs of its
    N = sum(sizes) nodes (``known`` is False): the build itself checks the node count."""
    between = len(sizes) == 2
    try:
        if between and name in _BIPARTITE_SIZES:
            top, bottom, edges, exact = _BIPARTITE_SIZES[name](args)
            return GraphShape(top + bottom, edges, edges, exact)  # each crossing edge: one synapse, pre to post
        if not between and name in _BIPARTITE_SIZES:
            top, bottom, edges, _ = _BIPARTITE_SIZES[name](args)
            return GraphShape(top + bottom, edges, 2 * edges, False)
        if name in _SELF:
            shape = _SELF[name](args)
            if between:  # a one-sided generator between two populations: its edges cross nothing
                return GraphShape(shape.nodes, shape.edges, 0, False)
            return shape
    except (_Unknown, OverflowError, ValueError, ZeroDivisionError):
        pass
    total = sum(sizes)
    synapses = sizes[0] * sizes[1] if between else total * total
    return GraphShape(None, total * total, synapses, False, known=False)


def known_generators() -> list[str]:
    """The generators whose graph size ribbed computes from their arguments."""
    return sorted(set(_SELF) | set(_BIPARTITE_SIZES))
