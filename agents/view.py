"""NeuronView and ClusterView: a neuron or a guide of an executor that keeps its state in arrays
(the batched and Ray executors), seen as a Mesa agent.

A view reads and writes its neuron's slice of the executor's state through the executor
contract (``read`` / ``write`` over :data:`~ribbed.agents.state.STATE_TABLE`), so it offers
what :class:`~ribbed.agents.neuron.NeuronAgent` offers (ids, population, u, y, delta, bias,
alpha, incoming weights, optimizer state, every per-neuron row of the table), and an
intervention such as ``view.bias = 0.5`` reaches the next tick exactly as setting a reference
agent's bias does.  Code written against ``model.agents`` runs unchanged on every executor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import mesa
import numpy as np

from ribbed.agents.mesa_idioms import MeasuredCluster, MeasuredNeuron, TickedWhole
from ribbed.agents.state import NeuronState

if TYPE_CHECKING:
    from ribbed.environment.network import Network, PopulationInfo

__all__ = ["ClusterView", "NeuronView", "make_views"]


class NeuronView(TickedWhole, MeasuredNeuron, NeuronState, mesa.Agent):
    """One neuron's slice of an executor's state."""

    agent_kind = "neuron"

    def __init__(self, model: mesa.Model, executor: Any, population: PopulationInfo, index: int,
                 incoming: list[tuple[str, int, int]]):
        """``incoming``: per projection into the population, its name and the bounds of this
        neuron's synapses in the projection's canonical order."""
        super().__init__(model)
        self.unique_id = population.start + index
        self.population_info = population
        self.index = index
        self.executor = executor
        self.incoming_bounds = incoming

    def _column(self, name: str) -> np.ndarray | None:
        values = self.executor.read_cached(name, self.population_info.name)
        return None if values is None else values[:, self.index].copy()

    def _set(self, name: str, value: float) -> None:
        values = np.array(self.executor.read(name, self.population_info.name), dtype=np.float64)
        values[self.index] = value
        self.executor.write(name, self.population_info.name, values)

    @property
    def u(self) -> np.ndarray | None:
        """Pre-activation over the last tick's batch."""
        return self._column("u")

    @property
    def y(self) -> np.ndarray | None:
        """Activation over the last tick's batch."""
        return self._column("y")

    @property
    def delta(self) -> np.ndarray | None:
        """Credit of the last tick (None when the population computes none)."""
        return self._column("delta")

    @property
    def credit(self) -> np.ndarray | None:
        """What the neuron learned from on the last tick."""
        return self._column("credit")

    @property
    def guidance(self) -> np.ndarray | None:
        """The guides' prediction of this neuron's credit over the last tick's batch."""
        return self._column("guidance")

    @property
    def bias(self) -> float:
        return float(self.executor.read_cached("bias", self.population_info.name)[self.index])

    @bias.setter
    def bias(self, value: float) -> None:
        self._set("bias", value)

    @property
    def alpha(self) -> float:
        """Trust in the guide (guided populations; NaN elsewhere); set it to override the meta
        controller until its next meta stage."""
        return float(self.executor.read_cached("alpha", self.population_info.name)[self.index])

    @alpha.setter
    def alpha(self, value: float) -> None:
        self._set("alpha", value)

    def incoming_weights(self) -> np.ndarray:
        """All incoming weights, concatenated in projection order."""
        parts = [self.executor.read_cached("weights", name)[lo:hi] for name, lo, hi in self.incoming_bounds]
        return np.concatenate(parts) if parts else np.zeros(0)

    def optimizer_state(self) -> dict[str, dict[str, np.ndarray | int]]:
        """This neuron's optimizer state, by projection name (and ``"bias"``), as in
        :meth:`NeuronAgent.optimizer_state`."""
        result = {}
        for name, lo, hi in self.incoming_bounds:
            state = self.executor.read_cached("optimizer", name)
            if state is not None:
                result[name] = {key: value if isinstance(value, int) else value[lo:hi] for key, value in state.items()}
        bias = self.executor.read_cached("bias_optimizer", self.population_info.name)
        if bias is not None:
            result["bias"] = {key: value if isinstance(value, int) else float(value[self.index])
                              for key, value in bias.items()}
        return result

    def __repr__(self) -> str:
        return f"NeuronView({self.unique_id}, population={self.population_info.name!r}, index={self.index})"


class ClusterView(TickedWhole, MeasuredCluster, mesa.Agent):
    """A guide of an executor that stacks its guides (one row of them), seen as a Mesa agent with
    the ids and reads of a reference :class:`~ribbed.agents.cluster.ClusterAgent`."""

    agent_kind = "cluster"

    def __init__(self, model: mesa.Model, executor: Any, agent_id: int, population: PopulationInfo, index: int):
        super().__init__(model)
        self.unique_id = agent_id
        self.population_info = population
        self.index = index
        self.executor = executor

    @property
    def members(self) -> list[int]:
        """Ids of the neurons whose path includes this guide."""
        paths = self.executor.read_cached("guide_paths", self.population_info.name)
        return [self.population_info.start + int(i) for i in np.flatnonzero((paths == self.index).any(axis=1))]

    @property
    def alpha(self) -> float:
        """The alpha this guide's meta unit set (NaN if it is not a meta unit)."""
        return float(self.executor.read_cached("guide_alpha", self.population_info.name)[self.index])

    def __repr__(self) -> str:
        return f"ClusterView({self.unique_id}, population={self.population_info.name!r}, guide={self.index})"


def make_views(model: mesa.Model, executor: Any, network: Network) -> tuple[list[NeuronView], list[ClusterView]]:
    """One view per neuron and per guide (ids after the neurons'), joining the Mesa ``model`` and
    reading ``executor``."""
    bounds: dict[str, list[tuple[str, np.ndarray]]] = {name: [] for name in network.populations}
    for projection in network.projections:
        edges = np.searchsorted(projection.post_idx, np.arange(projection.post.size + 1))
        bounds[projection.post.name].append((projection.name, edges))
    neurons = [NeuronView(model, executor, population, i,
                          [(name, int(edges[i]), int(edges[i + 1])) for name, edges in bounds[population.name]])
               for population in network.populations.values() for i in range(population.size)]
    clusters: list[ClusterView] = []
    for guided in network.guided.values():
        clusters += [ClusterView(model, executor, network.n_neurons + len(clusters) + g, guided.population, g)
                     for g in range(guided.coupling.n_guides)]
    return neurons, clusters
