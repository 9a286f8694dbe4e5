"""What a model records about specialization at each evaluation.

For every hidden population (on classification tasks): each neuron's class-tuning curve (its
mean response to each class), class selectivity index, mutual information with the label and
preferred class, from its held-out activations; the population means against a label-permutation
null (its mean, 95% band and p-value), and the share of neurons that still prefer the class they
preferred at initialization.  For every guided population: the guides' R^2 on the held-out credit
(and per meta unit), the clusters (count, sizes, stability since the previous evaluation, purity
by preferred class against its permutation null), the distribution of alpha, and the Newman
modularity of the |W| graph under the cluster partition.  The pure functions live in
:mod:`ribbed.specialization`; this module only gathers their inputs from a running model.

Decisions (docs/semantics.md, "Specialization metrics"):

* responses for selectivity are activations above the activation function's floor (-1 for tanh,
  0 for sigmoid and relu, the neuron's held-out minimum for identity and leaky relu);
* a population's clusters are its meta units (a neuron alone under direct coupling);
* modularity is that of the undirected graph of all neurons with |W| as edge weights, with the
  guided population's clusters as communities and every other population as one community;
* populations with more than :data:`ACTIVATION_LIMIT` held-out activations are not analysed
  per neuron (NaN), so evaluation stays cheap on very large networks;
* the label-permutation null takes :func:`null_repeats` permutations (100, fewer for very large
  populations), drawn from ``("label-permutation", population, tick)`` in shared code, so every
  executor draws the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ribbed import specialization as spec
from ribbed.seeding import component_rng

if TYPE_CHECKING:
    from ribbed.model import NetworkModel

__all__ = ["ACTIVATION_LIMIT", "CLUSTER_METRICS", "NEURON_METRICS", "NULL_REPEATS", "SpecializationRecorder",
           "null_repeats"]

#: Per-neuron values this recorder sets (agent reporters of the model).
NEURON_METRICS = ("selectivity", "mutual_info", "preferred_class", "alpha", "cluster")
#: Per-cluster values this recorder sets (agent reporters of the model, for ClusterAgents).
CLUSTER_METRICS = ("size", "guide_r2")
#: Largest (samples x neurons) of held-out activations analysed per neuron.
ACTIVATION_LIMIT = 2**24
#: Label permutations of the null baseline (and shuffles of the purity null).
NULL_REPEATS = 100
#: The permutations of a population are capped so that repeats x samples x neurons stays below this.
NULL_BUDGET = 2**25
_FLOORS = {"tanh": -1.0, "sigmoid": 0.0, "relu": 0.0}
#: The statistics kept of each tuning metric against its null.
_NULL_STATS = ("null_mean", "null_lo", "null_hi", "p", "null_q90", "above_null")
_TUNING = ("selectivity", "mutual_info")
#: Per population with a hierarchy of meta units: its groups now, and the merges and splits of every
#: regroup so far.
_HIERARCHY_METRICS = ("meta_groups", "merges", "splits")
_GUIDED_METRICS = ("guide_r2", "clusters", "cluster_size_max", "cluster_kept", "cluster_ari", "purity",
                   "purity_shuffled", "purity_null_lo", "purity_null_hi", "purity_p", "alpha_mean", "alpha_q10",
                   "alpha_q50", "alpha_q90", "modularity")


def null_repeats(samples: int, size: int) -> int:
    """Permutations of a population's null: :data:`NULL_REPEATS`, fewer (at least 20) where
    repeats x samples x size would pass :data:`NULL_BUDGET`."""
    return int(max(20, min(NULL_REPEATS, NULL_BUDGET // max(1, samples * size))))


class SpecializationRecorder:
    """Computes the specialization metrics of one model (see the module docstring)."""

    def __init__(self, model: NetworkModel):
        self.model = model
        network = model.network
        self.classification = model.dataset.classification
        samples = len(model.dataset.X_test)
        self.analysed = [p for p in network.populations.values()
                         if p.role == "hidden" and p.size * samples <= ACTIVATION_LIMIT and self.classification]
        scenario = model.scenario
        #: A spiking population's response to a sample is its spike count over the steps.
        self.steps = scenario.run.steps_per_sample
        self.spiking = {p.name for p in scenario.populations if scenario.population_firing(p).spiking}
        #: The spiking populations whose spikes at every step a raster shows (their held-out
        #: activations are kept as the analysed ones are, hence the same bound).
        self.raster_populations = [p for p in network.populations.values() if p.name in self.spiking
                                   and p.role != "input" and p.size * samples <= ACTIVATION_LIMIT]
        #: The latest evaluation's spikes of the first held-out samples, per raster population:
        #: (samples, steps, size) uint8; with the samples' labels and the evaluation's tick.
        self.raster: dict[str, np.ndarray] = {}
        self.raster_labels: np.ndarray = np.zeros(0, dtype=np.int64)
        self.raster_tick: int | None = None
        self.values = {name: np.full(network.n_neurons, np.nan) for name in NEURON_METRICS}
        n_guides = sum(g.coupling.n_guides for g in network.guided.values())
        #: Per ClusterAgent (in the order of their ids), its values of the latest evaluation.
        self.cluster_values = {name: np.full(n_guides, np.nan) for name in CLUSTER_METRICS}
        #: Per analysed population, its class-tuning matrix (classes x neurons) of the latest evaluation.
        self.tuning: dict[str, np.ndarray] = {}
        #: Preferred classes at initialization (tick 0), per analysed population.
        self.initial_preferred: dict[str, np.ndarray] = {}
        #: Each guided population's clusters at the previous evaluation.
        self.previous_clusters: dict[str, np.ndarray] = {}

    def metric_names(self) -> list[str]:
        names = [key for p in self.analysed for key in _population_keys(p.name)]
        for name, guided in self.model.network.guided.items():
            names += [f"{name}_{metric}" for metric in _GUIDED_METRICS]
            if guided.hierarchy is not None:
                names += [f"{name}_{metric}" for metric in _HIERARCHY_METRICS]
        return names

    @property
    def kept_populations(self) -> list[str]:
        """Populations whose held-out activations the evaluation must return."""
        kept = {p.name for p in self.analysed} | {p.name for p in self.raster_populations}
        return [name for name in self.model.network.populations if name in kept]

    def responses(self, population, values: np.ndarray) -> tuple[np.ndarray, np.ndarray | float]:
        """A population's responses to the held-out samples, from what its neurons emitted per
        step on average, and their floor (docs/semantics.md, "Specialization metrics"): a spiking
        population's are spike counts over the steps (floor 0), a rate population's its
        activations above the activation function's floor."""
        if population.name in self.spiking:
            return np.rint(values * self.steps), 0.0
        return values, _FLOORS.get(population.activation, values.min(axis=0))

    def keep_raster(self, steps: dict[str, np.ndarray]) -> None:
        """Keep an evaluation's per-step spikes of the raster populations (``Prediction.steps``)."""
        self.raster = {p.name: (np.asarray(steps[p.name]) != 0).astype(np.uint8)
                       for p in self.raster_populations if p.name in steps}
        count = next((len(v) for v in self.raster.values()), 0)
        self.raster_labels = np.asarray(self.model.dataset.y_test[:count]).astype(np.int64)
        self.raster_tick = self.model.tick if self.raster else None

    def record(self, activations: dict[str, np.ndarray]) -> dict[str, float]:
        """Per-neuron values (kept in :attr:`values`) and model-level metrics of one evaluation."""
        model = self.model
        row: dict[str, float] = {}
        for population in self.analysed:
            row.update(self._tuning(population, activations[population.name]))
        if model.network.guided:
            credit = model.executor.held_out_credit(model.dataset.X_test, model.targets_test)
            offset = 0
            for name, guided in model.network.guided.items():
                row.update(self._guided(name, guided.population, credit[name], offset))
                offset += guided.coupling.n_guides
        return row

    def remember_initial(self) -> None:
        """Note the preferred classes of the model as it is now, as those of initialization.

        A resumed run calls this on its freshly built model (the state at tick 0, drawn from the
        seed) before restoring its snapshot, so that ``preferred_kept`` compares with the same
        classes as in the run that was interrupted."""
        if not self.analysed:
            return
        prediction = self.model.executor.predict(self.model.dataset.X_test, keep=self.kept_populations)
        for population in self.analysed:
            values = prediction.activations[population.name]
            if np.all(np.isfinite(values)):
                values, floor = self.responses(population, values)
                self.initial_preferred[population.name] = spec.preferred_class(
                    values, self.model.dataset.y_test, self.model.network.output.size, floor)

    def resume(self) -> None:
        """Take the clusters of a just restored state as those of the previous evaluation (a
        snapshot is taken at an evaluation)."""
        for name in self.model.network.guided:
            self.previous_clusters[name] = np.asarray(self.model.executor.read("cluster", name), dtype=np.int64)

    def _tuning(self, population, values: np.ndarray) -> dict[str, float]:
        model = self.model
        name = population.name
        ids = slice(population.start, population.start + population.size)
        labels = model.dataset.y_test
        n_classes = model.network.output.size
        if not np.all(np.isfinite(values)):  # a diverged run: nothing to measure
            for key in ("selectivity", "mutual_info", "preferred_class"):
                self.values[key][ids] = np.nan
            self.tuning[name] = np.full((n_classes, population.size), np.nan)
            return {key: np.nan for key in _population_keys(name)}
        values, floor = self.responses(population, values)
        self.tuning[name] = spec.class_responses(values, labels, n_classes, floor)
        observed = {"selectivity": spec.selectivity_index(values, labels, n_classes, floor),
                    "mutual_info": spec.mutual_information(values, labels)}
        preferred = spec.preferred_class(values, labels, n_classes, floor)
        self.values["selectivity"][ids] = observed["selectivity"]
        self.values["mutual_info"][ids] = observed["mutual_info"]
        self.values["preferred_class"][ids] = preferred
        rng = component_rng(model.scenario.seed, "label-permutation", name, model.tick)
        null = spec.label_permutation_null(values, labels, n_classes, rng,
                                           null_repeats(len(labels), population.size), floor)
        row = {}
        for metric in _TUNING:
            row.update(_against_null(f"{name}_{metric}", observed[metric], null[metric]))
        if model.tick == 0:
            self.initial_preferred[name] = preferred
        initial = self.initial_preferred.get(name)
        row[f"{name}_preferred_kept"] = float(np.mean(preferred == initial)) if initial is not None else np.nan
        return row

    def _guided(self, name: str, population, sums: np.ndarray, offset: int) -> dict[str, float]:
        model = self.model
        ids = slice(population.start, population.start + population.size)
        clusters, alpha = model.executor.read("cluster", name), model.executor.read("alpha", name)
        self.values["alpha"][ids], self.values["cluster"][ids] = alpha, clusters
        clusters = np.asarray(clusters, dtype=np.int64)
        row = {f"{name}_guide_r2": _r2(sums.sum(axis=1))}
        self._cluster_values(clusters, sums, offset, model.network.guided[name].coupling.n_guides)
        sizes = spec.cluster_sizes(clusters)
        row[f"{name}_clusters"] = float(len(sizes))
        row[f"{name}_cluster_size_max"] = float(sizes[0])
        previous = self.previous_clusters.get(name)
        kept, ari = spec.cluster_stability(previous, clusters) if previous is not None else (np.nan, np.nan)
        row[f"{name}_cluster_kept"], row[f"{name}_cluster_ari"] = kept, ari
        self.previous_clusters[name] = clusters
        preferred = self.values["preferred_class"][ids]
        if np.all(np.isfinite(preferred)):
            preferred = preferred.astype(np.int64)
            observed = spec.purity(clusters, preferred)
            rng = component_rng(model.scenario.seed, "shuffled-purity", name, model.tick)
            null = spec.purity_null(clusters, preferred, rng, repeats=NULL_REPEATS)
            row[f"{name}_purity"] = observed
            row[f"{name}_purity_shuffled"] = float(null.mean())
            row[f"{name}_purity_null_lo"], row[f"{name}_purity_null_hi"] = (float(q) for q in
                                                                           np.quantile(null, [0.025, 0.975]))
            row[f"{name}_purity_p"] = spec.permutation_p_value(observed, null)
        else:
            for key in ("purity", "purity_shuffled", "purity_null_lo", "purity_null_hi", "purity_p"):
                row[f"{name}_{key}"] = float("nan")
        summary = spec.alpha_summary(alpha)
        for key in ("mean", "q10", "q50", "q90"):
            row[f"{name}_alpha_{key}"] = summary[key]
        row[f"{name}_modularity"] = self._modularity(population, clusters)
        hierarchy = model.executor.read("hierarchy", name)
        if hierarchy is not None:  # docs/semantics.md, "Hierarchical meta units"
            row[f"{name}_meta_groups"] = float(hierarchy["n_groups"])
            row[f"{name}_merges"], row[f"{name}_splits"] = float(hierarchy["merges"]), float(hierarchy["splits"])
        return row

    def _cluster_values(self, clusters: np.ndarray, sums: np.ndarray, offset: int, n_guides: int) -> None:
        """Each guide's meta-unit size and the R^2 of the guidance over its members (NaN for a
        guide that is no neuron's unit: an inner node of the tree)."""
        size = np.bincount(clusters, minlength=n_guides).astype(np.float64)
        unit_sums = np.stack([np.bincount(clusters, weights=row, minlength=n_guides) for row in sums])
        r2 = np.array([_r2(unit_sums[:, g]) if size[g] else np.nan for g in range(n_guides)])
        self.cluster_values["size"][offset:offset + n_guides] = size
        self.cluster_values["guide_r2"][offset:offset + n_guides] = r2

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


def _population_keys(name: str) -> list[str]:
    """The metrics of an analysed population ``name``."""
    keys = [f"{name}_{metric}_{stat}" for metric in _TUNING for stat in ("mean", *_NULL_STATS)]
    return keys + [f"{name}_preferred_kept"]


def _r2(sums: np.ndarray) -> float:
    """R^2 from ``[sum (guidance - credit)^2, sum credit, sum credit^2, count]``: NaN when the
    credit does not vary."""
    ss_res, total, square, count = sums
    ss_tot = square - total * total / count if count else 0.0
    return float(1.0 - ss_res / ss_tot) if ss_tot > 0 else float("nan")


def _against_null(prefix: str, observed: np.ndarray, null: np.ndarray) -> dict[str, float]:
    """A per-neuron metric's population mean against the null of that mean, and the share of
    neurons above the 90th percentile of the pooled per-neuron null values."""
    mean = float(observed.mean())
    null_means = null.mean(axis=1)
    lo, hi = np.quantile(null_means, [0.025, 0.975])
    q90 = float(np.quantile(null, 0.9))
    return {f"{prefix}_mean": mean, f"{prefix}_null_mean": float(null_means.mean()), f"{prefix}_null_lo": float(lo),
            f"{prefix}_null_hi": float(hi), f"{prefix}_p": spec.permutation_p_value(mean, null_means),
            f"{prefix}_null_q90": q90, f"{prefix}_above_null": float(np.mean(observed > q90))}
