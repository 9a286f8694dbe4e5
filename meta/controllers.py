"""Meta-controllers: how much each neuron trusts its guide (Meta-BP).

The credit a guided neuron learns from is ``(1 - alpha) * propagated + alpha * guide``; a
meta-controller sets alpha for each *unit* (a neuron under direct coupling, a cluster
otherwise) in the ``meta`` stage, from what the unit's guide got right and wrong when the true
credit last arrived.  The alpha of tick t's ``learn`` stage is the one set in tick t-1's ``meta``
stage.

The update is written once, in array arithmetic that numpy arrays and torch tensors both
support, so the reference executor (one unit per ClusterAgent) and the batched executor (all
units at once) run the same formulas.
"""

from __future__ import annotations

__all__ = ["ConfidenceController", "FixedController", "MetaController", "make_controller"]


class MetaController:
    """Holds no per-unit state itself; the executors keep the state arrays this names."""

    kind = "meta"
    #: Per-unit state arrays, and their initial values.
    state_names: tuple[str, ...] = ()

    def initial_alpha(self) -> float:
        raise NotImplementedError

    def initial_state(self) -> dict[str, float]:
        return {name: 0.0 for name in self.state_names}

    def update(self, state: dict, error: object, square: object, received: object) -> object:
        """New alpha of each unit, updating ``state`` in place.

        ``error`` and ``square`` are the unit's mean of (guide - credit)^2 and of credit^2 over its
        members and the batch on this tick; ``received`` is 1 where the unit received true credit
        this tick and 0 elsewhere (where the two means are meaningless and ignored).
        """
        raise NotImplementedError


class FixedController(MetaController):
    """alpha is a constant."""

    kind = "fixed"

    def __init__(self, spec):
        self.alpha = spec.alpha

    def initial_alpha(self) -> float:
        return self.alpha

    def update(self, state, error, square, received):
        return received * 0.0 + self.alpha


class ConfidenceController(MetaController):
    """alpha = alpha_max * clip(1 - e / v, 0, 1): e the running mean squared error of the guide
    against the true credit, v the credit's running mean square (both exponential averages at
    rate ``decay``, updated only when true credit arrives).  1 - e/v is the guide's running R^2
    against a predictor of zero: trust grows as the guide explains the credit, and a guide no
    better than silence gets none."""

    kind = "confidence"
    state_names = ("error", "square")

    def __init__(self, spec):
        self.decay = spec.decay
        self.alpha_max = spec.alpha_max

    def initial_alpha(self) -> float:
        return 0.0

    def update(self, state, error, square, received):
        rate = received * self.decay
        state["error"] = state["error"] + rate * (error - state["error"])
        state["square"] = state["square"] + rate * (square - state["square"])
        v = state["square"]
        positive = v > 0
        explained = 1.0 - state["error"] / (v + (~positive) * 1.0)
        return self.alpha_max * explained.clip(0.0, 1.0) * positive


def make_controller(spec) -> MetaController:
    """The controller a population's meta spec describes."""
    return {"fixed": FixedController, "confidence": ConfidenceController}[spec.kind](spec)
