"""Meta-controllers: how much each neuron trusts its guide (Meta-BP).

The credit a guided neuron learns from is ``(1 - alpha) * propagated + alpha * guidance``; a
meta-controller sets alpha for each *unit* (a neuron under direct coupling, a cluster
otherwise) in the ``meta`` stage, from what its members' guidance (the sum along their paths)
got right and wrong when the true credit last arrived.  The alpha of tick t's ``learn`` stage
is the one set in tick t-1's ``meta`` stage.

The update is written once, in array arithmetic that numpy arrays and torch tensors both
support (``xp`` is the module, numpy or torch), so the reference executor (one unit per
ClusterAgent) and the batched executor (all units at once) run the same formulas.

Each update receives, per unit, the means over its members and the batch of this tick's
feedback rows (``error`` = (g - d)^2, ``square`` = d^2, ``cross`` = g d, ``guide_square`` = g^2,
with g the guidance and d the true credit), ``received`` (1 where feedback arrived, 0
elsewhere, where the means are meaningless), and the tick's training ``loss``.
"""

from __future__ import annotations

import math

__all__ = ["ConfidenceController", "FixedController", "LearnedController", "MetaController", "make_controller"]


class MetaController:
    """Holds no per-unit state itself; the executors keep the state arrays this names."""

    kind = "meta"
    #: Whether the unit needs the tick's loss (the task sends it, kind ``reward``).
    needs_loss = False

    def initial_alpha(self) -> float:
        raise NotImplementedError

    def initial_state(self) -> dict[str, float]:
        """Per-unit state, by name, with its initial value."""
        return {}

    def update(self, state: dict, stats: dict, received, loss, xp):
        """New alpha of each unit, updating ``state`` in place (see the module docstring)."""
        raise NotImplementedError


class FixedController(MetaController):
    """alpha is a constant."""

    kind = "fixed"

    def __init__(self, spec):
        self.alpha = spec.alpha

    def initial_alpha(self) -> float:
        return self.alpha

    def update(self, state, stats, received, loss, xp):
        return received * 0.0 + self.alpha


def _running_fit(state: dict, stats: dict, received, decay: float):
    """Update the running means e (error) and v (square) where feedback arrived; return the
    guide's running R^2 against a predictor of zero, 1 - e/v (0 while v = 0)."""
    rate = received * decay
    state["error"] = state["error"] + rate * (stats["error"] - state["error"])
    state["square"] = state["square"] + rate * (stats["square"] - state["square"])
    v = state["square"]
    return (1.0 - state["error"] / (v + (v <= 0))) * (v > 0)


class ConfidenceController(MetaController):
    """alpha = alpha_max * clip(1 - e / v, 0, 1): e the running mean squared error of the guidance
    against the true credit, v the credit's running mean square (exponential averages at rate
    ``decay``, updated only when true credit arrives).  Trust grows as the guidance explains
    the credit, and guidance no better than silence gets none."""

    kind = "confidence"

    def __init__(self, spec):
        self.decay = spec.decay
        self.alpha_max = spec.alpha_max

    def initial_alpha(self) -> float:
        return 0.0

    def initial_state(self) -> dict[str, float]:
        return {"error": 0.0, "square": 0.0}

    def update(self, state, stats, received, loss, xp):
        # Guidance that was exactly 0 on every row (an untrained guide) is silence, and gets no
        # trust: there (g - d)^2 = d^2 row by row, so the error's mean is the square's, and taking
        # it from there makes 1 - e/v exactly 0 on every executor, whatever order each sums its
        # rows in.  (One rounding apart, alpha would be 0 on one executor and 1e-16 on another,
        # and chiral modulation tells a credit of 1e-16 * guidance from 0 by its sign.)
        if "guide_square" in stats:  # always, from an executor
            said = stats["guide_square"] > 0
            stats = {**stats, "error": stats["error"] * said + stats["square"] * (stats["guide_square"] <= 0)}
        explained = _running_fit(state, stats, received, self.decay)
        return self.alpha_max * explained.clip(0.0, 1.0)


class LearnedController(MetaController):
    """A logistic model per unit: alpha = sigmoid(w_r r + w_s s + w_0) of the learning context

    * r = clip(1 - e/v, -1, 1), the guidance's running R^2 (as in the confidence controller);
    * s = tanh(m / a), the loss trend: m and a running means of the tick-to-tick change of the
      training loss and of its size (-1: falling steadily, +1: rising).

    At each credit delivery it takes one step of online logistic regression towards the soft
    target alpha*, the alpha that brings the credit a neuron uses closest (in mean square) to the
    true credit d over the schedule's mix of ticks: with p = 1/backward_every of them
    delivering d (credit (1 - alpha) d + alpha g, error alpha^2 (g - d)^2) and the others not
    (credit alpha g), alpha* = clip((1 - p) <g d> / (p <(g - d)^2> + (1 - p) <g^2>), 0, 1);
    w <- w - lr (alpha - alpha*) (r, s, 1), with alpha from the context before the step.  With
    the error on every tick, alpha* is 0: no guidance beats the true credit.  w starts at (0, 0,
    logit(alpha_init)).  (Ticks since the last delivery are not a feature: alpha* is observed
    only at deliveries, where that count is always 0.)
    """

    kind = "learned"
    needs_loss = True

    def __init__(self, spec, backward_every: int = 1):
        self.lr, self.decay = spec.lr, spec.decay
        self.alpha_init = spec.alpha_init
        self.delivered = 1.0 / backward_every  # the share of ticks with propagated error

    def initial_alpha(self) -> float:
        return self.alpha_init

    def initial_state(self) -> dict[str, float]:
        return {"error": 0.0, "square": 0.0, "previous_loss": math.nan, "trend": 0.0, "change": 0.0,
                "w_r": 0.0, "w_s": 0.0, "w_0": math.log(self.alpha_init / (1.0 - self.alpha_init))}

    def update(self, state, stats, received, loss, xp):
        r = _running_fit(state, stats, received, self.decay).clip(-1.0, 1.0)
        previous = state["previous_loss"]
        seen = previous == previous  # false at the first tick, when previous is NaN
        delta = xp.where(seen, loss - previous, seen * 0.0)
        state["previous_loss"] = delta * 0.0 + loss
        state["trend"] = state["trend"] + self.decay * (delta - state["trend"])
        state["change"] = state["change"] + self.decay * (abs(delta) - state["change"])
        change = state["change"]
        s = xp.tanh(state["trend"] / (change + (change <= 0))) * (change > 0)

        def alpha():
            return 1.0 / (1.0 + xp.exp(-(state["w_r"] * r + state["w_s"] * s + state["w_0"])))

        p, q = self.delivered, 1.0 - self.delivered
        denominator = p * stats["error"] + q * stats["guide_square"]
        learns = received * (denominator > 0)
        target = (q * stats["cross"] / (denominator + (denominator <= 0))).clip(0.0, 1.0)
        step = self.lr * learns * (alpha() - target)
        state["w_r"] = state["w_r"] - step * r
        state["w_s"] = state["w_s"] - step * s
        state["w_0"] = state["w_0"] - step
        return alpha()


def make_controller(spec, backward_every: int = 1) -> MetaController:
    """The controller a population's meta spec describes (``backward_every``: the schedule's)."""
    if spec.kind == "learned":
        return LearnedController(spec, backward_every)
    return {"fixed": FixedController, "confidence": ConfidenceController}[spec.kind](spec)
