"""What a model records about specialization at each evaluation.

For every hidden population (on classification tasks): each neuron's class selectivity index,
mutual information with the label and preferred class, from its held-out activations.  For every
guided population: the guides' R^2 on the held-out credit, the clusters (count, sizes, purity by
preferred class against shuffled labels), the distribution of alpha, and the Newman modularity of
the |W| graph under the cluster partition.  The pure functions live in
:mod:`ribbed.specialization`; this module only gathers their inputs from a running model.

Decisions (docs/semantics.md, "Specialization metrics"):

* responses for selectivity are activations above the activation function's floor (-1 for tanh,
  0 for sigmoid and relu, the neuron's held-out minimum for identity and leaky relu);
* a population's clusters are its meta units (a neuron alone under direct coupling);
* modularity is that of the undirected graph of all neurons with |W| as edge weights, with the
  guided population's clusters as communities and every other population as one community;
* populations with more than :data:`ACTIVATION_LIMIT` held-out activations are not analysed
  per neuron (NaN), so evaluation stays cheap on very large networks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ribbed import specialization as spec
from ribbed.seeding import component_rng

if TYPE_CHECKING:
    from ribbed.model import NetworkModel

__all__ = ["ACTIVATION_LIMIT", "NEURON_METRICS", "SpecializationRecorder"]

#: Per-neuron values this recorder sets (agent reporters of the model).
NEURON_METRICS = ("selectivity", "mutual_info", "preferred_class", "alpha", "cluster")
#: Largest (samples x neurons) of held-out activations analysed per neuron.
ACTIVATION_LIMIT = 2**24
_FLOORS = {"tanh": -1.0, "sigmoid": 0.0, "relu": 0.0}
_GUIDED_METRICS = ("guide_r2", "clusters", "cluster_size_max", "purity", "purity_shuffled", "alpha_mean",
                   "alpha_q10", "alpha_q50", "alpha_q90", "modularity")


class SpecializationRecorder:
    """Computes the specialization metrics of one model (see the module docstring)."""

    def __init__(self, model: NetworkModel):
        self.model = model
        network = model.network
        self.classification = model.dataset.classification
        samples = len(model.dataset.X_test)
        self.analysed = [p for p in network.populations.values()
                         if p.role == "hidden" and p.size * samples <= ACTIVATION_LIMIT and self.classification]
        self.values = {name: np.full(network.n_neurons, np.nan) for name in NEURON_METRICS}

    def metric_names(self) -> list[str]:
        names = [f"{p.name}_selectivity_mean" for p in self.analysed]
        names += [f"{p.name}_mutual_info_mean" for p in self.analysed]
        for name in self.model.network.guided:
            names += [f"{name}_{metric}" for metric in _GUIDED_METRICS]
        return names

    @property
    def kept_populations(self) -> list[str]:
        """Populations whose held-out activations the evaluation must return."""
        return [p.name for p in self.analysed]

    def record(self, activations: dict[str, np.ndarray]) -> dict[str, float]:
        """Per-neuron values (kept in :attr:`values`) and model-level metrics of one evaluation."""
        model = self.model
        row: dict[str, float] = {}
        labels = model.dataset.y_test
        n_classes = model.network.output.size
        for population in self.analysed:
            values = activations[population.name]
            if not np.all(np.isfinite(values)):  # a diverged run: nothing to measure
                ids = slice(population.start, population.start + population.size)
                for name in ("selectivity", "mutual_info", "preferred_class"):
                    self.values[name][ids] = np.nan
                row[f"{population.name}_selectivity_mean"] = row[f"{population.name}_mutual_info_mean"] = np.nan
                continue
            floor = _FLOORS.get(population.activation, values.min(axis=0))
            ids = slice(population.start, population.start + population.size)
            selectivity = spec.selectivity_index(values, labels, n_classes, floor)
            self.values["selectivity"][ids] = selectivity
            self.values["mutual_info"][ids] = mutual = spec.mutual_information(values, labels)
            self.values["preferred_class"][ids] = spec.preferred_class(values, labels, n_classes, floor)
            row[f"{population.name}_selectivity_mean"] = float(selectivity.mean())
            row[f"{population.name}_mutual_info_mean"] = float(mutual.mean())
        if model.network.guided:
            credit = model.executor.held_out_credit(model.dataset.X_test, model.targets_test)
            for name, guided in model.network.guided.items():
                row.update(self._guided(name, guided.population, credit[name]))
        return row

    def _guided(self, name: str, population, sums: np.ndarray) -> dict[str, float]:
        model = self.model
        ids = slice(population.start, population.start + population.size)
        clusters, alpha = model.executor.read("cluster", name), model.executor.read("alpha", name)
        self.values["alpha"][ids], self.values["cluster"][ids] = alpha, clusters
        ss_res, total, square, count = sums
        ss_tot = square - total * total / count
        row = {f"{name}_guide_r2": float(1.0 - ss_res / ss_tot) if ss_tot > 0 else float("nan")}
        sizes = spec.cluster_sizes(clusters)
        row[f"{name}_clusters"] = float(len(sizes))
        row[f"{name}_cluster_size_max"] = float(sizes[0])
        preferred = self.values["preferred_class"][ids]
        if np.all(np.isfinite(preferred)):
            preferred = preferred.astype(np.int64)
            row[f"{name}_purity"] = spec.purity(clusters, preferred)
            rng = component_rng(model.scenario.seed, "shuffled-purity", name, model.tick)
            row[f"{name}_purity_shuffled"] = spec.shuffled_purity(clusters, preferred, rng, repeats=100)
        else:
            row[f"{name}_purity"] = row[f"{name}_purity_shuffled"] = float("nan")
        summary = spec.alpha_summary(alpha)
        for key in ("mean", "q10", "q50", "q90"):
            row[f"{name}_alpha_{key}"] = summary[key]
        row[f"{name}_modularity"] = self._modularity(population, clusters)
        return row

    def _modularity(self, population, clusters: np.ndarray) -> float:
        network = self.model.network
        communities = np.empty(network.n_neurons, dtype=np.int64)
        for other in network.populations.values():
            communities[other.start:other.start + other.size] = -1 - other.index
        communities[population.start:population.start + population.size] = clusters
        pre, post, weights = [], [], []
        for name, projection in self.model.projections.items():
            info = projection.info
            pre.append(info.pre_idx + info.pre.start)
            post.append(info.post_idx + info.post.start)
            weights.append(projection.get_weights())
        _, communities = np.unique(communities, return_inverse=True)
        return spec.modularity(np.concatenate(pre), np.concatenate(post), np.concatenate(weights), communities)
