"""The declared table of named state: every quantity an executor holds and lets others read or
write, by name.

Executors implement ``read(name, where)`` and ``write(name, where, values)`` for each row
(scheduler/base.py); agent views, the model's populations and projections, the specialization
metrics and the log reach an executor's state only through them.  A per-neuron quantity is one
row here and its implementation in each executor: agents and views pick it up by name
(:class:`NeuronState`), and the contract suite (tests/contract/) checks that every executor reads
every row with the declared shape.

``where`` is a projection's name for projection rows, and a population's name for the others.
Values are numpy arrays in float64 (whatever the executor computes in), in the canonical orders of
:mod:`ribbed.environment.network`: synapses sorted by post, then pre; neurons in population order.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

__all__ = ["PER_NEURON", "STATE_TABLE", "NeuronState", "StateField", "state_field"]


class StateField(NamedTuple):
    """One row of the table."""

    name: str
    #: What ``where`` names: "projection" or "population".
    where: str
    #: The shape of a value: "synapse" (n_synapses,), "neuron" (size,), "sample x neuron"
    #: (batch, size), "neuron x output" (size, n_outputs), "guide" (n_guides,),
    #: "neuron x depth" (size, depth), or "mapping" (a dict of arrays and counters).
    shape: str
    #: Whether ``write`` accepts it.
    writable: bool
    #: Where it can be None: "" (never), or the condition under which it is.
    none_when: str
    doc: str


_ROWS = (
    StateField("weights", "projection", "synapse", True, "", "synaptic weights"),
    StateField("feedback", "projection", "synapse", True, "the projection does not use feedback alignment",
               "fixed random feedback weights B of feedback alignment"),
    StateField("optimizer", "projection", "mapping", False, "the projection is frozen",
               "the optimizer state of the projection's synapses: arrays per synapse and step counters"),
    StateField("bias", "population", "neuron", True, "", "biases"),
    StateField("bias_optimizer", "population", "mapping", False, "the population learns no bias",
               "the optimizer state of the biases"),
    StateField("dfa", "population", "neuron x output", True, "the population does not learn by DFA",
               "fixed random projections D of the output error (direct feedback alignment)"),
    StateField("u", "population", "sample x neuron", False, "before the first tick", "pre-activation of the last tick"),
    StateField("y", "population", "sample x neuron", False, "before the first tick", "activation of the last tick"),
    StateField("membrane", "population", "sample x neuron", False,
               "the population is not lif, or before a tick with time in it",
               "the lif membrane U each neuron's last tick left, at its last step (docs/semantics.md, "
               "'Time within a tick'; the next tick starts from 0)"),
    StateField("refractory", "population", "sample x neuron", False,
               "the population does not spike, or before a tick with time in it",
               "the refractory counter (steps still silent) each neuron's last tick left, at its last step"),
    StateField("delta", "population", "sample x neuron", False, "the population computed no credit on the last tick",
               "credit (dL/du) of the last tick"),
    StateField("credit", "population", "sample x neuron", False, "the population learned from nothing",
               "what the neurons learned from on the last tick: delta, or delta blended with guidance"),
    StateField("guidance", "population", "sample x neuron", False, "the population has no guide, or before a tick",
               "the guides' prediction of each neuron's credit on the last tick"),
    StateField("alpha", "population", "neuron", True, "", "trust in the guide (NaN where there is no guide)"),
    StateField("cluster", "population", "neuron", False, "the population has no guide",
               "the meta unit (cluster) each neuron belongs to"),
    StateField("guide_paths", "population", "neuron x depth", False, "the population has no guide",
               "the guides on each neuron's path, root first"),
    StateField("guide_alpha", "population", "guide", False, "the population has no guide",
               "per guide, the alpha its meta unit sets (NaN for guides that are not meta units)"),
    StateField("meta_group", "population", "neuron", False, "the population's meta has no hierarchy",
               "the second-level group of each neuron's meta unit (docs/semantics.md, \"Hierarchical meta units\")"),
    StateField("group_alpha", "population", "guide", False, "the population's meta has no hierarchy",
               "per guide, the alpha its meta unit's group last sent it (NaN for guides that are not meta units)"),
    StateField("hierarchy", "population", "mapping", False, "the population's meta has no hierarchy",
               "the second level of meta units: groups (per unit), n_groups, merges and splits so far, the running "
               "correlations r_c and r_a (unit x unit), unit_group_alpha (per unit)"),
    StateField("lineage", "population", "mapping", False, "the population's guides do not evolve",
               "per neuron, the candidate serving its meta unit (docs/semantics.md, \"Evolving guides\"): kind "
               "(index in evolution.kinds), generation born, fitness, candidate id, parent id"),
    StateField("genomes", "population", "mapping", False, "the population's guides do not evolve",
               "every candidate of every guide, (guide, slot) arrays: kind (index in evolution.kinds), lr, mask, "
               "id, parent id, generation born; and 'generation', the generations run"),
    StateField("in_degree", "population", "neuron", False, "", "incoming synapses per neuron"),
    StateField("weight_norm", "population", "neuron", False, "", "Euclidean norm of each neuron's incoming weights"),
    StateField("activation_mean", "population", "neuron", True, "",
               "mean activation over the last evaluation's held-out samples (NaN before one)"),
    StateField("activation_std", "population", "neuron", True, "",
               "standard deviation of the activation over the last evaluation's held-out samples"),
    StateField("firing_rate", "population", "neuron", True, "",
               "what each neuron emitted per sample and step over the last evaluation, on average: for the "
               "rate policy (every neuron today) its activation y; spikes per step for spiking policies "
               "(NaN before an evaluation)"),
)

#: The table, by name.
STATE_TABLE: dict[str, StateField] = {row.name: row for row in _ROWS}
#: The rows with one value per neuron: agents and views offer each as an attribute.
PER_NEURON: frozenset[str] = frozenset(row.name for row in _ROWS if row.where == "population" and row.shape == "neuron")


def state_field(name: str) -> StateField:
    """The row called ``name``, or a KeyError that lists the names there are."""
    try:
        return STATE_TABLE[name]
    except KeyError:
        raise KeyError(f"no state called {name!r}; the table has: {', '.join(STATE_TABLE)}") from None


class NeuronState:
    """Gives a Mesa agent that stands for one neuron every per-neuron row of the table as an
    attribute read through its executor (``self.executor``, ``self.population_info``, ``self.index``),
    unless the agent has an attribute of that name itself (the reference executor's agents hold
    some of their state as plain attributes).  Reads are memoized per executor state version, so
    analysis code that walks every agent reads each array once."""

    def __getattr__(self, name: str) -> Any:
        if name in PER_NEURON:
            executor = self.__dict__.get("executor")
            if executor is not None:
                return _as_scalar(executor.read_cached(name, self.population_info.name)[self.index])
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


def _as_scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
