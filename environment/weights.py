"""Initial synaptic weights, drawn once in shared code from a projection's own seed.

Fan-in and fan-out are the real in- and out-degrees of each neuron within the projection,
so a sparse projection is scaled by the synapses it actually has.
"""

from __future__ import annotations

import numpy as np

from ribbed.scenarios.schema import Constant, FanInUniform, GlorotUniform, HeNormal, Normal, Uniform

__all__ = ["initial_weights"]


def initial_weights(spec, pre: np.ndarray, post: np.ndarray, n_pre: int, n_post: int,
                    rng: np.random.Generator) -> np.ndarray:
    """One weight per synapse ``(pre[s], post[s])``, float64, drawn from ``rng``."""
    n = pre.shape[0]
    fan_in = np.bincount(post, minlength=n_post)[post].astype(np.float64)
    if isinstance(spec, FanInUniform):
        bound = spec.gain / np.sqrt(fan_in)
        return rng.uniform(-1.0, 1.0, size=n) * bound
    if isinstance(spec, GlorotUniform):
        fan_out = np.bincount(pre, minlength=n_pre)[pre].astype(np.float64)
        bound = spec.gain * np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-1.0, 1.0, size=n) * bound
    if isinstance(spec, HeNormal):
        return rng.standard_normal(n) * (spec.gain * np.sqrt(2.0 / fan_in))
    if isinstance(spec, Normal):
        return spec.mean + spec.std * rng.standard_normal(n)
    if isinstance(spec, Uniform):
        return rng.uniform(spec.low, spec.high, size=n)
    if isinstance(spec, Constant):
        return np.full(n, spec.value, dtype=np.float64)
    raise TypeError(f"unknown weight initializer {spec!r}")  # pragma: no cover
