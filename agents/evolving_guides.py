"""Evolving guides in the executors: the candidates behind every guide, predicting and learning.

A guide with ``evolution`` is a population of candidate guides (docs/semantics.md, "Evolving
guides"). Their genomes, scores and generations live in shared code
(:class:`ribbed.meta.evolution.EvolutionState`); this module holds their parameters and does
their arithmetic, twice, as the other guides do:

- :class:`EvolvingGuide`, one per guide in the reference executor: one
  :class:`~ribbed.agents.guides.LinearGuide` or :class:`~ribbed.agents.guides.MLPGuide` per
  candidate, fed the feature rows times the candidate's mask;
- :class:`StackedEvolving`, one per population in the batched executor: every (guide, candidate)
  slot of a kind in one :class:`~ribbed.agents.stacked_guides.StackedLinear` or
  :class:`~ribbed.agents.stacked_guides.StackedMLP`, the masks a multiplicative feature mask.

Both score each candidate on the rows of a delivery with its prediction made before it learns
from them (prequential), and serve the prediction of the candidate the shared state names.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from ribbed.agents.guides import LinearGuide, MLPGuide, forget_statistics, ridge_coefficients
from ribbed.agents.stacked_guides import StackedGuides, StackedLinear, StackedMLP, _scatter_sum
from ribbed.meta.evolution import Births, EvolutionState

__all__ = ["EvolvingGuide", "StackedEvolving", "make_evolving_guides"]


# --------------------------------------------------------------------------- reference


class EvolvingGuide:
    """The candidates of one guide (reference executor), with the sklearn-style ``predict`` /
    ``partial_fit`` a :class:`~ribbed.agents.cluster.ClusterAgent` calls."""

    #: What a snapshot saves (scheduler/state.py): the genome of each slot, to rebuild the
    #: candidates before their parameters are restored, then the candidates.
    snapshot_attrs = ("kinds", "lrs", "candidates")

    def __init__(self, state: EvolutionState, row: int):
        self.state, self.row = state, row
        self.kinds = state.kind[row].copy()
        self.lrs = state.lr[row].copy()
        self.candidates: list = [None] * state.k

    def _fresh(self, kind: int, lr: float, weights: np.ndarray | None):
        settings = self.state.settings[kind]
        if settings.name == "linear":
            return LinearGuide(ridge=settings.ridge, forget=1.0 - lr)
        if weights is None:
            weights = np.zeros((self.state.n_features, settings.hidden))
        guide = MLPGuide(hidden=settings.hidden, lr=lr, optimizer=settings.optimizer, init=weights)
        guide._initialize(self.state.n_features)  # built now, so a snapshot holds it before its first fit
        return guide

    def born(self, slot: int, weights: np.ndarray | None) -> None:
        """A new candidate in ``slot``, of the genome the shared state now holds there."""
        self.kinds[slot] = self.state.kind[self.row, slot]
        self.lrs[slot] = self.state.lr[self.row, slot]
        self.candidates[slot] = self._fresh(int(self.kinds[slot]), float(self.lrs[slot]), weights)

    def before_load(self, tree: dict) -> None:
        kinds, lrs = np.asarray(tree["kinds"][0]), np.asarray(tree["lrs"][0])
        self.candidates = [self._fresh(int(kind), float(lr), None) for kind, lr in zip(kinds, lrs)]

    def _masked(self, X: np.ndarray, slot: int) -> np.ndarray:
        return np.asarray(X, dtype=np.float64) * self.state.mask[self.row, slot]

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The serving candidate's prediction."""
        slot = int(self.state.serving()[self.row])
        return self.candidates[slot].predict(self._masked(X, slot))

    def partial_fit(self, X: np.ndarray, y: np.ndarray) -> EvolvingGuide:
        """Score every candidate on these rows (predicting before learning), then let each learn."""
        y = np.asarray(y, dtype=np.float64)
        masked = [self._masked(X, slot) for slot in range(self.state.k)]
        errors = np.array([((c.predict(m) - y) ** 2).sum() for c, m in zip(self.candidates, masked)]) / len(y)
        self.state.observe(np.array([self.row]), errors[None], np.array([(y * y).sum() / len(y)]))
        for candidate, rows in zip(self.candidates, masked):
            candidate.partial_fit(rows, y)
        return self

    def refit(self) -> EvolvingGuide:
        return self


def apply_births(guides: list[EvolvingGuide], births: Births) -> None:
    """Reset the candidates a generation created (reference executor), in guide, then slot order,
    taking the mlp ones' first layers in that order."""
    mlp_weights = iter(births.mlp_weights)
    state = guides[0].state if guides else None
    for g, slot in zip(births.guides.tolist(), births.slots.tolist()):
        is_mlp = state.settings[state.kind[g, slot]].name == "mlp"
        guides[g].born(slot, next(mlp_weights) if is_mlp else None)


def make_evolving_guides(guided) -> tuple[EvolutionState, list[EvolvingGuide]]:
    """Generation 0 of a guided population's candidates, as reference guides."""
    state, births = guided.initial_evolution()
    guides = [EvolvingGuide(state, g) for g in range(state.n_guides)]
    apply_births(guides, births)
    return state, guides


# --------------------------------------------------------------------------- batched


class _SlotLinear(StackedLinear):
    """:class:`StackedLinear` whose slots forget at rates of their own (``forget``: (slots,))."""

    def learn(self, levels, F, received):
        gram = torch.zeros_like(self.gram)
        moment = torch.zeros_like(self.moment)
        ones = torch.ones(F.shape[:2] + (1,), dtype=F.dtype, device=F.device)
        Fa = torch.cat([F, ones], dim=2)
        per_row = torch.einsum("bnd,bne->nde", Fa, Fa)
        for index, target in levels:
            gram += _scatter_sum(per_row, index, self.n_guides)
            moment += _scatter_sum(torch.einsum("bnd,bn->nd", Fa, target), index, self.n_guides)
        rows = torch.nonzero(received).squeeze(1)
        forget = self.forget[rows]
        self.gram[rows] = forget_statistics(self.gram[rows], gram[rows], forget[:, None, None], torch)
        self.moment[rows] = forget_statistics(self.moment[rows], moment[rows], forget[:, None], torch)
        self.coef[rows] = ridge_coefficients(self.gram[rows], self.moment[rows], self.ridge, torch)

    def reset(self, slots: torch.Tensor) -> None:
        for tensor in (self.gram, self.moment, self.coef):
            tensor[slots] = 0.0


def _reset_mlp(mlp: StackedMLP, slots: torch.Tensor, weights: torch.Tensor, mlp_slots: torch.Tensor) -> None:
    for name, value in mlp.params.items():
        value[slots] = 0.0
        if mlp.adam:
            mlp.exp_avg[name][slots] = 0.0
            mlp.exp_avg_sq[name][slots] = 0.0
    mlp.params["hidden_weight"][mlp_slots] = weights
    mlp.steps[slots] = 0.0


class StackedEvolving(StackedGuides):
    """The candidates of every guide of a population (batched executor): slot ``g k + c`` is
    candidate c of guide g in each kind's stacked model; a slot learns only in its own kind's."""

    snapshot_attrs = ("state", "linear", "mlp")

    def __init__(self, guided, device, dtype):
        state, births = guided.initial_evolution()
        super().__init__(state.n_guides)
        self.state, self.device, self.dtype = state, device, dtype
        slots, d = state.n_guides * state.k, state.n_features
        self.linear = self.mlp = None
        for index, settings in enumerate(state.settings):
            if settings.name == "linear":
                self.linear = _SlotLinear(SimpleNamespace(ridge=settings.ridge, forget=0.0), slots, d, device, dtype)
                self._linear_index = index
            else:
                spec = SimpleNamespace(hidden=settings.hidden, lr=settings.lr, optimizer=settings.optimizer)
                self.mlp = StackedMLP(spec, slots, d, np.random.default_rng(0), device, dtype)  # all reset below
                self._mlp_index = index
        self._apply(births)

    def _sync(self) -> None:
        """Tensors derived from the genomes: each slot's kind, mask, lr and forgetting factor."""
        state = self.state
        self.slot_kind = torch.as_tensor(state.kind.reshape(-1), device=self.device)
        self.masks = torch.as_tensor(state.mask, dtype=self.dtype, device=self.device)
        if self.linear is not None:
            self.linear.forget = torch.as_tensor(state.forget().reshape(-1), dtype=self.dtype, device=self.device)
        if self.mlp is not None:
            self.mlp.lr = torch.as_tensor(state.lr.reshape(-1), dtype=self.dtype, device=self.device)

    def after_load(self) -> None:
        self._sync()

    def _apply(self, births: Births) -> None:
        """Fresh parameters for the slots born in a generation."""
        state = self.state
        flat = births.guides * state.k + births.slots
        slots = torch.as_tensor(flat, device=self.device)
        if self.linear is not None:
            self.linear.reset(slots)
        if self.mlp is not None:
            is_mlp = state.kind[births.guides, births.slots] == self._mlp_index
            weights = torch.as_tensor(births.mlp_weights, dtype=self.dtype, device=self.device)
            _reset_mlp(self.mlp, slots, weights, torch.as_tensor(flat[is_mlp], device=self.device))
        self._sync()

    def evolve(self) -> None:
        """A generation boundary: the shared step, then fresh parameters for the newborn."""
        self._apply(self.state.next_generation())

    def _candidates(self, F: torch.Tensor, index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor,
                                                                                   torch.Tensor]:
        """Every candidate's prediction for every neuron, (batch, n, k), with the masked rows
        (batch, n k, d) and the slot of each (n k,)."""
        batch, n, d = F.shape
        k = self.state.k
        guide = torch.arange(n, device=F.device) if index is None else index
        slots = (guide[:, None] * k + torch.arange(k, device=F.device)).reshape(-1)
        rows = (F[:, :, None, :] * self.masks.index_select(0, guide)[None]).reshape(batch, n * k, d)
        out = torch.zeros(batch, n * k, dtype=F.dtype, device=F.device)
        kinds = self.slot_kind.index_select(0, slots)
        if self.linear is not None:
            out = torch.where(kinds == self._linear_index, self.linear.predict(rows, slots), out)
        if self.mlp is not None:
            out = torch.where(kinds == self._mlp_index, self.mlp.predict(rows, slots), out)
        return out.view(batch, n, k), rows, slots

    def predict(self, F, index):
        predictions, _, _ = self._candidates(F, index)
        serving = torch.as_tensor(self.state.serving(), device=F.device)
        guide = torch.arange(F.shape[1], device=F.device) if index is None else index
        choice = serving.index_select(0, guide)
        return predictions.gather(2, choice[None, :, None].expand(F.shape[0], -1, 1)).squeeze(2)

    def learn(self, levels, F, received):
        state, k = self.state, self.state.k
        error = torch.zeros(state.n_guides, k, dtype=F.dtype, device=F.device)
        square = torch.zeros(state.n_guides, dtype=F.dtype, device=F.device)
        rows = torch.zeros(state.n_guides, dtype=F.dtype, device=F.device)
        learning = []
        for index, target in levels:
            predictions, masked, slots = self._candidates(F, index)  # before anyone learns
            guide = torch.arange(F.shape[1], device=F.device) if index is None else index
            error.index_add_(0, guide, ((predictions - target[:, :, None]) ** 2).sum(dim=0))
            square.index_add_(0, guide, (target * target).sum(dim=0))
            rows.index_add_(0, guide, torch.full_like(target[0], float(target.shape[0])))
            here = torch.zeros(state.n_guides, dtype=torch.bool, device=F.device)
            here[guide] = True
            learning.append((slots, target.repeat_interleave(k, dim=1), masked, (here & received).repeat_interleave(k)))
        seen = (rows > 0).cpu().numpy()
        count = rows.clamp(min=1.0)
        state.observe(np.nonzero(seen)[0], (error / count[:, None]).cpu().numpy()[seen],
                      (square / count).cpu().numpy()[seen])
        for slots, target, masked, where in learning:
            if self.linear is not None:
                self.linear.learn([(slots, target)], masked, where & (self.slot_kind == self._linear_index))
            if self.mlp is not None:
                self.mlp.learn([(slots, target)], masked, where & (self.slot_kind == self._mlp_index))
