"""Direct coupling: every neuron has a guide of its own."""

from __future__ import annotations

import numpy as np

from ribbed.coupling.base import Coupling

__all__ = ["DirectCoupling"]


class DirectCoupling(Coupling):
    """Guide i serves neuron i, and each neuron is its own meta unit."""

    kind = "direct"

    @property
    def n_guides(self) -> int:
        return self.size

    @property
    def n_units(self) -> int:
        return self.size

    def initial_paths(self) -> np.ndarray:
        return np.arange(self.size, dtype=np.int64)[:, None]

    def units(self, paths: np.ndarray) -> np.ndarray:
        return paths[:, 0]
