"""The per-neuron optimizers of :mod:`ribbed.agents.optimizers`, stacked for the batched
executor: one tensor holds the state of every neuron's parameters of one projection (or of
one population's biases).  The formulas are torch.optim's, written out elementwise so that the
step can be scaled (chiral modulation) before it is applied, exactly as the reference
executor does; every operation is elementwise, so stacking changes no number.
"""

from __future__ import annotations

import math

import torch

from ribbed.scenarios.schema import LearningSpec

__all__ = ["StackedOptimizer", "make_stacked_optimizer"]


class StackedOptimizer:
    """Turns a gradient tensor into the step to add to the parameters (elementwise state)."""

    #: What a snapshot saves (scheduler/state.py).
    _state_attrs: tuple[str, ...] = ()

    def __init__(self, settings: LearningSpec, like: torch.Tensor):
        self.lr = settings.lr

    def step(self, grad: torch.Tensor) -> torch.Tensor:
        """The step for ``grad``; may reuse (and overwrite) ``grad``'s storage."""
        return grad.mul_(-self.lr)

    def state(self) -> dict[str, torch.Tensor | int]:
        return {}


class StackedMomentum(StackedOptimizer):
    """torch.optim.SGD(momentum=mu): buf = mu * buf + g (buf = g at the first step)."""

    _state_attrs = ("buffer",)

    def __init__(self, settings: LearningSpec, like: torch.Tensor):
        super().__init__(settings, like)
        self.momentum = settings.momentum
        self.buffer: torch.Tensor | None = None

    def step(self, grad: torch.Tensor) -> torch.Tensor:
        if self.buffer is None:
            self.buffer = grad.clone()
        else:
            self.buffer.mul_(self.momentum).add_(grad)
        return torch.mul(self.buffer, -self.lr, out=grad)

    def state(self) -> dict[str, torch.Tensor | int]:
        return {} if self.buffer is None else {"momentum_buffer": self.buffer}


class StackedAdam(StackedOptimizer):
    """torch.optim.Adam with bias correction (Kingma & Ba, 2015)."""

    _state_attrs = ("t", "m", "v")

    def __init__(self, settings: LearningSpec, like: torch.Tensor):
        super().__init__(settings, like)
        self.beta1, self.beta2, self.eps = settings.beta1, settings.beta2, settings.eps
        self.t = 0
        self.m = torch.zeros_like(like)
        self.v = torch.zeros_like(like)

    def step(self, grad: torch.Tensor) -> torch.Tensor:
        self.t += 1
        self.m.lerp_(grad, 1.0 - self.beta1)
        self.v.mul_(self.beta2).addcmul_(grad, grad, value=1.0 - self.beta2)
        step_size = self.lr / (1.0 - self.beta1**self.t)
        denom = torch.sqrt(self.v, out=grad).div_(math.sqrt(1.0 - self.beta2**self.t)).add_(self.eps)
        return torch.div(self.m, denom, out=grad).mul_(-step_size)

    def state(self) -> dict[str, torch.Tensor | int]:
        return {"step": self.t, "exp_avg": self.m, "exp_avg_sq": self.v}


_OPTIMIZERS = {"sgd": StackedOptimizer, "momentum": StackedMomentum, "adam": StackedAdam}


def make_stacked_optimizer(settings: LearningSpec, like: torch.Tensor) -> StackedOptimizer:
    return _OPTIMIZERS[settings.optimizer](settings, like)
