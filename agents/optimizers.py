"""Optimizers: each keeps its state for one parameter array and turns a gradient into the step
to add to it.  The formulas follow torch.optim (SGD, SGD with momentum, Adam).

Every operation is elementwise, so one class serves both executors: the reference executor
gives each neuron its own optimizer per incoming projection (numpy arrays of the neuron's
weights, or a 0-d array for its bias), the tensor executors one per projection (a tensor that
stacks every neuron's weights) or population (the biases).  The step is written once over the
namespace of the parameter array (:mod:`ribbed.agents.xp`): on tensors in place, so that the
tensor executors allocate nothing per step; on numpy it computes what torch.optim computes, to
about 1e-16 relative, so a network trained by the reference executor can be checked against
torch step by step.  The step is returned rather than applied, so that the caller can scale
it (chiral modulation) before adding it.
"""

from __future__ import annotations

import math
from typing import Any

from ribbed.agents.xp import add_, addcmul_, copy, lerp_, mul_, namespace
from ribbed.scenarios.schema import LearningSpec

__all__ = ["Optimizer", "SGD", "Momentum", "Adam", "make_optimizer"]


class Optimizer:
    """Turns a gradient into a parameter step; subclasses hold the state."""

    #: What a snapshot saves (scheduler/state.py).
    snapshot_attrs: tuple[str, ...] = ()

    def __init__(self, settings: LearningSpec, like: Any):
        """``like``: the parameter array (its namespace, shape, dtype and device are the state's)."""
        self.lr = settings.lr

    def step(self, grad: Any) -> Any:
        """The step for ``grad``; reuses (overwrites) ``grad``'s storage."""
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        """The optimizer's state, for inspection and snapshots, in torch.optim's names."""
        return {}


class SGD(Optimizer):
    """torch.optim.SGD: step = -lr g."""

    def step(self, grad: Any) -> Any:
        grad *= -self.lr
        return grad


class Momentum(Optimizer):
    """torch.optim.SGD(momentum=mu): buf = mu * buf + g (buf = g at the first step)."""

    snapshot_attrs = ("buffer",)

    def __init__(self, settings: LearningSpec, like: Any):
        super().__init__(settings, like)
        self.momentum = settings.momentum
        self.buffer = None

    def step(self, grad: Any) -> Any:
        xp = namespace(grad)
        if self.buffer is None:
            self.buffer = copy(grad, xp)
        else:
            self.buffer = add_(mul_(self.buffer, self.momentum, xp), grad, xp)
        return xp.multiply(self.buffer, -self.lr, out=grad)

    def state(self) -> dict[str, Any]:
        return {} if self.buffer is None else {"momentum_buffer": self.buffer}


class Adam(Optimizer):
    """torch.optim.Adam with bias correction (Kingma & Ba, 2015)."""

    snapshot_attrs = ("t", "m", "v")

    def __init__(self, settings: LearningSpec, like: Any):
        super().__init__(settings, like)
        self.beta1, self.beta2, self.eps = settings.beta1, settings.beta2, settings.eps
        self.t = 0
        self.m = namespace(like).zeros_like(like)
        self.v = namespace(like).zeros_like(like)

    def step(self, grad: Any) -> Any:
        xp = namespace(grad)
        self.t += 1
        self.m = lerp_(self.m, grad, 1.0 - self.beta1, xp)
        self.v = addcmul_(mul_(self.v, self.beta2, xp), grad, grad, 1.0 - self.beta2, xp)
        step_size = self.lr / (1.0 - self.beta1**self.t)
        denom = xp.sqrt(self.v, out=grad)
        denom /= math.sqrt(1.0 - self.beta2**self.t)
        denom += self.eps
        step = xp.divide(self.m, denom, out=grad)
        step *= -step_size
        return step

    def state(self) -> dict[str, Any]:
        return {"step": self.t, "exp_avg": self.m, "exp_avg_sq": self.v}


_OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "adam": Adam}


def make_optimizer(settings: LearningSpec, like: Any) -> Optimizer:
    """The optimizer ``settings`` names, for a parameter array like ``like``."""
    return _OPTIMIZERS[settings.optimizer](settings, like)
