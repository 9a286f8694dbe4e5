"""Seeds for every random component of a run, drawn from the scenario seed.

Each component (a projection's weights, the data split, the order of the data stream...)
gets its own ``numpy.random.SeedSequence`` whose spawn key is derived from the component's
*name*, not from the order in which components happen to be created.  Adding a projection
to a scenario therefore leaves the initial weights of every other projection unchanged,
and any executor can redraw any component on its own: nothing random is ever drawn inside
an executor.
"""

from __future__ import annotations

import zlib

import numpy as np

__all__ = ["component_seed", "component_rng", "component_uniforms"]


def _spawn_key_part(part: str | int) -> int:
    if isinstance(part, bool) or not isinstance(part, (str, int)):
        raise TypeError(f"seed path parts are str or int, got {part!r}")
    if isinstance(part, int):
        if part < 0:
            raise ValueError(f"seed path integers must be non-negative, got {part}")
        return part
    return zlib.crc32(part.encode("utf-8"))


def component_seed(seed: int, *path: str | int) -> np.random.SeedSequence:
    """The SeedSequence of the component named by ``path`` under the root ``seed``."""
    return np.random.SeedSequence(entropy=seed, spawn_key=tuple(_spawn_key_part(p) for p in path))


def component_rng(seed: int, *path: str | int) -> np.random.Generator:
    """A fresh generator for the component named by ``path`` under the root ``seed``."""
    return np.random.Generator(np.random.PCG64(component_seed(seed, *path)))


def component_uniforms(seed: int, path: tuple, shape: tuple[int, ...]) -> np.ndarray:
    """The uniforms on [0, 1) of the component ``path`` (``("firing", population, tick)``,
    ``("encoding", tick)``...), float64, of ``shape`` (steps, samples, neurons): the one draw every
    executor makes for it with the same key, so that none draws on its own (docs/semantics.md,
    "Time within a tick")."""
    return component_rng(seed, *path).random(shape)
