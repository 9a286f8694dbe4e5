"""The learn stage of one population, as tensor operations: shared by the batched executor and
the Ray executor's shards, so that both apply the same arithmetic.

A "population" here is anything with the batched executor's population attributes (``plastic``,
``sanger``, ``credit``, ``y``, ``plastic_counts``, ``bias``, ``bias_optimizer``): a whole
population, or the block of one that a shard owns.  Every quantity is per postsynaptic neuron
(a row of each incoming projection), so a block learns exactly as its rows of the whole
population would, except under Sanger's rule, whose lateral term couples the population's
neurons (a shard keeps such a population whole).

The rules' arithmetic is :mod:`ribbed.agents.rules`'s, shared with the reference executor's
neurons; the batch means are summed by each projection's layout.
"""

from __future__ import annotations

import torch

from ribbed.agents.optimizers import SGD
from ribbed.agents.rules import bias_gradient, chiral_factor, hebbian_gradient

__all__ = ["learn"]


def learn(population, batch: int, dtype: torch.dtype) -> None:
    """Apply one step of the population's rule to its incoming plastic projections and its bias."""
    plastic = population.plastic
    if plastic and not population.sanger and all(s.kappa == 0.0 for s in plastic):
        plastic = [s for s in plastic if not _fused_sgd_step(population, s)]
    if plastic:
        sanger = _sanger_gradients(population) if population.sanger else {}
        grads = [sanger[id(s)] if id(s) in sanger else _gradient(population, s, batch) for s in plastic]
        scales = _chiral_scales(population, grads, dtype)
        for synapses, grad, scale in zip(plastic, grads, scales):
            step = synapses.optimizer.step(grad)
            if scale is not None:
                step.mul_(scale)
            synapses.weights.add_(step)
    if population.bias_optimizer is not None and population.credit is not None:
        population.bias.add_(population.bias_optimizer.step(bias_gradient(population.credit)))


def _fused_sgd_step(population, synapses) -> bool:
    """Plain SGD on a gradient rule, W -= lr <credit x>, in one pass where the layout can
    (``add_outer``: a sparse projection at batch 1); False where it cannot (the caller steps)."""
    optimizer = synapses.optimizer
    if type(optimizer) is not SGD or synapses.info.learning.rule == "hebbian":
        return False
    credit = population.credit if population.credit is not None else torch.zeros_like(population.y)
    return synapses.layout.add_outer(credit, synapses.x, synapses.weights, -optimizer.lr)


def _gradient(population, synapses, batch: int) -> torch.Tensor:
    layout, x = synapses.layout, synapses.x
    if synapses.info.learning.rule != "hebbian":
        credit = population.credit if population.credit is not None else torch.zeros_like(population.y)
        return layout.outer_mean(credit, x)
    # Oja: -<y_j x_i> + <y_j^2> W_ij
    y = population.y
    square = (y * y).sum(dim=0).div_(batch)
    return hebbian_gradient(layout.outer_mean(y, x), layout.per_row(square) * synapses.weights, torch)


def _sanger_gradients(population) -> dict[int, torch.Tensor]:
    """Sanger's rule for all of a population's Sanger projections at once:
    G = -<y^T x> + tril(<y^T y>) W over the concatenated presynaptic populations."""
    y = population.y
    batch = y.shape[0]
    x = torch.cat([s.x for s in population.sanger], dim=1)
    weights = torch.cat([s.layout.full(s.weights) for s in population.sanger], dim=1)
    correlation = torch.tril(torch.mm(y.T, y).div_(batch))
    full = hebbian_gradient(torch.mm(y.T, x).div_(batch), torch.mm(correlation, weights), torch)
    grads, offset = {}, 0
    for synapses in population.sanger:
        width = synapses.layout.n_pre
        grads[id(synapses)] = synapses.layout.from_full(full[:, offset:offset + width].contiguous())
        offset += width
    return grads


def _chiral_scales(population, grads: list[torch.Tensor], dtype: torch.dtype) -> list[torch.Tensor | None]:
    """Per synapse 1 + kappa (2a - 1), a = the share of the neuron's plastic synapses whose
    gradient has its sign (zero counts as a sign); None where kappa is 0."""
    plastic = population.plastic
    if all(s.kappa == 0.0 for s in plastic):
        return [None] * len(plastic)
    positive = sum(s.layout.row_sum((g > 0).to(dtype)) for s, g in zip(plastic, grads))
    negative = sum(s.layout.row_sum((g < 0).to(dtype)) for s, g in zip(plastic, grads))
    total = population.plastic_counts
    zero = total - positive - negative
    total = total.clamp(min=1.0)
    scales = []
    for synapses, grad in zip(plastic, grads):
        if synapses.kappa == 0.0:
            scales.append(None)
            continue
        per_row = synapses.layout.per_row
        scales.append(chiral_factor(grad, per_row(positive), per_row(negative), per_row(zero), per_row(total),
                                    synapses.kappa, torch))
    return scales
