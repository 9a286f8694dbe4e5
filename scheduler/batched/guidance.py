"""Guided learning in the batched executor: the guide and meta stages of one population as
tensor operations.

It computes what the reference executor's messages compute (docs/semantics.md, "Guided
learning"): features ``[u, y, f'(u), context, f'(u) context]`` of every neuron, the guides' predictions summed
along each neuron's path, the guides' updates from the true credit (each level learning the
residual of the levels above), the meta units' alpha, and the credit each neuron learns from.
Regrouping runs the coupling's shared numpy code on the signatures.
"""

from __future__ import annotations

import numpy as np
import torch

from ribbed.agents.guides import guide_features, identity_features
from ribbed.agents.rules import guided_credit
from ribbed.agents.evolving_guides import StackedEvolving
from ribbed.agents.stacked_guides import make_stacked_guides
from ribbed.environment.guidance import GuidedPopulation
from ribbed.meta.hierarchy import Hierarchy, hierarchy_reads

__all__ = ["BatchedGuidance"]


class BatchedGuidance:
    """The guides, coupling state and meta state of one guided population."""

    #: What a snapshot saves (scheduler/state.py).
    snapshot_attrs = ("guides", "signature", "meta_state", "unit_alpha", "alpha", "paths")

    def after_load(self) -> None:
        self.assign(self.paths)

    def __init__(self, guided: GuidedPopulation, estimator, device: torch.device, dtype: torch.dtype):
        self.guided = guided
        self.coupling = guided.coupling
        self.controller = guided.controller
        self.device, self.dtype = device, dtype
        self.guides = (StackedEvolving(guided, device, dtype) if guided.evolution is not None
                       else make_stacked_guides(guided, estimator, device, dtype))
        size = guided.population.size
        self.signature = (torch.zeros(size, 1 + guided.n_context, dtype=dtype, device=device)
                          if self.coupling.regroup_every else None)
        self.meta_state = {name: torch.full((self.coupling.n_units,), value, dtype=dtype, device=device)
                           for name, value in self.controller.initial_state().items()}
        self.unit_alpha = torch.full((self.coupling.n_units,), self.controller.initial_alpha(), dtype=dtype,
                                     device=device)
        self._sums = torch.zeros(5, self.coupling.n_units, dtype=dtype, device=device)
        self.alpha = torch.full((size,), self.controller.initial_alpha(), dtype=dtype, device=device)
        self.guidance: torch.Tensor | None = None  # (batch, n): the sum of each neuron's path
        self.features: torch.Tensor | None = None
        #: The weights of the identity features (see :meth:`see_weights`), or None without them.
        self.identity: tuple[torch.Tensor, torch.Tensor | None] | None = None
        #: The second level of meta units, or None (docs/semantics.md, "Hierarchical meta units").
        self.hierarchy = (Hierarchy(guided.hierarchy, self.controller, self.coupling.n_units)
                          if guided.hierarchy is not None else None)
        if self.hierarchy is not None:
            self.snapshot_attrs = BatchedGuidance.snapshot_attrs + ("hierarchy",)
        #: This tick's per-row means of credit and activity per unit (B, U), and the units with
        #: members, when credit was delivered and a hierarchy wants them.
        self._profile: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._tick = 0
        self.assign(self.coupling.initial_paths())

    def assign(self, paths: np.ndarray) -> None:
        self.paths = paths
        direct = self.coupling.kind == "direct"
        self.index = [None if direct else torch.as_tensor(paths[:, level], device=self.device)
                      for level in range(paths.shape[1])]
        self.units = torch.as_tensor(self.coupling.units(paths), device=self.device)
        if self.coupling.kind == "tree" and hasattr(self.guides, "predict_segments"):
            # Tree order: the neurons under each node are consecutive, so every level is a batch of
            # equal segments and needs no gather (neurons sorted by leaf; the tail is padding).
            coupling = self.coupling
            order = np.argsort(coupling.units(paths), kind="stable")
            self.order = torch.as_tensor(order, device=self.device)
            self.positions = torch.as_tensor(np.argsort(order), device=self.device)
            self.levels = [(int(coupling.offsets[l]), coupling.level_sizes[l], coupling.spans[l])
                           for l in range(coupling.depth)]
            self.padded = coupling.spans[0]
            self.mask = torch.zeros(self.padded, dtype=self.dtype, device=self.device)
            self.mask[:len(order)] = 1.0
        else:
            self.levels = None

    def see_weights(self, weights_of) -> None:
        """Take the current outgoing weights for the identity features (``weights_of(projection)``:
        its weights in canonical order), before the guide stage and before a held-out
        prediction; nothing to do without ``identity: [weights]``."""
        weights = self.guided.identity_weights(weights_of)
        if weights is not None:
            self.identity = tuple(None if w is None else torch.as_tensor(w, dtype=self.dtype, device=self.device)
                                  for w in weights)

    def features_of(self, u: torch.Tensor, y: torch.Tensor, derivative: torch.Tensor,
                    context: torch.Tensor) -> torch.Tensor:
        """(batch, n, n_features): ``[u, y, f'(u), context, f'(u) context]`` per neuron and
        sample, as :func:`ribbed.agents.guides.guide_features`, then the identity features
        (:func:`ribbed.agents.guides.identity_features`) when the guide asks for them."""
        features = guide_features(u, y, derivative, context)
        if self.identity is None:
            return features
        return torch.cat([features, identity_features(*self.identity, derivative, context.to(derivative.dtype))], dim=2)

    def predict(self, u: torch.Tensor, y: torch.Tensor, derivative: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """The guidance for these activities and context under the current paths, without learning."""
        return self._sum(self._parts(self.features_of(u, y, derivative, context)))

    def _tree_order(self, values: torch.Tensor) -> torch.Tensor:
        """(batch, n, ...) -> (padded, batch, ...): neurons in tree order, neuron-major, so that
        the neurons under every node of every level form one contiguous block."""
        out = values.new_zeros((self.padded, values.shape[0]) + values.shape[2:])
        out[:values.shape[1]] = values.index_select(1, self.order).transpose(0, 1)
        return out

    def _parts(self, F: torch.Tensor) -> list[torch.Tensor]:
        """Each level's predictions, root first: (batch, n), or (padded, batch) in tree order."""
        if self.levels is None:
            return [self.guides.predict(F, index) for index in self.index]
        F = self._tree_order(F)
        parts = []
        for level in self.levels:
            part = self.guides.predict_segments(F, level)
            parts.append(torch.nn.functional.pad(part, (0, 0, 0, self.padded - part.shape[0])))
        return parts

    def _sum(self, parts: list[torch.Tensor]) -> torch.Tensor:
        guidance = parts[0]
        for part in parts[1:]:  # root first, as a reference neuron sums its answers
            guidance = guidance + part
        return guidance if self.levels is None else guidance.index_select(0, self.positions).T

    def guide_stage(self, tick: int, u: torch.Tensor, y: torch.Tensor, derivative: torch.Tensor,
                    context: torch.Tensor, delta: torch.Tensor | None) -> None:
        F = self.features = self.features_of(u, y, derivative, context)
        self._tick, self._profile = tick, None
        if self.signature is not None:
            now = torch.cat([y.mean(dim=0)[:, None], torch.mm(y.T, context) / y.shape[0]], dim=1)
            self.signature += self.coupling.signature_decay * (now - self.signature)
            if self.coupling.regroups_at(tick):
                self.assign(self.coupling.regroup(self.signature.cpu().numpy().astype(np.float64), self.paths))
        parts = self._parts(F)
        self.guidance = self._sum(parts)
        self._sums.zero_()
        if delta is not None:
            # Each level learns the residual the levels above it leave.
            target = delta if self.levels is None else self._tree_order(delta)
            levels, above = [], torch.zeros_like(target)
            for where, part in zip(self.levels or self.index, parts):
                levels.append((where, target - above))
                above = above + part
            if self.levels is None:
                received = torch.zeros(self.guides.n_guides, dtype=torch.bool, device=self.device)
                for index in self.index:
                    received[torch.arange(self.guides.n_guides, device=self.device) if index is None else index] = True
                self.guides.learn(levels, F, received)
            else:  # every node of the tree serves someone
                self.guides.learn_segments(levels, self._tree_order(F), self.mask)
            g = self.guidance
            count = torch.full_like(g[0], float(delta.shape[0]))
            sums = (((g - delta) ** 2).sum(dim=0), (delta * delta).sum(dim=0), (g * delta).sum(dim=0),
                    (g * g).sum(dim=0), count)
            for row, values in enumerate(sums):
                self._sums[row].index_add_(0, self.units, values)
            if self.hierarchy is not None:
                self._profile = self._profile_of(delta, y)
        if self.guided.refits_at(tick):
            self.guides.refit()
        if self.guided.evolution is not None and self.guides.state.generation_at(tick):
            self.guides.evolve()

    def _profile_of(self, delta: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per unit and batch row, the mean over its members of the credit and of the activity (B, U),
        and which units have members (as float64 numpy, for the shared hierarchy code)."""
        n_units = self.coupling.n_units
        members = torch.zeros(n_units, dtype=self.dtype, device=self.device)
        members.index_add_(0, self.units, torch.ones_like(self.units, dtype=self.dtype))
        means = []
        for values in (delta, y):
            total = torch.zeros(values.shape[0], n_units, dtype=self.dtype, device=self.device)
            total.index_add_(1, self.units, values.to(self.dtype))
            means.append((total / members.clamp(min=1.0)).cpu().numpy().astype(np.float64))
        return means[0], means[1], (members > 0).cpu().numpy()

    def lineage(self) -> dict[str, np.ndarray] | None:
        """Per neuron, its meta unit's serving candidate (see EvolutionState.lineage), or None
        when the guides do not evolve."""
        if self.guided.evolution is None:
            return None
        return self.guides.state.lineage(self.paths[:, -1])

    def credit(self, delta: torch.Tensor | None) -> torch.Tensor:
        """(1 - alpha) delta + alpha guidance; alpha guidance when no true credit arrived."""
        return guided_credit(delta, self.guidance, self.alpha)

    def meta_stage(self, loss: torch.Tensor) -> None:
        *sums, count = self._sums
        received = (count > 0).to(self.dtype)
        count = count.clamp(min=1.0)
        stats = dict(zip(("error", "square", "cross", "guide_square"), (s / count for s in sums)))
        self.unit_alpha = self.controller.update(self.meta_state, stats, received, loss.to(self.dtype), torch)
        sent = self.unit_alpha
        hierarchy = self.hierarchy
        if hierarchy is not None:
            if self._profile is not None:
                hierarchy.observe(*self._profile)
            group_alpha = hierarchy.update(self._sums.cpu().numpy().astype(np.float64), float(loss))
            sent = hierarchy.blend(self.unit_alpha, torch.as_tensor(group_alpha, dtype=self.dtype, device=self.device))
            if hierarchy.regroups_at(self._tick):
                hierarchy.regroup({name: value.cpu().numpy().astype(np.float64)
                                   for name, value in self.meta_state.items()})
        # Each neuron keeps the alpha its unit sent it until the next meta stage, even if a
        # regrouping moves it to another unit in between.
        self.alpha = sent.index_select(0, self.units)

    def hierarchy_reads(self) -> dict[str, np.ndarray] | None:
        """``meta_group`` per neuron (its unit's group), ``group_alpha`` per guide (its unit's group's
        alpha, NaN for guides that are no unit), and the hierarchy's summary; None without one."""
        if self.hierarchy is None:
            return None
        return hierarchy_reads(self.hierarchy, self.coupling, self.paths)

    def state(self) -> dict[str, np.ndarray]:
        """Each neuron's alpha and meta unit, and the last tick's guidance (batch, n)."""
        return {"alpha": self.alpha.cpu().numpy().astype(np.float64),
                "cluster": self.coupling.units(self.paths),
                "guidance": None if self.guidance is None else self.guidance.cpu().numpy().astype(np.float64)}
