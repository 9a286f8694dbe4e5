"""The guides of :mod:`ribbed.agents.guides`, stacked for the batched executor.

All ``linear`` (or ``mlp``) guides of a population live in a few tensors with a leading guide
axis; neurons reach theirs by index, so predicting and learning for every neuron is one batched
operation per level of the coupling's paths.  ``tree`` and scikit-learn guides cannot be stacked:
they stay :class:`~ribbed.agents.guides.ReplayGuide` objects, fitted per cluster on the CPU.

Every method takes the features ``F`` (batch, n, d) of a population's n neurons and ``index``
(n,), the guide each neuron consults at one level; ``None`` stands for "neuron i consults guide
i" (direct coupling), which skips the gathers.  A guide learns only on ticks when it receives
rows (``received``), as a reference guide's ``partial_fit`` is called only then.
"""

from __future__ import annotations

import numpy as np
import torch

from ribbed.agents.guides import forget_statistics, make_guides, mlp_initial_weights, ridge_coefficients

__all__ = ["StackedGuides", "make_stacked_guides"]


def _take(values: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
    return values if index is None else values.index_select(0, index)


def _scatter_sum(values: torch.Tensor, index: torch.Tensor | None, n_guides: int) -> torch.Tensor:
    """Sum per-neuron ``values`` (n, ...) into their guides (n_guides, ...)."""
    if index is None:
        return values
    out = torch.zeros((n_guides,) + values.shape[1:], dtype=values.dtype, device=values.device)
    return out.index_add_(0, index, values)


class StackedGuides:
    """Base: the guides of one population."""

    #: What a snapshot saves (scheduler/state.py).
    snapshot_attrs: tuple[str, ...] = ()

    def __init__(self, n_guides: int):
        self.n_guides = n_guides

    def predict(self, F: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        """Each neuron's prediction from its guide, (batch, n)."""
        raise NotImplementedError

    def learn(self, levels: list[tuple[torch.Tensor | None, torch.Tensor]], F: torch.Tensor,
              received: torch.Tensor) -> None:
        """One update from ``levels``: (index, target (batch, n)) per level; ``received`` marks the
        guides (n_guides,) that got rows."""
        raise NotImplementedError

    def refit(self) -> None:
        """Replay guides refit on their buffers; stacked ones have nothing to do."""


class StackedLinear(StackedGuides):
    """:class:`~ribbed.agents.guides.LinearGuide` for every guide at once."""

    snapshot_attrs = ("gram", "moment", "coef")

    def __init__(self, spec, n_guides: int, n_features: int, device, dtype):
        super().__init__(n_guides)
        self.ridge, self.forget = spec.ridge, spec.forget
        width = n_features + 1
        self.gram = torch.zeros(n_guides, width, width, dtype=dtype, device=device)
        self.moment = torch.zeros(n_guides, width, dtype=dtype, device=device)
        self.coef = torch.zeros(n_guides, width, dtype=dtype, device=device)

    def predict(self, F, index):
        coef = _take(self.coef, index)
        return (F * coef[:, :-1]).sum(dim=-1) + coef[:, -1]

    def learn(self, levels, F, received):
        gram = torch.zeros_like(self.gram)
        moment = torch.zeros_like(self.moment)
        ones = torch.ones(F.shape[:2] + (1,), dtype=F.dtype, device=F.device)
        Fa = torch.cat([F, ones], dim=2)
        per_neuron_gram = torch.einsum("bnd,bne->nde", Fa, Fa)
        for index, target in levels:
            gram += _scatter_sum(per_neuron_gram, index, self.n_guides)
            moment += _scatter_sum(torch.einsum("bnd,bn->nd", Fa, target), index, self.n_guides)
        rows = torch.nonzero(received).squeeze(1)
        forget_gram, forget_moment = self._forget(rows)
        self.gram[rows] = forget_statistics(self.gram[rows], gram[rows], forget_gram, torch)
        self.moment[rows] = forget_statistics(self.moment[rows], moment[rows], forget_moment, torch)
        self.coef[rows] = ridge_coefficients(self.gram[rows], self.moment[rows], self.ridge, torch)

    def _forget(self, rows: torch.Tensor) -> tuple:
        """The forgetting factor of the guides ``rows`` for their Gram matrices and moments: one
        for every guide here (evolving candidates forget at rates of their own)."""
        return self.forget, self.forget

    def predict_segments(self, F, level):
        offset, nodes, span = level
        coef = self.coef[offset:offset + nodes]
        rows = _segment_rows(F, nodes, span)  # (nodes, span * batch, d)
        out = torch.baddbmm(coef[:, None, -1:], rows, coef[:, :-1, None])
        return out.view(nodes * span, F.shape[1])

    def learn_segments(self, levels, F, mask):
        padded, batch, _ = F.shape
        Fa = torch.cat([F, torch.ones(padded, batch, 1, dtype=F.dtype, device=F.device)], dim=2)
        Fa.mul_(mask[:, None, None])
        moments = []
        for (offset, nodes, span), target in levels:
            rows = _segment_rows(Fa, nodes, span)
            moments.append(torch.bmm(rows.transpose(1, 2), _segment_rows(target[:, :, None], nodes, span)).squeeze(2))
        # The leaves' statistics by one product; a parent's are the sum of its two children's.
        offset, nodes, span = levels[-1][0]
        rows = _segment_rows(Fa, nodes, span)
        grams = [torch.bmm(rows.transpose(1, 2), rows)]
        for (offset, nodes, span), _ in reversed(levels[:-1]):
            child = grams[-1]
            pad = torch.zeros((2 * nodes - child.shape[0],) + child.shape[1:], dtype=F.dtype, device=F.device)
            grams.append(torch.cat([child, pad]).view(nodes, 2, *child.shape[1:]).sum(dim=1))
        gram, moment = torch.cat(grams[::-1]), torch.cat(moments)
        forget_statistics(self.gram, gram, self.forget, torch)
        forget_statistics(self.moment, moment, self.forget, torch)
        self.coef.copy_(ridge_coefficients(self.gram, self.moment, self.ridge, torch))

    def state(self) -> dict[str, torch.Tensor]:
        return {"coef": self.coef, "gram": self.gram, "moment": self.moment}


class StackedMLP(StackedGuides):
    """:class:`~ribbed.agents.guides.MLPGuide` for every guide at once; its optimizer steps follow
    torch.optim's SGD and Adam, each guide with its own step count."""

    snapshot_attrs = ("params", "steps", "exp_avg", "exp_avg_sq")

    def __init__(self, spec, n_guides: int, n_features: int, rng: np.random.Generator, device, dtype):
        super().__init__(n_guides)
        first = mlp_initial_weights(rng, n_guides, n_features, spec.hidden)
        self.params = {
            "hidden_weight": torch.as_tensor(first, dtype=dtype, device=device),
            "hidden_bias": torch.zeros(n_guides, spec.hidden, dtype=dtype, device=device),
            "out_weight": torch.zeros(n_guides, spec.hidden, dtype=dtype, device=device),
            "out_bias": torch.zeros(n_guides, dtype=dtype, device=device),
        }
        self.lr, self.adam = spec.lr, spec.optimizer == "adam"
        self.steps = torch.zeros(n_guides, dtype=dtype, device=device)
        self.exp_avg = {k: torch.zeros_like(v) for k, v in self.params.items()} if self.adam else {}
        self.exp_avg_sq = {k: torch.zeros_like(v) for k, v in self.params.items()} if self.adam else {}

    def _forward(self, params: dict, F: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        hidden = torch.tanh(torch.einsum("bnd,ndh->bnh", F, _take(params["hidden_weight"], index))
                            + _take(params["hidden_bias"], index))
        return torch.einsum("bnh,nh->bn", hidden, _take(params["out_weight"], index)) + _take(params["out_bias"], index)

    def predict(self, F, index):
        return self._forward(self.params, F, index)

    def _forward_segments(self, params: dict, F: torch.Tensor, level) -> torch.Tensor:
        offset, nodes, span = level
        rows = _segment_rows(F, nodes, span)  # (nodes, span * batch, d)
        take = {k: v[offset:offset + nodes] for k, v in params.items()}
        hidden = torch.tanh(torch.baddbmm(take["hidden_bias"][:, None, :], rows, take["hidden_weight"]))
        out = torch.baddbmm(take["out_bias"][:, None, None], hidden, take["out_weight"][:, :, None])
        return out.view(nodes * span, F.shape[1])

    def predict_segments(self, F, level):
        return self._forward_segments(self.params, F, level)

    def learn_segments(self, levels, F, mask):
        # Level by level, each on its own slice of the guides, so that only one level's
        # intermediate values are alive at a time.
        batch = F.shape[1]
        grads = [torch.zeros_like(v) for v in self.params.values()]
        for level, target in levels:
            offset, nodes, span = level
            params = {k: v[offset:offset + nodes].detach().requires_grad_(True) for k, v in self.params.items()}
            members = mask[:nodes * span].view(nodes, span)
            weight = (members / (members.sum(dim=1, keepdim=True) * batch)).reshape(-1, 1)
            with torch.enable_grad():
                diff = self._forward_segments(params, F, (0, nodes, span)) - target[:nodes * span]
                loss = (diff * diff * weight).sum()  # each node's loss is a mean over its rows
                parts = torch.autograd.grad(loss, list(params.values()))
            for grad, part in zip(grads, parts):
                grad[offset:offset + nodes] = part
        self._step(grads, torch.ones(self.n_guides, dtype=torch.bool, device=F.device), F.dtype)

    def learn(self, levels, F, received):
        params = {k: v.detach().requires_grad_(True) for k, v in self.params.items()}
        with torch.enable_grad():
            loss = 0.0
            for index, target in levels:
                rows = _scatter_sum(torch.ones(F.shape[1], dtype=F.dtype, device=F.device), index, self.n_guides)
                weight = 1.0 / (_take(rows, index) * F.shape[0])  # each guide's loss is a mean over its rows
                loss = loss + (((self._forward(params, F, index) - target) ** 2) * weight).sum()
            grads = torch.autograd.grad(loss, list(params.values()))
        self._step(grads, received, F.dtype)

    def _step(self, grads, received: torch.Tensor, dtype) -> None:
        mask = received.to(dtype)
        self.steps += mask
        for (name, value), grad in zip(self.params.items(), grads):
            shape = (-1,) + (1,) * (value.dim() - 1)
            m = mask.view(shape)
            # A step size per guide (evolving candidates, agents/evolving_guides.py) or one for all.
            lr = self.lr.view(shape) if isinstance(self.lr, torch.Tensor) else self.lr
            if not self.adam:
                value.sub_(grad * (lr * m))
                continue
            # torch.optim.Adam, for the guides that learn (mask 1); the others keep their state.
            beta1, beta2, eps = 0.9, 0.999, 1e-8
            exp_avg, exp_avg_sq = self.exp_avg[name], self.exp_avg_sq[name]
            exp_avg.copy_(torch.where(m > 0, exp_avg + (grad - exp_avg) * (1 - beta1), exp_avg))
            exp_avg_sq.copy_(torch.where(m > 0, exp_avg_sq * beta2 + grad * grad * (1 - beta2), exp_avg_sq))
            steps = self.steps.clamp(min=1.0).view(shape)
            bias1 = 1 - beta1**steps
            bias2_sqrt = torch.sqrt(1 - beta2**steps)
            denom = torch.sqrt(exp_avg_sq) / bias2_sqrt + eps
            value.sub_(torch.where(m > 0, (lr / bias1) * exp_avg / denom, torch.zeros_like(value)))

    def state(self) -> dict[str, torch.Tensor]:
        return dict(self.params)


class ReplayGuides(StackedGuides):
    """Tree (or scikit-learn) guides: one :class:`ReplayGuide` per guide, rows gathered per
    cluster in neuron-id order, as the reference executor delivers them."""

    snapshot_attrs = ("guides",)

    def __init__(self, guides: list):
        super().__init__(len(guides))
        self.guides = guides

    def _groups(self, index: torch.Tensor | None, n: int) -> list[tuple[int, np.ndarray]]:
        if index is None:
            return [(g, np.array([g])) for g in range(n)]
        index = index.cpu().numpy()
        order = np.argsort(index, kind="stable")
        bounds = np.searchsorted(index[order], np.arange(self.n_guides + 1))
        return [(g, order[bounds[g]:bounds[g + 1]]) for g in range(self.n_guides) if bounds[g + 1] > bounds[g]]

    def predict(self, F, index):
        batch, n, d = F.shape
        rows = F.permute(1, 0, 2).cpu().numpy().astype(np.float64)  # (n, batch, d), neuron-major
        out = np.zeros((n, batch))
        for g, members in self._groups(index, n):
            out[members] = self.guides[g].predict(rows[members].reshape(-1, d)).reshape(len(members), batch)
        return torch.as_tensor(out.T, dtype=F.dtype, device=F.device)

    def learn(self, levels, F, received):
        batch, n, d = F.shape
        rows = F.permute(1, 0, 2).cpu().numpy().astype(np.float64)
        for index, target in levels:
            targets = target.T.cpu().numpy().astype(np.float64)
            for g, members in self._groups(index, n):
                self.guides[g].partial_fit(rows[members].reshape(-1, d), targets[members].reshape(-1))

    def refit(self) -> None:
        for guide in self.guides:
            guide.refit()


def _segment_rows(values: torch.Tensor, nodes: int, span: int) -> torch.Tensor:
    """(padded, batch, d) in tree order, neuron-major -> (nodes, span * batch, d): each node's
    rows, a view (the neurons under a node are consecutive)."""
    return values[:nodes * span].reshape(nodes, span * values.shape[1], values.shape[2])


def make_stacked_guides(guided, estimator, device, dtype) -> StackedGuides:
    """The stacked guides of a guided population (see :func:`ribbed.agents.guides.make_guides`
    for the per-guide ones they agree with)."""
    spec, n_guides = guided.guide, guided.coupling.n_guides
    if spec.kind == "linear":
        return StackedLinear(spec, n_guides, guided.n_features, device, dtype)
    if spec.kind == "mlp":
        return StackedMLP(spec, n_guides, guided.n_features, guided.guide_rng(), device, dtype)
    return ReplayGuides(make_guides(spec, n_guides, guided.n_features, guided.guide_rng(), estimator))

