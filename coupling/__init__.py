"""Coupling: how neurons reach guides (direct, hash, tree); see :mod:`ribbed.coupling.base`."""

from __future__ import annotations

import numpy as np

from ribbed.coupling.base import Coupling, n_signature_features
from ribbed.coupling.direct import DirectCoupling
from ribbed.coupling.hashing import HashCoupling
from ribbed.coupling.tree import TreeCoupling

__all__ = ["Coupling", "DirectCoupling", "HashCoupling", "TreeCoupling", "make_coupling", "n_signature_features"]


def make_coupling(spec, size: int, n_context: int, rng: np.random.Generator) -> Coupling:
    """The coupling a population's spec describes, its random parts drawn from ``rng``."""
    if spec.kind == "direct":
        return DirectCoupling(size)
    cls = HashCoupling if spec.kind == "hash" else TreeCoupling
    return cls(size, spec, n_signature_features(n_context), rng)
