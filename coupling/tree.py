"""Tree coupling: a balanced hierarchy of guides over the neurons ordered by signature.

Neurons are ordered along a random direction of signature space (similar neurons become
neighbours) and covered by a complete binary tree: a leaf covers ``leaf_size`` consecutive
neurons, and a node at level l covers ``leaf_size * 2^(depth-1-l)`` of them (the right edge may
cover fewer).  Every node owns a guide.  A neuron's guidance is the sum of the predictions of the
guides on its path from the root, and each guide learns the residual the guides above it leave,
so coarse guides learn what whole groups share and fine ones what is particular: lookup and
update touch ``depth = O(log n)`` guides.  Re-ordering moves neurons between leaves; the guides
stay at their nodes.
"""

from __future__ import annotations

import math

import numpy as np

from ribbed.coupling.base import Coupling, signature_projections

__all__ = ["TreeCoupling", "tree_depth"]


def tree_depth(size: int, leaf_size: int) -> int:
    """Levels of a complete binary tree whose leaves cover ``leaf_size`` of ``size`` neurons each."""
    return 1 + (math.ceil(size / leaf_size) - 1).bit_length()  # 1 + ceil(log2(leaves))


class TreeCoupling(Coupling):
    """Nodes numbered level by level from the root; see the module docstring."""

    kind = "tree"

    def __init__(self, size: int, spec, n_signature: int, rng: np.random.Generator):
        super().__init__(size)
        self.leaf_size = spec.leaf_size
        self.regroup_every = spec.reorder_every
        self.signature_decay = spec.signature_decay
        self.direction = rng.standard_normal(n_signature)
        self.depth = tree_depth(size, spec.leaf_size)
        #: Neurons under one node, per level.
        self.spans = [spec.leaf_size * 2 ** (self.depth - 1 - level) for level in range(self.depth)]
        self.level_sizes = [math.ceil(size / span) for span in self.spans]
        self.offsets = np.concatenate([[0], np.cumsum(self.level_sizes)]).astype(np.int64)

    @property
    def n_guides(self) -> int:
        return int(self.offsets[-1])

    @property
    def n_units(self) -> int:
        return self.level_sizes[-1]

    def paths_from_positions(self, positions: np.ndarray) -> np.ndarray:
        """Paths of neurons at the given places in the order."""
        spans = np.asarray(self.spans, dtype=np.int64)
        return self.offsets[:-1][None, :] + positions[:, None] // spans[None, :]

    def initial_paths(self) -> np.ndarray:
        return self.paths_from_positions(np.arange(self.size, dtype=np.int64))

    def order(self, signatures: np.ndarray) -> np.ndarray:
        """Neurons sorted by the projection of their centred signature on the tree's direction;
        ties (identical signatures project identically) keep id order."""
        key = signature_projections(signatures, self.direction[None, :])[:, 0]
        return np.argsort(key, kind="stable")

    def regroup(self, signatures: np.ndarray, paths: np.ndarray) -> np.ndarray:
        positions = np.empty(self.size, dtype=np.int64)
        positions[self.order(signatures)] = np.arange(self.size, dtype=np.int64)
        return self.paths_from_positions(positions)

    def units(self, paths: np.ndarray) -> np.ndarray:
        return paths[:, -1] - self.offsets[-2]

    def unit_guides(self) -> np.ndarray:
        return self.offsets[-2] + np.arange(self.n_units, dtype=np.int64)
