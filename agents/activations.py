"""Activation functions y = f(u) and their derivatives f'(u), as torch defines them
(relu'(0) = 0, leaky_relu slope 0.01 with slope at 0), so gradients match autograd.

Each is written once over an array namespace ``xp`` (numpy or torch, see
:mod:`ribbed.agents.xp`) and bound to each: :data:`ACTIVATIONS` for the reference executor's
numpy neurons, :data:`TORCH_ACTIVATIONS` for the tensor executors' populations.  The formulas
work elementwise, so one neuron's (batch,) vector and a population's (batch, n) tensor go through
the same arithmetic.
"""

from __future__ import annotations

from types import ModuleType
from typing import Callable, NamedTuple

import numpy as np
import torch

from ribbed.agents.xp import astype

__all__ = ["Activation", "ACTIVATIONS", "TORCH_ACTIVATIONS", "activation_table"]

LEAKY_SLOPE = 0.01


class Activation(NamedTuple):
    name: str
    f: Callable
    #: derivative from (u, y): many are cheapest in terms of the output y.
    df: Callable


def activation_table(xp: ModuleType) -> dict[str, Activation]:
    """The activations on ``xp``'s arrays, by name."""

    def sigmoid(u):
        # 0.5 (1 + tanh(u / 2)), in place on the tanh (no temporaries on the tensor executors).
        s = xp.tanh(0.5 * u)
        s += 1.0
        s *= 0.5
        return s

    return {
        "identity": Activation("identity", lambda u: u, lambda u, y: xp.ones_like(u)),
        "tanh": Activation("tanh", xp.tanh, lambda u, y: 1.0 - y * y),
        "relu": Activation("relu", lambda u: xp.clip(u, 0.0, None), lambda u, y: astype(u > 0, u.dtype, xp)),
        "sigmoid": Activation("sigmoid", sigmoid, lambda u, y: y * (1.0 - y)),
        "leaky_relu": Activation(
            "leaky_relu", lambda u: xp.where(u > 0, u, LEAKY_SLOPE * u),
            lambda u, y: xp.where(u > 0, xp.ones_like(u), xp.full_like(u, LEAKY_SLOPE)),
        ),
    }


ACTIVATIONS: dict[str, Activation] = activation_table(np)
TORCH_ACTIVATIONS: dict[str, Activation] = activation_table(torch)
