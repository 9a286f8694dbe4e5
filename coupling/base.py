"""What every coupling provides: which guides each neuron of a population consults.

A coupling answers with *paths*: an (n_neurons, depth) array of guide indices, the guides a
neuron asks, root first (depth 1 except for the tree coupling).  Its *units* are the groups that
share a meta-controller state (a neuron alone under direct coupling, a bucket under hash, a leaf
under tree).  Couplings that re-form their groups do so from each neuron's activity signature,
in shared numpy code, so every executor regroups identically.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Coupling", "n_signature_features", "signature_projections"]


def n_signature_features(n_context: int) -> int:
    """Width of an activity signature: the mean activity and its correlation with each context column."""
    return 1 + n_context


def signature_projections(signatures: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """``(signatures - their mean) @ directions.T``: each neuron's centred signature projected on
    each direction (directions: (n_directions, n_signature); the result: (n_neurons, n_directions)).

    Each product is summed over the signature's columns in order, with the same operations for
    every neuron, so that neurons with identical signatures (dead ReLU neurons, for one) get
    identical projections and tie exactly.  A BLAS matrix product does not promise that: its
    rounding may depend on a row's place in the kernel's blocks, which would break such ties one
    way or the other depending on the last bits of the mean, and so differently on executors
    that compute the signatures in different orders (or on different CPUs).
    """
    centred = signatures - signatures.mean(axis=0)
    projections = centred[:, :1] * directions[:, 0]
    for column in range(1, centred.shape[1]):
        projections = projections + centred[:, column:column + 1] * directions[:, column]
    return projections


class Coupling:
    """Base of the couplings (see the module docstring)."""

    kind = "coupling"
    #: Guides on each neuron's path.
    depth = 1
    #: Regroup every this many ticks (None: never).
    regroup_every: int | None = None
    #: Rate of the signature's running average.
    signature_decay = 0.1

    def __init__(self, size: int):
        self.size = size

    @property
    def n_guides(self) -> int:
        raise NotImplementedError

    @property
    def n_units(self) -> int:
        raise NotImplementedError

    def initial_paths(self) -> np.ndarray:
        """The paths before the first regrouping."""
        raise NotImplementedError

    def regroup(self, signatures: np.ndarray, paths: np.ndarray) -> np.ndarray:
        """New paths from the signatures (n_neurons, n_signature) and the current paths."""
        return paths

    def units(self, paths: np.ndarray) -> np.ndarray:
        """Each neuron's meta unit."""
        raise NotImplementedError

    def unit_guides(self) -> np.ndarray:
        """The guide (and ClusterAgent) that holds each unit's meta state."""
        return np.arange(self.n_units, dtype=np.int64)

    def regroups_at(self, tick: int) -> bool:
        return self.regroup_every is not None and tick % self.regroup_every == 0
