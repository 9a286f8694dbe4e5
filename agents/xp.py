"""The few array operations that numpy and torch spell differently.

ribbed writes each formula once over an array namespace ``xp`` (the module ``numpy`` or
``torch``), so that the reference executor (float64 numpy, one neuron at a time) and the tensor
executors (torch, whole populations) run the same arithmetic; see :mod:`ribbed.meta.controllers`,
:mod:`ribbed.agents.activations`, :mod:`ribbed.agents.optimizers`, :mod:`ribbed.agents.rules`
and :mod:`ribbed.environment.losses`.  Most operations are spelled alike (operators, in-place
operators, ``where``, ``tanh``, ``exp``, ``sqrt``, ``multiply``/``divide``/``negative`` with
``out=``, ``sum``/``mean``/``amax`` with ``axis=``/``keepdims=``); the rest are here.

The state updates with a trailing underscore work in place on tensors and return new arrays
on numpy (see :func:`lerp_`).  Two of them are fused torch kernels that numpy lacks (``lerp_``,
``addcmul_``): numpy gets the formula torch documents and torch keeps its kernel, so each
executor computes exactly what it computed before they shared a formula (torch's vectorized
kernels may fuse a multiply-add, so the two agree to rounding, not bit for bit).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import torch

__all__ = ["add_", "addcmul_", "astype", "copy", "eye_like", "lerp_", "mul_", "namespace"]


def namespace(array: Any) -> ModuleType:
    """The namespace of ``array``: torch for a tensor, numpy otherwise."""
    return torch if isinstance(array, torch.Tensor) else np


def astype(array: Any, dtype: Any, xp: ModuleType) -> Any:
    """``array`` converted to ``dtype`` (a new array)."""
    return array.astype(dtype) if xp is np else array.to(dtype)


def eye_like(matrix: Any, xp: ModuleType) -> Any:
    """The identity matrix of ``matrix``'s last dimension, dtype and device."""
    n = matrix.shape[-1]
    return np.eye(n, dtype=matrix.dtype) if xp is np else torch.eye(n, dtype=matrix.dtype, device=matrix.device)


def copy(array: Any, xp: ModuleType) -> Any:
    """A copy of ``array`` with its own storage."""
    return array.copy() if xp is np else array.clone()


def mul_(array: Any, factor: Any, xp: ModuleType) -> Any:
    """``array * factor``: in place on a tensor, a new array on numpy (see :func:`lerp_`)."""
    return array * factor if xp is np else array.mul_(factor)


def add_(array: Any, other: Any, xp: ModuleType) -> Any:
    """``array + other``: in place on a tensor, a new array on numpy (see :func:`lerp_`)."""
    return array + other if xp is np else array.add_(other)


def lerp_(start: Any, end: Any, weight: float, xp: ModuleType) -> Any:
    """``start + weight * (end - start)``, as torch's ``lerp_`` computes it: for ``weight < 0.5``,
    ``start + weight (end - start)``, else ``end - (end - start) (1 - weight)``.

    This and the other functions with a trailing underscore update a tensor in place and return
    it (the tensor executors allocate nothing per step), and return a new array on numpy, as
    the reference executor's state always was (a neuron's 0-d bias state becomes a numpy
    scalar, and its snapshots say so): always assign the result."""
    if xp is not np:
        return start.lerp_(end, weight)
    return start + weight * (end - start) if weight < 0.5 else end - (end - start) * (1.0 - weight)


def addcmul_(array: Any, a: Any, b: Any, value: float, xp: ModuleType) -> Any:
    """``array + value * a * b`` (torch's ``addcmul_``; numpy: ``(value a) b``; see :func:`lerp_`)."""
    return array + value * a * b if xp is np else array.addcmul_(a, b, value=value)
