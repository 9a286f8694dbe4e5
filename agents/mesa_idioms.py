"""Mesa's per-agent idioms that cannot mean what they say in ribbed, refused with the ribbed way.

A Mesa model usually advances by asking each agent to act (``model.agents.shuffle_do("step")``)
and drops an agent with ``agent.remove()``.  A ribbed network is ticked whole by its executor:
every neuron's sense, forward, backward and learn stages run together, in an order fixed by the
network's levels, vectorized on the batched and Ray executors.  So a neuron has nothing to do on
its own, and one taken out of Mesa's registry would still be simulated.  Mesa's ``Agent`` makes
``step`` a silent no-op, which would let such code run and change nothing; these raise instead,
naming what does the job.
"""

from __future__ import annotations

from ribbed.errors import Problem, RibbedError

__all__ = ["TickedWhole"]


class TickedWhole:
    """For the agents of a network that its executor ticks whole (neurons and clusters)."""

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
