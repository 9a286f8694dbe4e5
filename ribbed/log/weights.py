"""The weights of a logged run at any tick, as arrays: ``log.weights(tick)``.

A snapshot holds every projection's weights, one per synapse in canonical order (sorted by
post, then pre; docs/log-format.md); which synapse is which comes from the topology record
when the log has one (levels ``activity`` and ``messages``), else from the network the header's
scenario builds (the synapses are a pure function of the scenario and its seed).  At a tick
with a snapshot the weights are decoded from it; at any other tick the model is restored from
the snapshot before it and run forward (:func:`ribbed.log.replay.model_at`), which costs the
ticks in between.

The weights "at tick t" are those after t ticks: the state a snapshot of tick t holds and
``model_at(path, t)`` rebuilds (tick 0: the initial weights).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from ribbed.errors import Problem, RibbedError

if TYPE_CHECKING:
    from ribbed.log.reader import LogReader

__all__ = ["DEFAULT_MAX_DENSE", "Synapses", "synapse_layout", "weights_at"]

#: The most entries (post.size x pre.size, summed over projections) a dense answer may hold:
#: 2**26 float64 values are 512 MiB.  Above it, ``dense=False`` gives one value per synapse.
DEFAULT_MAX_DENSE = 1 << 26


class Synapses(NamedTuple):
    """One projection's weights per synapse: population-local pre and post indices and the
    weights, in canonical order (sorted by post, then pre)."""

    pre: np.ndarray
    post: np.ndarray
    weights: np.ndarray


def synapse_layout(log: LogReader) -> dict[str, tuple[np.ndarray, np.ndarray, int, int]]:
    """Each projection's ``(pre_idx, post_idx, pre.size, post.size)``, by name, in the header's
    order: from the topology record, else from the network of the header's scenario (cached on
    the reader)."""
    if "synapse_layout" in log.cache:
        return log.cache["synapse_layout"]
    sizes = {p["name"]: p["size"] for p in log.header["populations"]}
    projections = log.header["projections"]
    topology = log.topology()
    if topology is not None:
        layout = {p["name"]: (topology.decode(item["pre"]).astype(np.int64), topology.decode(item["post"]).astype(np.int64),
                              sizes[p["pre"]], sizes[p["post"]])
                  for p, item in zip(projections, topology.body["projections"])}
    else:
        from ribbed.environment.network import build_network
        from ribbed.log.header_scenario import scenario_of

        network = build_network(scenario_of(log))
        layout = {p.name: (p.pre_idx.astype(np.int64), p.post_idx.astype(np.int64), p.pre.size, p.post.size)
                  for p in network.projections}
    log.cache["synapse_layout"] = layout
    return layout


def weights_at(log: LogReader, tick: int, *, dense: bool = True,
               max_dense: int = DEFAULT_MAX_DENSE) -> dict[str, np.ndarray] | dict[str, Synapses]:
    """Every projection's weights after ``tick`` ticks, by projection name (see the module
    docstring): dense ``(post.size, pre.size)`` float64 matrices, 0 where there is no synapse,
    or with ``dense=False`` a :class:`Synapses` per projection.  A tick outside the run, or
    dense matrices of more than ``max_dense`` entries, is a RibbedError naming the fix."""
    last = int(log.ticks[-1]) + 1 if len(log.ticks) else 0
    if isinstance(tick, bool) or not isinstance(tick, (int, np.integer)) or not 0 <= tick <= last:
        raise RibbedError(Problem(str(log.path), "tick", f"tick {tick!r} is not in this run (its weights exist for "
                                  f"ticks 0..{last})", f"ask for a tick from 0 to {last}"))
    tick = int(tick)
    layout = synapse_layout(log)
    if dense:
        entries = sum(pre_size * post_size for _, _, pre_size, post_size in layout.values())
        if entries > max_dense:
            raise RibbedError(Problem(str(log.path), "dense", f"the dense weight matrices hold {entries:,} entries, "
                                      f"more than the limit of {max_dense:,} ({entries * 8 / 2**20:,.1f} MiB as "
                                      "float64)", "ask for the synapses' own weights: log.weights(tick, dense=False) "
                                      "gives (pre_idx, post_idx, weights) per projection (or raise max_dense)"))
    snapshot = log.snapshot(tick)
    if snapshot is not None and snapshot.tick == tick:
        values = {name: np.asarray(snapshot.decode(snapshot.body["weights"][name]), dtype=np.float64)
                  for name in layout}
    else:
        from ribbed.log.replay import model_at

        model = model_at(log.path, tick, key=log.key)
        values = {name: np.asarray(model.executor.read("weights", name), dtype=np.float64) for name in layout}
    synapses = {name: Synapses(pre, post, values[name]) for name, (pre, post, _, _) in layout.items()}
    if not dense:
        return synapses
    matrices = {}
    for name, (pre, post, pre_size, post_size) in layout.items():
        matrix = np.zeros((post_size, pre_size), dtype=np.float64)
        matrix[post, pre] = values[name]
        matrices[name] = matrix
    return matrices
