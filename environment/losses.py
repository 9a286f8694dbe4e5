"""Losses of the readout stage, averaged over the batch as torch.nn.functional does.

Each loss gives, for a batch of outputs (batch, n_out), each sample's loss (its term in the
batch mean) and the task's answer, the per-sample gradient ``B * dL/dy`` (the error the task
sends to each output neuron), so that a weight's gradient is the batch mean of
``delta_j * x_i`` with ``delta_j = f'(u_j) * (sum of the neuron's error messages)``.

The formulas are written once over an array namespace ``xp`` (numpy for the reference
executor and the evaluation, torch for the tensor executors): :func:`per_sample_loss`.  One
difference is kept on purpose, for mean squared error: the reference executor's batch loss is
the mean over all entries and its answer is ``(2 diff) / n_out`` (:func:`mse`), while the tensor
executors average the per-sample means and compute ``diff (2 / n_out)`` (:func:`mse_answer`;
the Ray executor's shards add per-sample sums of their output blocks).  Both round differently
and runs are logged bit for bit, so each keeps the arithmetic it was written with.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["LOSSES", "accuracy", "cross_entropy", "cross_entropy_samples", "log_softmax", "mse", "mse_answer",
           "mse_samples", "per_sample_loss", "r2", "sample_losses"]


def log_softmax(logits: Any, xp: ModuleType) -> Any:
    """log softmax over the output axis (1), shifted by each row's maximum."""
    shifted = logits - xp.amax(logits, axis=1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))


def cross_entropy_samples(logits: Any, targets: Any, xp: ModuleType) -> tuple[Any, Any]:
    """Softmax cross-entropy (torch's F.cross_entropy): each sample's loss, and the answer
    softmax - targets."""
    log_p = log_softmax(logits, xp)
    return -(targets * log_p).sum(axis=1), xp.exp(log_p) - targets


def mse_answer(diff: Any, n_outputs: int) -> Any:
    """The tensor executors' answer of mean squared error for ``diff = outputs - targets``,
    ``diff (2 / n_outputs)`` (also for a block of the output's columns)."""
    return diff * (2.0 / n_outputs)


def mse_samples(outputs: Any, targets: Any, xp: ModuleType) -> tuple[Any, Any]:
    """Mean squared error (torch's F.mse_loss): each sample's mean over the outputs, and the
    tensor executors' answer (:func:`mse_answer`)."""
    diff = outputs - targets
    return (diff * diff).mean(axis=1), mse_answer(diff, outputs.shape[1])


_PER_SAMPLE = {"cross_entropy": cross_entropy_samples, "mse": mse_samples}


def per_sample_loss(name: str, outputs: Any, targets: Any, xp: ModuleType) -> tuple[Any, Any]:
    """Loss ``name``'s per-sample losses (the batch loss is their mean) and its answer."""
    return _PER_SAMPLE[name](outputs, targets, xp)


def sample_losses(name: str, outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Each sample's own loss (its term in the batch mean); the task broadcasts 1 - exp(-loss)
    to guided neurons as the sample's surprise."""
    return per_sample_loss(name, outputs, targets, np)[0]


def cross_entropy(logits: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """The batch's softmax cross-entropy (mean over samples) and the answer, in numpy."""
    losses, answer = cross_entropy_samples(logits, targets, np)
    return float(losses.mean()), answer


def mse(outputs: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean squared error over batch and outputs (torch's F.mse_loss, mean) and the reference
    executor's answer ``(2 diff) / n_out`` (see the module docstring for why it is not
    :func:`mse_answer`)."""
    diff = outputs - targets
    return float(np.mean(diff * diff)), 2.0 * diff / outputs.shape[1]


#: The batch loss and the answer, in numpy (the reference executor, the evaluation), by name.
LOSSES = {"cross_entropy": cross_entropy, "mse": mse}


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(outputs.argmax(axis=1) == labels))


def r2(outputs: np.ndarray, targets: np.ndarray) -> float:
    """Coefficient of determination over all output columns (scikit-learn's uniform average)."""
    residual = ((targets - outputs) ** 2).sum(axis=0)
    total = ((targets - targets.mean(axis=0)) ** 2).sum(axis=0)
    return float(np.mean(1.0 - residual / np.where(total == 0, 1.0, total)))
