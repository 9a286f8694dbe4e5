"""Losses of the readout stage, averaged over the batch as torch.nn.functional does.

Each returns the loss and the per-sample gradient ``B * dL/dy`` (the error the task sends
to each output neuron), so that a weight's gradient is the batch mean of
``delta_j * x_i`` with ``delta_j = f'(u_j) * (sum of the neuron's error messages)``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["cross_entropy", "mse", "accuracy", "r2", "sample_losses"]


def cross_entropy(logits: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """Softmax cross-entropy over the output population (torch's F.cross_entropy, mean)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    log_p = shifted - log_norm
    loss = float(-(targets * log_p).sum(axis=1).mean())
    return loss, np.exp(log_p) - targets


def mse(outputs: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean squared error over batch and outputs (torch's F.mse_loss, mean)."""
    diff = outputs - targets
    return float(np.mean(diff * diff)), 2.0 * diff / outputs.shape[1]


LOSSES = {"cross_entropy": cross_entropy, "mse": mse}


def sample_losses(name: str, outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Each sample's own loss (its term in the batch mean); the task broadcasts 1 - exp(-loss)
    to guided neurons as the sample's surprise."""
    if name == "mse":
        diff = outputs - targets
        return (diff * diff).mean(axis=1)
    shifted = outputs - outputs.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -(targets * log_p).sum(axis=1)


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(outputs.argmax(axis=1) == labels))


def r2(outputs: np.ndarray, targets: np.ndarray) -> float:
    """Coefficient of determination over all output columns (scikit-learn's uniform average)."""
    residual = ((targets - outputs) ** 2).sum(axis=0)
    total = ((targets - targets.mean(axis=0)) ** 2).sum(axis=0)
    return float(np.mean(1.0 - residual / np.where(total == 0, 1.0, total)))
