"""The order in which training samples are consumed, one mini-batch per tick.

The stream is an endless sequence of epochs, each a permutation of the training set drawn
from its own seed, cut into consecutive batches that may span an epoch boundary.  Any
tick's batch can be computed directly (no state to replay), which makes seeking and
resuming a run exact.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ribbed.seeding import component_rng

__all__ = ["DataStream"]


class DataStream:
    """Mini-batch indices into the training set for every tick."""

    def __init__(self, n_train: int, batch_size: int, seed: int):
        if n_train <= 0:
            raise ValueError("the training set is empty")
        self.n_train = n_train
        self.batch_size = batch_size
        self.seed = seed
        self._epoch = lru_cache(maxsize=4)(self._permutation)

    def _permutation(self, epoch: int) -> np.ndarray:
        return component_rng(self.seed, "data", "order", epoch).permutation(self.n_train)

    def indices(self, tick: int) -> np.ndarray:
        """Training-set indices of the batch consumed at ``tick``."""
        start = tick * self.batch_size
        positions = np.arange(start, start + self.batch_size)
        epochs, offsets = np.divmod(positions, self.n_train)
        return np.concatenate([self._epoch(int(e))[offsets[epochs == e]] for e in np.unique(epochs)])
