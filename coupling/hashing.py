"""Hash coupling: neurons with similar activity share a guide.

Each neuron's activity signature is hashed with random hyperplanes (SimHash, Charikar 2002):
bit b of its bucket is whether the centred signature lies on the positive side of hyperplane
b.  Neurons in one bucket share the guide (and the meta-controller state) of the bucket's
ClusterAgent.  When the population is re-hashed, guides follow their majority: the guide whose
members mostly moved to bucket k takes bucket k, so a guide keeps serving (mostly) the
neurons it has learned about.
"""

from __future__ import annotations

import numpy as np

from ribbed.coupling.base import Coupling, signature_projections

__all__ = ["HashCoupling", "follow_majority"]


def follow_majority(guides: np.ndarray, buckets: np.ndarray, n_guides: int) -> np.ndarray:
    """Each neuron's new guide, when neuron i, served by ``guides[i]``, is hashed to ``buckets[i]``.

    Guides and buckets are matched greedily: pairs (guide, bucket) by the number of the guide's
    members in the bucket, largest first (ties: lower guide, then lower bucket), each guide and
    bucket taken once; guides left over take the buckets left over in increasing order.  The
    neurons of bucket k are then served by the guide matched to k.
    """
    pairs, counts = np.unique(guides.astype(np.int64) * n_guides + buckets, return_counts=True)
    guide_idx, bucket_idx = pairs // n_guides, pairs % n_guides
    order = np.lexsort((bucket_idx, guide_idx, -counts))
    guide_of_bucket = np.full(n_guides, -1, dtype=np.int64)
    taken = np.zeros(n_guides, dtype=bool)
    for g, k in zip(guide_idx[order], bucket_idx[order]):
        if not taken[g] and guide_of_bucket[k] < 0:
            guide_of_bucket[k], taken[g] = g, True
    guide_of_bucket[guide_of_bucket < 0] = np.flatnonzero(~taken)
    return guide_of_bucket[buckets]


class HashCoupling(Coupling):
    """2^bits buckets from ``bits`` random hyperplanes over the signatures."""

    kind = "hash"

    def __init__(self, size: int, spec, n_signature: int, rng: np.random.Generator):
        super().__init__(size)
        self.bits = spec.bits
        self.regroup_every = spec.rehash_every
        self.signature_decay = spec.signature_decay
        self.planes = rng.standard_normal((spec.bits, n_signature))

    @property
    def n_guides(self) -> int:
        return 2**self.bits

    @property
    def n_units(self) -> int:
        return self.n_guides

    def initial_paths(self) -> np.ndarray:
        return np.zeros((self.size, 1), dtype=np.int64)

    def buckets(self, signatures: np.ndarray) -> np.ndarray:
        """Each neuron's bucket: bit b set when its centred signature is on the positive side of
        hyperplane b."""
        bits = signature_projections(signatures, self.planes) > 0
        return bits.astype(np.int64) @ (1 << np.arange(self.bits, dtype=np.int64))

    def regroup(self, signatures: np.ndarray, paths: np.ndarray) -> np.ndarray:
        return follow_majority(paths[:, 0], self.buckets(signatures), self.n_guides)[:, None]

    def units(self, paths: np.ndarray) -> np.ndarray:
        return paths[:, 0]
