"""Connectivity rules: which synapses a projection has (PyNN's connectors).

Every rule returns two int64 arrays ``(pre, post)`` of population-local indices, sorted by
``(post, pre)`` with no duplicates: the canonical synapse order that every executor, the
weight initializer and the message log agree on.  The rules are vectorized (no Python loop
per neuron), so a fixed-in-degree projection between two populations of a million neurons
is drawn in seconds.
"""

from __future__ import annotations

import inspect

import networkx as nx
import numpy as np

from ribbed.scenarios.schema import (
    AllToAll,
    EdgeList,
    FixedInDegree,
    FixedProbability,
    NetworkxGraph,
    OneToOne,
)
from ribbed.scenarios.graphs import networkx_generator

__all__ = ["connect", "networkx_generator", "ConnectivityError"]

# Largest number of random keys drawn at once by the dense sampling paths.
_CHUNK = 1 << 24


class ConnectivityError(ValueError):
    """A rule that cannot produce synapses for the given populations (caught and located by the caller)."""


def connect(rule, n_pre: int, n_post: int, self_projection: bool,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The synapses of a projection, as canonical ``(pre, post)`` local index arrays."""
    if isinstance(rule, AllToAll):
        pre, post = _all_to_all(n_pre, n_post)
        if self_projection and not rule.allow_self_connections:
            keep = pre != post
            pre, post = pre[keep], post[keep]
    elif isinstance(rule, OneToOne):
        pre = np.arange(n_pre, dtype=np.int64)
        post = pre.copy()
    elif isinstance(rule, FixedProbability):
        pre, post = _fixed_probability(rule.p, n_pre, n_post, self_projection and not rule.allow_self_connections, rng)
    elif isinstance(rule, FixedInDegree):
        pre, post = _fixed_in_degree(rule.k, n_pre, n_post, self_projection and not rule.allow_self_connections, rng)
    elif isinstance(rule, NetworkxGraph):
        pre, post = _from_networkx(rule, n_pre, n_post, self_projection, rng)
    elif isinstance(rule, EdgeList):
        edges = np.asarray(rule.edges, dtype=np.int64).reshape(-1, 2)
        pre, post = edges[:, 0], edges[:, 1]
    else:  # pragma: no cover - the schema admits no other rule
        raise TypeError(f"unknown connectivity rule {rule!r}")
    return canonical(pre, post, n_pre)


def canonical(pre: np.ndarray, post: np.ndarray, n_pre: int) -> tuple[np.ndarray, np.ndarray]:
    """Sort synapses by (post, pre) and drop duplicates (rules that draw in canonical order,
    which the large ones do, skip the sort)."""
    flat = post.astype(np.int64, copy=False) * n_pre + pre.astype(np.int64, copy=False)
    if flat.size > 1 and not np.all(flat[1:] > flat[:-1]):
        flat.sort()
        flat = flat[np.concatenate([[True], flat[1:] != flat[:-1]])]
    return flat % n_pre, flat // n_pre


def _all_to_all(n_pre: int, n_post: int) -> tuple[np.ndarray, np.ndarray]:
    pre = np.tile(np.arange(n_pre, dtype=np.int64), n_post)
    post = np.repeat(np.arange(n_post, dtype=np.int64), n_pre)
    return pre, post


def _skip_self(pre: np.ndarray, post: np.ndarray) -> np.ndarray:
    """Map draws from 0..n-2 onto 0..n-1 without the postsynaptic neuron itself."""
    return pre + (pre >= post)


def _fixed_probability(p: float, n_pre: int, n_post: int, no_self: bool,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Bernoulli(p) for every possible synapse.  Small projections draw one key per possible
    synapse; large ones draw the number of synapses (binomial) and then that many distinct
    positions uniformly, so the cost grows with the synapses made, not with n_pre * n_post."""
    width = n_pre - 1 if no_self else n_pre
    total = width * n_post
    if total <= _CHUNK:
        flat = np.flatnonzero(rng.random(total) < p)
    else:
        count = int(rng.binomial(total, p))
        flat = np.unique(rng.integers(0, total, size=count, dtype=np.int64))
        while flat.size < count:  # the first `count` distinct draws form a uniform subset
            flat = np.union1d(flat, rng.integers(0, total, size=count - flat.size, dtype=np.int64))
    pre, post = flat % width, flat // width
    return (_skip_self(pre, post) if no_self else pre), post


def _fixed_in_degree(k: int, n_pre: int, n_post: int, no_self: bool,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """k distinct presynaptic neurons per postsynaptic neuron, uniformly at random."""
    width = n_pre - 1 if no_self else n_pre
    if k > width:
        raise ConnectivityError(f"k={k} exceeds the {width} available presynaptic neurons")
    if 4 * k >= width:
        # Dense case: the k smallest of random keys, row block by row block.
        rows = max(1, _CHUNK // width)
        blocks = []
        for start in range(0, n_post, rows):
            keys = rng.random((min(rows, n_post - start), width))
            blocks.append(np.argpartition(keys, k - 1, axis=1)[:, :k] if k < width
                          else np.argsort(keys, axis=1))
        chosen = np.concatenate(blocks).astype(np.int64)
    else:
        # Sparse case: draw with replacement, then redraw the duplicates until none are left.
        chosen = rng.integers(0, width, size=(n_post, k), dtype=np.int64)
        while True:
            chosen.sort(axis=1)
            duplicate = np.zeros_like(chosen, dtype=bool)
            duplicate[:, 1:] = chosen[:, 1:] == chosen[:, :-1]
            count = int(duplicate.sum())
            if count == 0:
                break
            chosen[duplicate] = rng.integers(0, width, size=count, dtype=np.int64)
    post = np.repeat(np.arange(n_post, dtype=np.int64), k)
    pre = chosen.reshape(-1)
    return (_skip_self(pre, post) if no_self else pre), post


def _from_networkx(rule: NetworkxGraph, n_pre: int, n_post: int, self_projection: bool,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    generator = networkx_generator(rule.generator)
    params = dict(rule.params)
    accepts_seed = "seed" in inspect.signature(generator).parameters
    if accepts_seed:
        params["seed"] = int(rng.integers(0, 2**31 - 1))
    sizes = (n_pre,) if self_projection else (n_pre, n_post)
    try:
        graph = generator(*sizes, **params)
    except Exception as exc:  # networkx raises many types for bad parameters
        raise ConnectivityError(f"{rule.generator}{sizes} with {rule.params} failed: {exc}") from None
    if not isinstance(graph, nx.Graph):
        raise ConnectivityError(f"{rule.generator} returned a value of type '{type(graph).__name__}', not a graph")
    expected = n_pre if self_projection else n_pre + n_post
    if graph.number_of_nodes() != expected:
        raise ConnectivityError(
            f"{rule.generator} made a graph of {graph.number_of_nodes()} nodes; "
            f"this projection needs {expected} ({'population size' if self_projection else 'n_pre + n_post'})"
        )
    graph = nx.convert_node_labels_to_integers(graph, ordering="sorted")
    edges = np.asarray(list(graph.edges()), dtype=np.int64).reshape(-1, 2)
    a, b = edges[:, 0], edges[:, 1]
    if not graph.is_directed():
        a, b = np.concatenate([a, b]), np.concatenate([b, a])
    if not self_projection:
        keep = (a < n_pre) & (b >= n_pre)
        a, b = a[keep], b[keep] - n_pre
    return a, b
