"""Hierarchical meta units: a second-level meta-controller over groups of first-level meta units.

The first-level meta units (hash buckets, tree leaves) each set their members' alpha from what
their guidance got right (meta/controllers.py).  Units whose members behave alike -- whose mean
credit and mean activity move together over the batch -- probably face the same learning
problem, so a second level pools them: it keeps running Pearson correlations R_c (of the units'
mean credit) and R_a (of their mean activity), groups the units linked by both every
``regroup_every`` ticks (connected components of min(R_c, R_a) >= threshold), runs the same
controller once per group on the group's summed statistics, and blends each unit's alpha with
its group's: (1 - w) alpha_u + w alpha_G (docs/semantics.md, "Hierarchical meta units").

It is shared numpy float64 code: the batched executor hands it the (B, U) means it computes as
tensors, the reference executor's MetaGroupAgent the means its units send it as messages, so
both run the same formulas on the CPU.
"""

from __future__ import annotations

import numpy as np
from ribbed.meta.controllers import MetaController

__all__ = ["Hierarchy", "MAX_UNITS", "correlations", "group_changes", "groups_of", "hierarchy_reads"]

#: The most first-level units a hierarchy correlates (its matrices are U x U and updated every
#: delivery).
MAX_UNITS = 1024


def correlations(values: np.ndarray) -> np.ndarray:
    """(U, U) Pearson correlations between the columns of ``values`` (B, U), over its rows; a column
    of zero variance correlates 0 with every other and 1 with itself."""
    values = np.asarray(values, dtype=np.float64)
    centred = values - values.mean(axis=0)
    scale = np.sqrt((centred * centred).sum(axis=0))
    flat = scale <= 0
    normed = centred / np.where(flat, 1.0, scale)
    r = (normed.T @ normed).clip(-1.0, 1.0)
    r[flat, :] = 0.0
    r[:, flat] = 0.0
    np.fill_diagonal(r, 1.0)
    return r


def groups_of(r_c: np.ndarray, r_a: np.ndarray, threshold: float) -> np.ndarray:
    """Each unit's group: the connected components of the graph linking u, v when
    min(R_c[u, v], R_a[u, v]) >= threshold, a group's id being its smallest unit index."""
    from scipy.sparse import csr_matrix  # here, so that building a network does not load scipy
    from scipy.sparse.csgraph import connected_components

    linked = np.minimum(r_c, r_a) >= threshold
    np.fill_diagonal(linked, True)
    _, labels = connected_components(csr_matrix(linked), directed=False)
    first = np.full(labels.max() + 1, len(labels), dtype=np.int64)
    np.minimum.at(first, labels, np.arange(len(labels), dtype=np.int64))
    return first[labels]


def group_changes(previous: np.ndarray, groups: np.ndarray) -> tuple[int, int]:
    """(merges, splits) from ``previous`` to ``groups`` (group ids per unit): merges are new groups
    that gather units of two or more previous groups, splits previous groups whose units fall into
    two or more new groups."""
    pairs = np.unique(np.stack([previous, groups], axis=1), axis=0)
    merges = int((np.unique(pairs[:, 1], return_counts=True)[1] >= 2).sum())
    splits = int((np.unique(pairs[:, 0], return_counts=True)[1] >= 2).sum())
    return merges, splits


class Hierarchy:
    """The second level of one population: the running correlations, the groups, and one
    controller state per group (arrays indexed by group id; entries of ids that are no group's
    are kept but never read)."""

    #: What a snapshot saves (scheduler/state.py).
    snapshot_attrs = ("r_c", "r_a", "groups", "group_state", "group_alpha", "unit_group_alpha", "merges", "splits")

    def __init__(self, spec, controller: MetaController, n_units: int):
        self.regroup_every, self.threshold = spec.regroup_every, spec.threshold
        self.decay, self.weight = spec.decay, spec.weight
        self.controller = controller
        self.r_c = np.eye(n_units)
        self.r_a = np.eye(n_units)
        self.groups = np.arange(n_units, dtype=np.int64)
        self.group_state = {name: np.full(n_units, value, dtype=np.float64)
                            for name, value in controller.initial_state().items()}
        #: Per group id, the alpha its last update set.
        self.group_alpha = np.full(n_units, controller.initial_alpha(), dtype=np.float64)
        #: Per unit, the alpha_G its group sent it at the last meta stage (before any regroup there).
        self.unit_group_alpha = self.group_alpha.copy()
        #: Merges and splits over every regroup so far.
        self.merges, self.splits = 0, 0

    def regroups_at(self, tick: int) -> bool:
        return (tick + 1) % self.regroup_every == 0

    def observe(self, credit: np.ndarray, activity: np.ndarray, present: np.ndarray) -> None:
        """Fold one delivery into R_c and R_a: ``credit`` and ``activity`` (B, U) the units' per-row
        means over their members, ``present`` (U,) the units with members (only pairs of these
        move)."""
        present = np.asarray(present, dtype=bool)
        if not present.any():
            return
        where = np.ix_(present, present)
        for r, values in ((self.r_c, credit), (self.r_a, activity)):
            now = correlations(np.asarray(values, dtype=np.float64)[:, present])
            r[where] = r[where] + self.decay * (now - r[where])
            np.fill_diagonal(r, 1.0)

    def update(self, sums: np.ndarray, loss: float) -> np.ndarray:
        """One second-level update: ``sums`` (5, U) the units' sums of this tick ((g - d)^2, d^2, g d,
        g^2, row count), summed over each group's units; returns alpha_G per unit (its group's)."""
        sums = np.asarray(sums, dtype=np.float64)
        totals = np.zeros_like(sums)
        np.add.at(totals, (slice(None), self.groups), sums)
        *parts, count = totals
        received = (count > 0).astype(np.float64)
        count = np.maximum(count, 1.0)
        stats = dict(zip(("error", "square", "cross", "guide_square"), (s / count for s in parts)))
        self.group_alpha = np.asarray(self.controller.update(self.group_state, stats, received, np.float64(loss), np),
                                      dtype=np.float64) * np.ones(len(self.groups))
        self.unit_group_alpha = self.group_alpha[self.groups]
        return self.unit_group_alpha

    def blend(self, unit_alpha, group_alpha):
        """The alpha a unit sends its members: (1 - w) alpha_u + w alpha_G (numpy or torch)."""
        return (1.0 - self.weight) * unit_alpha + self.weight * group_alpha

    def regroup(self, unit_state: dict[str, np.ndarray]) -> None:
        """New groups from the correlations; a new group's state is the mean of its units'
        first-level states (``unit_state``: arrays over the units)."""
        groups = groups_of(self.r_c, self.r_a, self.threshold)
        merges, splits = group_changes(self.groups, groups)
        self.merges += merges
        self.splits += splits
        self.groups = groups
        size = np.bincount(groups, minlength=len(groups)).astype(np.float64)
        for name, values in unit_state.items():
            totals = np.zeros(len(groups))
            np.add.at(totals, groups, np.asarray(values, dtype=np.float64))
            owned = size > 0
            self.group_state[name][owned] = totals[owned] / size[owned]

    def summary(self) -> dict[str, np.ndarray | int]:
        """What ``read("hierarchy", population)`` gives: the groups per unit, their count, the merges
        and splits so far, the correlations and the group alphas."""
        return {"groups": self.groups.copy(), "n_groups": int(len(np.unique(self.groups))),
                "merges": int(self.merges), "splits": int(self.splits), "r_c": self.r_c.copy(),
                "r_a": self.r_a.copy(), "unit_group_alpha": self.unit_group_alpha.copy()}


def hierarchy_reads(hierarchy: Hierarchy, coupling, paths: np.ndarray) -> dict[str, np.ndarray]:
    """What an executor's reads give (agents/state.py): ``meta_group`` per neuron (the group of its
    unit), ``group_alpha`` per guide (the alpha_G its unit was last sent; NaN for guides that are no
    unit) and ``hierarchy`` (:meth:`Hierarchy.summary`)."""
    group_alpha = np.full(coupling.n_guides, np.nan)
    group_alpha[coupling.unit_guides()] = hierarchy.unit_group_alpha
    return {"meta_group": hierarchy.groups[coupling.units(paths)], "group_alpha": group_alpha,
            "hierarchy": hierarchy.summary()}
