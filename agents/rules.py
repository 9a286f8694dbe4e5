"""The learning rules' arithmetic, shared by the reference executor's neurons
(:class:`~ribbed.agents.neuron.NeuronAgent`, one neuron at a time, numpy) and the tensor
executors' learn stage (:mod:`ribbed.scheduler.batched.learning`, a population or a shard's
block at a time, torch).

For neuron j with inputs x_i, u_j = sum_i W_ij x_i + b_j, y_j = f(u_j), credit c_j (its
delta, or the guided blend of :func:`guided_credit`) and the batch mean written <.>:

  gradient rules:  g_ij = <c_j x_i>,  g_bj = <c_j>  (:func:`bias_gradient`)
  Oja:             g_ij = -<y_j x_i> + <y_j^2> W_ij
  Sanger (GHA):    g_ij = -<y_j (x_i - sum_{k<=j} y_k W_ik)> = -<y_j x_i> + sum_{k<=j} <y_j y_k> W_ik

(both Hebbian rules: :func:`hebbian_gradient`); the optimizer turns g into a step, and chiral
modulation scales each synapse's step by 1 + kappa (2a - 1), a = the share of the neuron's
plastic synapses whose gradient has the same sign (:func:`chiral_factor`).

The formulas are written once over an array namespace ``xp`` and work on either shape: a
neuron's vector of synapses or a projection's (n_post, n_pre) matrix (or one value per synapse)
with per-neuron quantities broadcast to it.  What stays with each executor is how the batch
means are summed: a neuron's dot products over its own messages (the reference executor,
which receives Sanger's reconstruction from its peers and so forms the residual first), or
a projection layout's matrix products and gathers (:mod:`ribbed.scheduler.batched.projection_tensors`).
Those reductions round differently, so the executors agree to rounding, not bit for bit.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["bias_gradient", "broadcast_credit", "chiral_factor", "chiral_scale", "guided_credit", "hebbian_gradient"]


def guided_credit(delta: Any | None, guidance: Any, alpha: Any) -> Any:
    """What a guided neuron learns from: ``(1 - alpha) delta + alpha guidance``, or ``alpha
    guidance`` alone on a tick without propagated error (``delta`` None).  ``alpha``: a number
    (one neuron), or one per neuron broadcast over the batch."""
    if delta is None:
        return alpha * guidance
    return (1.0 - alpha) * delta + alpha * guidance


def broadcast_credit(derivative: Any, context: Any, matrix: Any) -> Any:
    """Broadcast credit (``broadcast: dfa``) on a tick without propagated error:
    ``f'(u) * (e @ B^T)`` with ``e = -s t``: the last n_outputs columns of the task's context
    ``[t, s, s t]``, negated (for cross-entropy, the output error at the right class).  ``derivative``:
    f'(u), (batch,) for one neuron or (batch, n) for a population; ``matrix``: B, the neuron's row
    (n_outputs,) or the population's (n, n_outputs)."""
    n_outputs = matrix.shape[-1]
    error = -context[:, context.shape[1] - n_outputs:]
    return derivative * (error @ (matrix.T if matrix.ndim == 2 else matrix))


def bias_gradient(credit: Any) -> Any:
    """g_b = <c>, the batch mean (axis 0) of the credit: a number for one neuron's (batch,)
    vector, one per neuron for a population's (batch, n)."""
    return credit.mean(axis=0)


def hebbian_gradient(correlation: Any, decay: Any, xp: ModuleType) -> Any:
    """The Hebbian rules' gradient ``-correlation + decay``, in place in ``correlation``.
    ``correlation`` is <y_j x_i> (<y_j r_i> with Sanger's residual r when the reconstruction is
    subtracted from the input first); ``decay`` is Oja's <y_j^2> W_ij, or Sanger's
    sum_{k<=j} <y_j y_k> W_ik."""
    gradient = xp.negative(correlation, out=correlation)
    gradient += decay
    return gradient


def chiral_factor(grad: Any, positive: Any, negative: Any, zero: Any, total: Any, kappa: Any,
                  xp: ModuleType) -> Any:
    """Each synapse's step scale 1 + kappa (2a - 1), a = same / total: ``same`` is the number of
    the neuron's plastic synapses whose gradient has this synapse's sign (``positive``,
    ``negative`` or ``zero``: zero counts as a sign of its own, and a synapse counts itself),
    ``total`` the neuron's plastic synapses.  The counts are numbers (one neuron) or arrays
    broadcast to ``grad``."""
    same = xp.where(grad > 0, positive, xp.where(grad < 0, negative, zero))
    return 1.0 + kappa * (2.0 * same / total - 1.0)


def chiral_scale(grads: np.ndarray, kappa: np.ndarray) -> np.ndarray:
    """:func:`chiral_factor` for one neuron: ``grads`` are all its plastic synapses' gradients
    (concatenated), ``kappa`` each synapse's kappa."""
    n_positive, n_negative = np.count_nonzero(grads > 0), np.count_nonzero(grads < 0)
    return chiral_factor(grads, n_positive, n_negative, grads.size - n_positive - n_negative, grads.size,
                         kappa, np)
