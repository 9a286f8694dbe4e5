"""NeuronView: a neuron of the batched executor, seen as a Mesa agent.

The batched executor keeps every neuron's state in tensors; a view reads one neuron's slice
of them on demand.  Views offer what :class:`~ribbed.agents.neuron.NeuronAgent` offers for
analysis (ids, population, u, y, delta, bias, incoming weights, optimizer state, held-out
activation statistics), so code written against ``model.agents`` runs unchanged on either
executor.  Views are read-only: change state through the model's populations and projections.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import mesa
import numpy as np

if TYPE_CHECKING:
    from ribbed.environment.network import PopulationInfo
    from ribbed.scheduler.batched.executor import BatchedExecutor

__all__ = ["ClusterView", "NeuronView"]


class NeuronView(mesa.Agent):
    """One neuron's state inside the batched executor's tensors."""

    agent_kind = "neuron"

    def __init__(self, model: mesa.Model, executor: BatchedExecutor, population: PopulationInfo, index: int):
        super().__init__(model)
        self.unique_id = population.start + index
        self.population = population
        self.index = index
        self._executor = executor

    def _column(self, values) -> np.ndarray | None:
        return None if values is None else values[:, self.index].cpu().numpy().astype(np.float64)

    @property
    def u(self) -> np.ndarray | None:
        """Pre-activation over the last tick's batch."""
        return self._column(self._executor.state_of(self.population, "u"))

    @property
    def y(self) -> np.ndarray | None:
        """Activation over the last tick's batch."""
        return self._column(self._executor.state_of(self.population, "y"))

    @property
    def delta(self) -> np.ndarray | None:
        """Credit of the last tick (None when the population computes none)."""
        return self._column(self._executor.state_of(self.population, "delta"))

    @property
    def bias(self) -> float:
        return self._executor.neuron_bias(self.population, self.index)

    @property
    def in_degree(self) -> int:
        return self._executor.neuron_in_degree(self.population, self.index)

    def incoming_weights(self) -> np.ndarray:
        """All incoming weights, concatenated in projection order."""
        return self._executor.neuron_weights(self.population, self.index)

    @property
    def weight_norm(self) -> float:
        return self._executor.neuron_weight_norm(self.population, self.index)

    def optimizer_state(self) -> dict[str, dict[str, np.ndarray | int]]:
        """This neuron's optimizer state, by projection name (and ``"bias"``), as in
        :meth:`NeuronAgent.optimizer_state`."""
        return self._executor.neuron_optimizer_state(self.population, self.index)

    @property
    def activation_mean(self) -> float:
        return self._executor.activation_stat(0, self.unique_id)

    @property
    def activation_std(self) -> float:
        return self._executor.activation_stat(1, self.unique_id)

    @property
    def alpha(self) -> float:
        """Trust in the guide (guided populations; NaN elsewhere)."""
        return self._executor.neuron_guidance_value(self.population, "alpha", self.index)

    @property
    def guidance(self) -> np.ndarray | None:
        """The guides' prediction of this neuron's credit over the last tick's batch."""
        return self._executor.neuron_guidance_value(self.population, "guidance", self.index)

    @property
    def credit(self) -> np.ndarray | None:
        """What the neuron learned from on the last tick."""
        return self._column(self._executor.state_of(self.population, "credit"))

    def __repr__(self) -> str:
        return f"NeuronView({self.unique_id}, population={self.population.name!r}, index={self.index})"


class ClusterView(mesa.Agent):
    """A guide of the batched executor (one row of its stacked guides), seen as a Mesa agent with
    the ids and reads of a reference :class:`~ribbed.agents.cluster.ClusterAgent`."""

    agent_kind = "cluster"

    def __init__(self, model: mesa.Model, executor: BatchedExecutor, agent_id: int, population: PopulationInfo,
                 index: int):
        super().__init__(model)
        self.unique_id = agent_id
        self.population = population
        self.index = index
        self._executor = executor

    @property
    def members(self) -> list[int]:
        """Ids of the neurons whose path includes this guide."""
        paths = self._executor.populations[self.population.name].guidance.paths
        return [self.population.start + int(i) for i in np.flatnonzero((paths == self.index).any(axis=1))]

    @property
    def alpha(self) -> float:
        """The alpha this guide's meta unit set (NaN if it is not a meta unit)."""
        guidance = self._executor.populations[self.population.name].guidance
        units = guidance.coupling.unit_guides()
        where = np.flatnonzero(units == self.index)
        return float(guidance.unit_alpha[int(where[0])]) if where.size else float("nan")

    def __repr__(self) -> str:
        return f"ClusterView({self.unique_id}, population={self.population.name!r}, guide={self.index})"
