"""Per-neuron optimizers.  Each keeps its own state for one parameter array (a neuron's
incoming weights from one projection, or its bias) and returns the step to add to it.
The formulas follow torch.optim (SGD, SGD with momentum, Adam) and agree with it to about
1e-16 relative, so a network trained here can be checked against torch step by step."""

from __future__ import annotations

import math

import numpy as np

from ribbed.scenarios.schema import LearningSpec

__all__ = ["Optimizer", "SGD", "Momentum", "Adam", "make_optimizer"]


class Optimizer:
    """Turns a gradient into a parameter step; subclasses hold the state."""

    #: What a snapshot saves (scheduler/state.py).
    _state_attrs: tuple[str, ...] = ()

    def __init__(self, settings: LearningSpec, shape: tuple[int, ...]):
        self.lr = settings.lr

    def step(self, grad: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def state(self) -> dict[str, np.ndarray | int]:
        """The optimizer's state, for inspection and snapshots."""
        return {}


class SGD(Optimizer):
    def step(self, grad: np.ndarray) -> np.ndarray:
        return -self.lr * grad


class Momentum(Optimizer):
    """torch.optim.SGD(momentum=mu): buf = mu * buf + g (buf = g at the first step)."""

    _state_attrs = ("buffer",)

    def __init__(self, settings: LearningSpec, shape: tuple[int, ...]):
        super().__init__(settings, shape)
        self.momentum = settings.momentum
        self.buffer: np.ndarray | None = None

    def step(self, grad: np.ndarray) -> np.ndarray:
        self.buffer = grad.copy() if self.buffer is None else self.momentum * self.buffer + grad
        return -self.lr * self.buffer

    def state(self) -> dict[str, np.ndarray | int]:
        return {} if self.buffer is None else {"momentum_buffer": self.buffer}


class Adam(Optimizer):
    """torch.optim.Adam with bias correction (Kingma & Ba, 2015)."""

    _state_attrs = ("t", "m", "v")

    def __init__(self, settings: LearningSpec, shape: tuple[int, ...]):
        super().__init__(settings, shape)
        self.beta1, self.beta2, self.eps = settings.beta1, settings.beta2, settings.eps
        self.t = 0
        self.m = np.zeros(shape)
        self.v = np.zeros(shape)

    def step(self, grad: np.ndarray) -> np.ndarray:
        self.t += 1
        weight = 1.0 - self.beta1
        # torch's lerp: start + w * (end - start) for w < 0.5, else end - (end - start) * (1 - w).
        self.m = self.m + weight * (grad - self.m) if weight < 0.5 else grad - (grad - self.m) * (1.0 - weight)
        self.v = self.v * self.beta2 + (1.0 - self.beta2) * grad * grad
        step_size = self.lr / (1.0 - self.beta1**self.t)
        denom = np.sqrt(self.v) / math.sqrt(1.0 - self.beta2**self.t) + self.eps
        return -step_size * (self.m / denom)

    def state(self) -> dict[str, np.ndarray | int]:
        return {"step": self.t, "exp_avg": self.m, "exp_avg_sq": self.v}


_OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "adam": Adam}


def make_optimizer(settings: LearningSpec, shape: tuple[int, ...]) -> Optimizer:
    return _OPTIMIZERS[settings.optimizer](settings, shape)
