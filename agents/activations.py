"""Activation functions y = f(u) and their derivatives f'(u), as torch defines them
(relu'(0) = 0, leaky_relu slope 0.01 with slope at 0), so gradients match autograd."""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

__all__ = ["Activation", "ACTIVATIONS"]

LEAKY_SLOPE = 0.01


class Activation(NamedTuple):
    name: str
    f: Callable[[np.ndarray], np.ndarray]
    #: derivative from (u, y): many are cheapest in terms of the output y.
    df: Callable[[np.ndarray, np.ndarray], np.ndarray]


def _sigmoid(u: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * u))


ACTIVATIONS: dict[str, Activation] = {
    "identity": Activation("identity", lambda u: u, lambda u, y: np.ones_like(u)),
    "tanh": Activation("tanh", np.tanh, lambda u, y: 1.0 - y * y),
    "relu": Activation("relu", lambda u: np.maximum(u, 0.0), lambda u, y: (u > 0).astype(u.dtype)),
    "sigmoid": Activation("sigmoid", _sigmoid, lambda u, y: y * (1.0 - y)),
    "leaky_relu": Activation(
        "leaky_relu", lambda u: np.where(u > 0, u, LEAKY_SLOPE * u), lambda u, y: np.where(u > 0, 1.0, LEAKY_SLOPE)
    ),
}
