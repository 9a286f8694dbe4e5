"""Activation functions y = f(u) and their derivatives f'(u), as torch defines them
(relu'(0) = 0, leaky_relu slope 0.01 with slope at 0), so gradients match autograd."""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

__all__ = ["Activation", "ACTIVATIONS", "TORCH_ACTIVATIONS"]

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


def _torch_table() -> dict[str, Activation]:
    """The same functions on torch tensors (for the batched executor), computed by the same
    formulas so that both executors agree to rounding."""
    import torch

    def sigmoid(u):
        return torch.tanh(0.5 * u).add_(1.0).mul_(0.5)

    return {
        "identity": Activation("identity", lambda u: u, lambda u, y: torch.ones_like(u)),
        "tanh": Activation("tanh", torch.tanh, lambda u, y: 1.0 - y * y),
        "relu": Activation("relu", torch.relu, lambda u, y: (u > 0).to(u.dtype)),
        "sigmoid": Activation("sigmoid", sigmoid, lambda u, y: y * (1.0 - y)),
        "leaky_relu": Activation(
            "leaky_relu", lambda u: torch.where(u > 0, u, LEAKY_SLOPE * u),
            lambda u, y: torch.where(u > 0, torch.ones_like(u), torch.full_like(u, LEAKY_SLOPE)),
        ),
    }


TORCH_ACTIVATIONS: dict[str, Activation] = _torch_table()
