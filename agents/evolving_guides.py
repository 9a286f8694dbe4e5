"""Evolving guides in the executors: the candidates behind every guide, predicting and learning.

A guide with ``evolution`` is a population of candidate guides (docs/semantics.md, "Evolving
guides"). Their genomes, scores and generations live in shared code
(:class:`ribbed.meta.evolution.EvolutionState`); this module holds their parameters and does
their arithmetic, twice, as the other guides do:

- :class:`EvolvingGuide`, one per guide in the reference executor: one
  :class:`~ribbed.agents.guides.LinearGuide`, :class:`~ribbed.agents.guides.MLPGuide` or
  :class:`CandidateTree` per candidate, fed the feature rows times the candidate's mask;
- :class:`StackedEvolving`, one per population in the batched executor: every (guide, candidate)
  slot of a kind in one :class:`~ribbed.agents.stacked_guides.StackedLinear` or
  :class:`~ribbed.agents.stacked_guides.StackedMLP`, the masks a multiplicative feature mask; tree
  candidates cannot be stacked, so they stay a list of :class:`CandidateTree` per slot, predicting
  in a loop over the tree slots.

Tree candidates are scikit-learn's DecisionTreeRegressor with the tree guide's arithmetic: each
guide keeps one FIFO :class:`TreeBuffer` of its delivered rows in float32 (shared by its tree
candidates), and at a refit every tree candidate fits a fresh tree on the buffer times its mask.
Both executors hand sklearn the same float32 numbers in the same row order, so they fit the same
trees.

Both score each candidate on the rows of a delivery with its prediction made before it learns
from them (prequential), and serve the prediction of the candidate the shared state names.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from sklearn.tree import DecisionTreeRegressor

from ribbed.agents.guides import LinearGuide, MLPGuide
from ribbed.agents.stacked_guides import StackedGuides, StackedLinear, StackedMLP
from ribbed.meta.evolution import Births, EvolutionState, KindSettings

__all__ = ["CandidateTree", "EvolvingGuide", "StackedEvolving", "TreeBuffer", "make_evolving_guides"]


# --------------------------------------------------------------------------- tree candidates


class TreeBuffer:
    """One guide's FIFO buffer of its delivered rows (features, target), in float32 as a tree
    guide keeps them (:class:`~ribbed.agents.guides.ReplayGuide`), shared by its tree candidates.

    ``fitted_X`` / ``fitted_y`` are the buffer as it was at the last refit (``add`` replaces the
    arrays, so no copy): a snapshot keeps them, and restoring refits the same trees from them."""

    snapshot_attrs = ("X", "y", "fitted_X", "fitted_y")

    def __init__(self, size: int, n_features: int):
        self.size = size
        self.X = np.zeros((0, n_features), dtype=np.float32)
        self.y = np.zeros(0, dtype=np.float32)
        self.fitted_X = self.fitted_y = None

    def add(self, X: np.ndarray, y: np.ndarray) -> None:
        """Append delivered rows; the oldest leave once it holds ``size`` rows."""
        self.X = np.concatenate([self.X, np.asarray(X, dtype=np.float32)])[-self.size:]
        self.y = np.concatenate([self.y, np.asarray(y, dtype=np.float32)])[-self.size:]

    def refit(self, trees: list[CandidateTree]) -> None:
        """Fit every tree candidate of the guide on the buffer (nothing while it is empty)."""
        if not len(self.X):
            return
        self.fitted_X, self.fitted_y = self.X, self.y
        for tree in trees:
            tree.fit(self.X, self.y)

    def restore(self, trees: list[CandidateTree]) -> None:
        """After a snapshot is loaded: fit again the trees that were fitted, on the buffer of the last
        refit (a tree candidate is fitted at every refit of its life, so that was its last fit)."""
        for tree in trees:
            if tree.fitted:
                tree.fit(self.fitted_X, self.fitted_y)


class CandidateTree:
    """A tree candidate: a fresh DecisionTreeRegressor (the tree guide's ``max_depth`` and
    ``min_samples_leaf``, ``random_state`` 0) fitted on its guide's buffer times its mask at each
    refit; it predicts 0 until its first fit."""

    snapshot_attrs = ("mask", "fitted")

    def __init__(self, settings: KindSettings, mask: np.ndarray):
        self.settings = settings
        self.mask = np.asarray(mask, dtype=bool).copy()
        self.fitted = False
        self.model = None

    def fit(self, X: np.ndarray, y: np.ndarray) -> None:
        settings = self.settings
        self.model = DecisionTreeRegressor(max_depth=settings.max_depth, min_samples_leaf=settings.min_samples_leaf,
                                           random_state=0).fit(X * self.mask.astype(np.float32), y)
        self.fitted = True

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if self.model is None:
            return np.zeros(X.shape[0])
        return np.asarray(self.model.predict(X * self.mask.astype(np.float32)), dtype=np.float64)

    def partial_fit(self, X: np.ndarray, y: np.ndarray) -> CandidateTree:
        """Nothing: a tree learns from its guide's buffer at the refits."""
        return self


# --------------------------------------------------------------------------- reference


class EvolvingGuide:
    """The candidates of one guide (reference executor), with the sklearn-style ``predict`` /
    ``partial_fit`` a :class:`~ribbed.agents.cluster.ClusterAgent` calls."""

    #: What a snapshot saves (scheduler/state.py): the genome of each slot, to rebuild the
    #: candidates before their parameters are restored, then the candidates, and the tree buffer.
    snapshot_attrs = ("kinds", "lrs", "candidates", "buffer")

    def __init__(self, state: EvolutionState, row: int):
        self.state, self.row = state, row
        self.kinds = state.kind[row].copy()
        self.lrs = state.lr[row].copy()
        self.candidates: list = [None] * state.k
        tree = _tree_settings(state)
        self.buffer = TreeBuffer(tree.buffer, state.n_features) if tree is not None else None

    def _fresh(self, kind: int, lr: float, weights: np.ndarray | None, mask: np.ndarray | None = None):
        settings = self.state.settings[kind]
        if settings.name == "linear":
            return LinearGuide(ridge=settings.ridge, forget=1.0 - lr)
        if settings.name == "tree":
            return CandidateTree(settings, mask)
        if weights is None:
            weights = np.zeros((self.state.n_features, settings.hidden))
        guide = MLPGuide(hidden=settings.hidden, lr=lr, optimizer=settings.optimizer, init=weights)
        guide._initialize(self.state.n_features)  # built now, so a snapshot holds it before its first fit
        return guide

    def born(self, slot: int, weights: np.ndarray | None) -> None:
        """A new candidate in ``slot``, of the genome the shared state now holds there."""
        self.kinds[slot] = self.state.kind[self.row, slot]
        self.lrs[slot] = self.state.lr[self.row, slot]
        self.candidates[slot] = self._fresh(int(self.kinds[slot]), float(self.lrs[slot]), weights,
                                            self.state.mask[self.row, slot])

    def before_load(self, tree: dict) -> None:
        kinds, lrs = np.asarray(tree["kinds"][0]), np.asarray(tree["lrs"][0])
        stored = tree.get("candidates", {})
        self.candidates = [self._fresh(int(kind), float(lr), None, _stored_mask(stored, slot))
                           for slot, (kind, lr) in enumerate(zip(kinds, lrs))]

    def after_load(self) -> None:
        if self.buffer is not None:
            self.buffer.restore(self._trees())

    def _trees(self) -> list[CandidateTree]:
        return [c for c in self.candidates if isinstance(c, CandidateTree)]

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
        if self.buffer is not None:
            self.buffer.add(X, y)
        return self

    def refit(self) -> EvolvingGuide:
        """At a refit tick: every tree candidate fits a fresh tree on the buffer times its mask."""
        if self.buffer is not None:
            self.buffer.refit(self._trees())
        return self


def _stored_mask(stored: dict, key: int) -> np.ndarray | None:
    """The mask a snapshot holds for the tree candidate at ``key`` of a list, or None."""
    item = stored.get(str(key))
    return np.asarray(item["mask"][0]) if isinstance(item, dict) and "mask" in item else None


def _tree_settings(state: EvolutionState) -> KindSettings | None:
    """The tree kind's settings, or None when ``kinds`` has no tree."""
    return next((s for s in state.settings if s.name == "tree"), None)


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

    def _forget(self, rows: torch.Tensor) -> tuple:
        forget = self.forget[rows]
        return forget[:, None, None], forget[:, None]

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

    snapshot_attrs = ("state", "linear", "mlp", "trees", "buffers")

    def __init__(self, guided, device, dtype):
        state, births = guided.initial_evolution()
        super().__init__(state.n_guides)
        self.state, self.device, self.dtype = state, device, dtype
        slots, d = state.n_guides * state.k, state.n_features
        self.linear = self.mlp = None
        #: Tree candidates (slot g k + c, None where the slot is of another kind) and each guide's
        #: buffer; None without a tree kind.
        self.trees: list[CandidateTree | None] | None = None
        self.buffers: list[TreeBuffer] | None = None
        self._tree_index = -1
        for index, settings in enumerate(state.settings):
            if settings.name == "tree":
                self.trees = [None] * slots
                self.buffers = [TreeBuffer(settings.buffer, d) for _ in range(state.n_guides)]
                self._tree_index = index
            elif settings.name == "linear":
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

    def before_load(self, tree: dict) -> None:
        if self.trees is not None:
            stored = tree.get("trees", {})
            self.trees = [None if _stored_mask(stored, slot) is None
                          else CandidateTree(self.state.settings[self._tree_index], _stored_mask(stored, slot))
                          for slot in range(len(self.trees))]

    def after_load(self) -> None:
        self._sync()
        if self.trees is not None:
            for g, buffer in enumerate(self.buffers):
                buffer.restore(self._guide_trees(g))

    def _guide_trees(self, guide: int) -> list[CandidateTree]:
        k = self.state.k
        return [t for t in self.trees[guide * k:(guide + 1) * k] if t is not None]

    def refit(self) -> None:
        """At a refit tick: every tree candidate fits a fresh tree on its guide's buffer times its mask."""
        if self.trees is not None:
            for g, buffer in enumerate(self.buffers):
                buffer.refit(self._guide_trees(g))

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
        if self.trees is not None:
            for g, c, slot in zip(births.guides.tolist(), births.slots.tolist(), flat.tolist()):
                self.trees[slot] = (CandidateTree(state.settings[self._tree_index], state.mask[g, c])
                                    if state.kind[g, c] == self._tree_index else None)
        self._sync()

    def evolve(self) -> None:
        """A generation boundary: the shared step, then fresh parameters for the newborn."""
        self._apply(self.state.next_generation())

    def _candidates(self, F: torch.Tensor, index: torch.Tensor | None,
                    only: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every candidate's prediction for every neuron, (batch, n, k), with the masked rows
        (batch, n k, d) and the slot of each (n k,); with ``only`` (a bool per slot), the tree
        candidates outside it are not asked (their entries are 0)."""
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
        if self.trees is not None:
            out = torch.where(kinds == self._tree_index, self._tree_predictions(rows, slots, only), out)
        return out.view(batch, n, k), rows, slots

    def _tree_predictions(self, rows: torch.Tensor, slots: torch.Tensor, only: np.ndarray | None) -> torch.Tensor:
        """The fitted tree candidates' predictions (batch, n k) of the masked rows, a loop over the
        tree slots (0 for the others and the unfitted trees)."""
        batch, columns, d = rows.shape
        out = np.zeros((columns, batch))
        slot_of = slots.cpu().numpy()
        asked = [s for s in np.unique(slot_of).tolist()
                 if self.trees[s] is not None and self.trees[s].fitted and (only is None or only[s])]
        if asked:
            X = rows.permute(1, 0, 2).cpu().numpy()  # (n k, batch, d), neuron-major
            for slot in asked:
                where = np.nonzero(slot_of == slot)[0]
                out[where] = self.trees[slot].predict(X[where].reshape(-1, d)).reshape(len(where), batch)
        return torch.as_tensor(out.T, dtype=rows.dtype, device=rows.device)

    def predict(self, F, index):
        serving = self.state.serving()
        only = None
        if self.trees is not None:  # only the serving tree candidates need to predict here
            only = np.zeros(self.state.n_guides * self.state.k, dtype=bool)
            only[np.arange(self.state.n_guides) * self.state.k + serving] = True
        predictions, _, _ = self._candidates(F, index, only)
        serving = torch.as_tensor(serving, device=F.device)
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
        if self.buffers is not None:
            self._buffer(levels, F)
        for slots, target, masked, where in learning:
            if self.linear is not None:
                self.linear.learn([(slots, target)], masked, where & (self.slot_kind == self._linear_index))
            if self.mlp is not None:
                self.mlp.learn([(slots, target)], masked, where & (self.slot_kind == self._mlp_index))

    def _buffer(self, levels, F: torch.Tensor) -> None:
        """Every guide's delivered rows into its tree buffer, neuron-major in neuron-id order, as the
        reference executor's feedback messages arrive (so both buffers hold the same rows in the
        same order)."""
        batch, n, d = F.shape
        rows = F.permute(1, 0, 2).cpu().numpy().astype(np.float64)
        for index, target in levels:
            targets = target.T.cpu().numpy().astype(np.float64)
            guide = np.arange(n) if index is None else index.cpu().numpy()
            order = np.argsort(guide, kind="stable")
            bounds = np.searchsorted(guide[order], np.arange(self.state.n_guides + 1))
            for g in range(self.state.n_guides):
                members = order[bounds[g]:bounds[g + 1]]
                if len(members):
                    self.buffers[g].add(rows[members].reshape(-1, d), targets[members].reshape(-1))
