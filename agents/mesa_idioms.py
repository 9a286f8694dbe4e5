"""Mesa's per-agent idioms: those that cannot mean what they say in ribbed are refused with the
ribbed way, and those of analysis read as a Mesa user expects.

A Mesa model usually advances by asking each agent to act (``model.agents.shuffle_do("step")``)
and drops an agent with ``agent.remove()``.  A ribbed network is ticked whole by its executor:
every neuron's sense, forward, backward and learn stages run together, in an order fixed by the
network's levels, vectorized on the batched and Ray executors.  So a neuron has nothing to do on
its own, and one taken out of Mesa's registry would still be simulated.  Mesa's ``Agent`` makes
``step`` a silent no-op, which would let such code run and change nothing; these raise instead,
naming what does the job.

Analysis, on the other hand, reads like Mesa: ``agent.population`` is its population's name (so
``model.agents.groupby("population")`` is keyed by names), a neuron's latest selectivity, mutual
information and preferred class are attributes (:class:`MeasuredNeuron`), as are a cluster's
size and guide R^2 (:class:`MeasuredCluster`); ``agents.select``, ``agg`` and ``groupby`` work on them.
"""

from __future__ import annotations

from ribbed.errors import Problem, RibbedError

__all__ = ["MeasuredCluster", "MeasuredNeuron", "TickedWhole"]


class TickedWhole:
    """For the agents of a network that its executor ticks whole (neurons and clusters)."""

    @property
    def population(self) -> str:
        """The name of the agent's population (``population_info`` describes it)."""
        return self.population_info.name

    def step(self) -> None:
        kind = type(self).__name__
        raise RibbedError(Problem(f"{kind} {getattr(self, 'unique_id', '')}".strip(), "step",
                                  "an agent of a ribbed network does not step on its own: the executor ticks "
                                  "the whole network at once (every neuron's stages, in the network's order)",
                                  "advance the model instead: model.step() runs one tick (and the evaluations "
                                  "the scenario asks for), model.run(ticks) several"))

    def remove(self) -> None:
        kind = type(self).__name__
        raise RibbedError(Problem(f"{kind} {getattr(self, 'unique_id', '')}".strip(), "remove",
                                  "an agent cannot leave a running ribbed network: its executor would go on "
                                  "simulating it",
                                  "silence it instead (set its synapses' weights to zero with "
                                  "model.projections[name].set_weights, or its bias with agent.bias = 0), or "
                                  "build a new model from a scenario without it"))


class MeasuredNeuron:
    """A neuron's specialization at the model's latest evaluation, as attributes (NaN before the
    first evaluation, and for populations that are not analysed: see docs/semantics.md)."""

    @property
    def selectivity(self) -> float:
        return self.model.agent_metric("selectivity", self)

    @property
    def mutual_info(self) -> float:
        return self.model.agent_metric("mutual_info", self)

    @property
    def preferred_class(self) -> float:
        return self.model.agent_metric("preferred_class", self)


class MeasuredCluster:
    """A cluster's values at the model's latest evaluation, as attributes."""

    @property
    def size(self) -> float:
        """Neurons whose meta unit this cluster is (0 for an inner node of a tree)."""
        return self.model.agent_metric("size", self)

    @property
    def guide_r2(self) -> float:
        """R^2 of the guidance on its members' held-out credit (NaN for a cluster with no members)."""
        return self.model.agent_metric("guide_r2", self)
