"""Every figure of a report, each a function that returns a :class:`matplotlib.figure.Figure`.

The functions take tables and arrays (as :mod:`ribbed.run_data` loads them from a run directory
or a sweep folder, or as a script builds them) and draw nothing on screen: figures are made
with :class:`~matplotlib.figure.Figure` directly, without pyplot: no display, no global state and
no backend switch are involved (``fig.savefig`` renders with Agg, in a server or a test as in a
notebook, whose own backend is left as it is).  Where a table holds several seeds (a grid point of a sweep), lines are the mean over
seeds with a band of its 95% t-interval (:mod:`ribbed.intervals`); distributions pool the
seeds' neurons.

A function is given data it can draw: the report (:mod:`ribbed.report`) decides which figures
apply to a run and says why the others do not, so that no figure has an empty axis.  A
function given nothing to draw raises ``ValueError``.
"""

from __future__ import annotations

import math
from typing import Sequence

import matplotlib
import networkx as nx
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ribbed.intervals import mean_ci

__all__ = [
    "alpha_and_guide_r2",
    "alpha_over_time",
    "cluster_membership",
    "evolved_kinds",
    "clusters_over_time",
    "firing_rates",
    "learning_curves",
    "live_curves",
    "live_firing_rates",
    "live_raster",
    "messages_by_kind",
    "modularity_over_time",
    "preference_coverage",
    "receptive_fields",
    "selectivity_histogram",
    "spike_raster",
    "specialization_over_time",
    "tuning_matrix",
    "weight_distribution",
    "weight_graph",
]

_KINDS = ("activation", "error", "feedback", "target", "reward", "guidance", "modulation", "spike")
_NULL = "tab:orange"
_INIT = "0.75"


def _figure(width: float = 7.0, height: float = 4.0) -> Figure:
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _by_tick(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """The mean over seeds of ``column`` at each tick and its 95% interval (columns tick, mean,
    lo, hi, n); ticks where no seed has a finite value are left out."""
    rows = []
    for tick, part in frame.groupby("tick", sort=True):
        interval = mean_ci(part[column].to_numpy(dtype=np.float64))
        if interval.n:
            rows.append((tick, *interval))
    return pd.DataFrame(rows, columns=["tick", "mean", "lo", "hi", "n"])


def _has(frame: pd.DataFrame | None, column: str) -> bool:
    """Whether ``frame`` has ``column`` with at least one finite value."""
    return frame is not None and column in frame and bool(np.isfinite(frame[column].to_numpy(dtype=np.float64)).any())


def _line(ax, frame: pd.DataFrame, column: str, label: str, color=None, style: str = "-") -> bool:
    """Mean over seeds with its interval as a band; False when the column has nothing to draw."""
    if not _has(frame, column):
        return False
    stats = _by_tick(frame, column)
    (line,) = ax.plot(stats["tick"], stats["mean"], style, color=color, label=label, marker="o", markersize=3)
    if (stats["n"] > 1).any():
        ax.fill_between(stats["tick"], stats["lo"], stats["hi"], color=line.get_color(), alpha=0.2, linewidth=0)
    return True


def _groups(metrics: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    if "group" not in metrics:
        return [("", metrics)]
    return [(str(name), part) for name, part in metrics.groupby("group", sort=False)]


def _require(frame: pd.DataFrame | None, what: str) -> pd.DataFrame:
    if frame is None or len(frame) == 0:
        raise ValueError(f"nothing to draw: no {what}")
    return frame


# ---------------------------------------------------------------------------------- metrics


def learning_curves(metrics: pd.DataFrame, title: str = "Learning curves") -> Figure:
    """Training and held-out loss, and held-out accuracy (classification) or R² (regression),
    against ticks: one line per group (grid point) with a band across seeds."""
    metrics = _require(metrics, "metrics rows")
    score = "test_accuracy" if "test_accuracy" in metrics else "test_r2"
    fig = _figure(9.0, 3.6)
    loss_ax, score_ax = fig.subplots(1, 2)
    drawn = False
    for index, (name, part) in enumerate(_groups(metrics)):
        color = f"C{index % 10}"
        prefix = f"{name}: " if name and metrics["group"].nunique() > 1 else ""
        drawn |= _line(loss_ax, part, "test_loss", f"{prefix}held-out", color)
        drawn |= _line(loss_ax, part, "train_loss", f"{prefix}training", color, "--")
        drawn |= _line(score_ax, part, score, f"{prefix}held-out", color)
    if not drawn:
        raise ValueError("nothing to draw: no loss or score values")
    loss_ax.set(xlabel="tick", ylabel="loss", title="loss")
    score_ax.set(xlabel="tick", ylabel=score.replace("test_", "held-out "), title=score.replace("test_", "held-out "))
    for ax in (loss_ax, score_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    return fig


def messages_by_kind(metrics: pd.DataFrame, title: str = "Messages by kind") -> Figure:
    """The messages sent in each evaluation window, stacked by kind (mean over seeds); kinds never
    sent are left out."""
    metrics = _require(metrics, "metrics rows")
    columns = [f"msg_{k}" for k in _KINDS if f"msg_{k}" in metrics and metrics[f"msg_{k}"].fillna(0).to_numpy().any()]
    if not columns:
        raise ValueError("nothing to draw: no messages were counted")
    means = metrics.groupby("tick", sort=True)[columns].mean()
    means = means[means.sum(axis=1) > 0]
    fig = _figure()
    ax = fig.subplots()
    ticks = means.index.to_numpy()
    width = 0.8 * (np.min(np.diff(ticks)) if len(ticks) > 1 else 1.0)
    bottom = np.zeros(len(means))
    for index, column in enumerate(columns):
        values = means[column].to_numpy(dtype=np.float64)
        ax.bar(ticks, values, width=-width, align="edge", bottom=bottom, label=column[4:], color=f"C{index}")  # over its window
        bottom += values
    ax.set(xlabel="tick (end of the evaluation window)", ylabel="messages in the window", title=title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return fig


def specialization_over_time(agents: pd.DataFrame, metrics: pd.DataFrame, population: str,
                             measure: str = "selectivity") -> Figure:
    """The distribution of each neuron's ``selectivity`` or ``mutual_info`` at every evaluation
    (boxes, seeds pooled), its population mean, against two nulls: the distribution at
    initialization (tick 0, grey band of its 5-95% range) and, where the metrics hold them, the
    label-permutation null of the population mean (orange band, 2.5-97.5%) and the 90th
    percentile of the per-neuron null values (dashed); a second panel shows the share of neurons
    above that percentile."""
    neurons = agents[(agents["population"] == population) & (agents["agent_kind"] == "neuron")]
    neurons = neurons[np.isfinite(neurons[measure].to_numpy(dtype=np.float64))]
    _require(neurons, f"{measure} values of population {population}")
    ticks = np.sort(neurons["tick"].unique())
    above = f"{population}_{measure}_above_null"
    panels = 2 if _has(metrics, above) else 1
    fig = _figure(8.0, 4.0 if panels == 1 else 6.0)
    axes = fig.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
    ax = axes[0]
    width = 0.6 * (np.min(np.diff(ticks)) if len(ticks) > 1 else 1.0)
    data = [neurons.loc[neurons["tick"] == t, measure].to_numpy(dtype=np.float64) for t in ticks]
    initial = data[0] if ticks[0] == 0 else None
    if initial is not None:
        lo, hi = np.percentile(initial, [5, 95])
        ax.axhspan(lo, hi, color=_INIT, alpha=0.4, label="at initialization (5-95%)")
    ax.boxplot(data, positions=ticks, widths=width, manage_ticks=False, showfliers=True,
               flierprops={"markersize": 2}, medianprops={"color": "C0"})
    _line(ax, metrics, f"{population}_{measure}_mean", "population mean", "C0")
    null_lo, null_hi = f"{population}_{measure}_null_lo", f"{population}_{measure}_null_hi"
    if _has(metrics, null_lo) and _has(metrics, null_hi):
        low, high = _by_tick(metrics, null_lo), _by_tick(metrics, null_hi)
        joined = low.merge(high, on="tick", suffixes=("_lo", "_hi"))
        ax.fill_between(joined["tick"], joined["mean_lo"], joined["mean_hi"], color=_NULL, alpha=0.3,
                        label="permutation null of the mean (2.5-97.5%)")
    _line(ax, metrics, f"{population}_{measure}_null_q90", "per-neuron null, 90th percentile", _NULL, "--")
    name = "selectivity" if measure == "selectivity" else "mutual information (nats)"
    ax.set(ylabel=name, title=f"{population}: {name} per neuron")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    if panels == 2:
        _line(axes[1], metrics, above, "share of neurons above the null's 90th percentile", "C2")
        axes[1].set(ylabel="share", ylim=(0, 1))
        axes[1].grid(alpha=0.3)
        axes[1].legend(fontsize=7)
    axes[-1].set_xlabel("tick")
    return fig


def preference_coverage(agents: pd.DataFrame, metrics: pd.DataFrame | None, population: str,
                        n_classes: int) -> Figure:
    """Which classes the neurons prefer at each evaluation: the mean count of neurons per
    preferred class (heatmap, classes by tick), and the share of classes that at least one
    neuron prefers (with, where the metrics hold it, the share of neurons that kept the class
    they preferred at initialization)."""
    neurons = agents[(agents["population"] == population) & (agents["agent_kind"] == "neuron")]
    neurons = neurons[np.isfinite(neurons["preferred_class"].to_numpy(dtype=np.float64))]
    _require(neurons, f"preferred classes of population {population}")
    ticks = np.sort(neurons["tick"].unique())
    seeds = neurons["seed"].nunique() if "seed" in neurons else 1
    counts = np.zeros((n_classes, len(ticks)))
    coverage = []
    for j, tick in enumerate(ticks):
        part = neurons[neurons["tick"] == tick]
        classes = part["preferred_class"].to_numpy().astype(np.int64)
        counts[:, j] = np.bincount(classes, minlength=n_classes)[:n_classes] / seeds
        by_seed = part.groupby("seed")["preferred_class"].nunique() if "seed" in part else [len(set(classes))]
        coverage.append(float(np.mean(np.asarray(by_seed, dtype=np.float64))) / n_classes)
    fig = _figure(8.0, 5.5)
    heat_ax, line_ax = fig.subplots(2, 1, height_ratios=[2, 1])
    image = heat_ax.imshow(counts, aspect="auto", origin="lower", cmap="viridis", interpolation="nearest")
    heat_ax.set_xticks(range(len(ticks)), [str(t) for t in ticks], fontsize=7)
    heat_ax.set_yticks(range(n_classes))
    heat_ax.set(xlabel="tick", ylabel="preferred class", title=f"{population}: neurons preferring each class")
    fig.colorbar(image, ax=heat_ax, label="neurons (mean over seeds)")
    line_ax.plot(ticks, coverage, "o-", markersize=3, label="classes preferred by at least one neuron")
    _line(line_ax, metrics, f"{population}_preferred_kept", "neurons that kept their initial preference", "C3")
    line_ax.set(xlabel="tick", ylabel="share", ylim=(0, 1.05))
    line_ax.grid(alpha=0.3)
    line_ax.legend(fontsize=7)
    return fig


def alpha_and_guide_r2(metrics: pd.DataFrame, population: str, agents: pd.DataFrame | None = None) -> Figure:
    """A guided population's trust in its guides (alpha: mean, and the band from its 10th to its
    90th percentile over neurons) against the guides' R² on held-out credit, over time; where
    ``agents`` holds the clusters' (meta units') own rows with their guide R², a second panel
    shows each unit's alpha against its guide's R² at the last evaluation (one run: the first
    seed), dots sized by the unit's neurons."""
    if not _has(metrics, f"{population}_guide_r2") and not _has(metrics, f"{population}_alpha_mean"):
        raise ValueError(f"nothing to draw: no guide R² or alpha of population {population}")
    units = None
    if agents is not None and {"guide_r2", "alpha"} <= set(agents.columns):
        units = agents[(agents["population"] == population) & (agents["agent_kind"] == "cluster")]
        if "seed" in units and len(units):
            units = units[units["seed"] == units["seed"].iloc[0]]
        units = units[np.isfinite(units["guide_r2"].to_numpy(dtype=np.float64))
                      & np.isfinite(units["alpha"].to_numpy(dtype=np.float64))]
        units = units[units["tick"] == units["tick"].max()] if len(units) else None
    fig = _figure(7.0 if units is None else 11.0, 4.0)
    axes = fig.subplots(1, 1 if units is None else 2, squeeze=False, width_ratios=[3, 2][:1 if units is None else 2])
    ax = axes[0, 0]
    _line(ax, metrics, f"{population}_guide_r2", "guide R² (held-out credit)", "C1")
    _line(ax, metrics, f"{population}_alpha_mean", "alpha, mean", "C0")
    if _has(metrics, f"{population}_alpha_q10") and _has(metrics, f"{population}_alpha_q90"):
        low, high = _by_tick(metrics, f"{population}_alpha_q10"), _by_tick(metrics, f"{population}_alpha_q90")
        joined = low.merge(high, on="tick", suffixes=("_lo", "_hi"))
        ax.fill_between(joined["tick"], joined["mean_lo"], joined["mean_hi"], color="C0", alpha=0.15,
                        label="alpha, 10th-90th percentile")
    ax.axhline(0, color="0.5", linewidth=0.8)
    ax.set(xlabel="tick", ylabel="alpha / R²", title=f"{population}: alpha against the guides' R²")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if units is not None:
        side = axes[0, 1]
        sizes = units["size"].to_numpy(dtype=np.float64) if "size" in units else np.ones(len(units))
        side.scatter(units["guide_r2"], units["alpha"], s=12 + 8 * np.nan_to_num(sizes), alpha=0.6, color="C0")
        side.set(xlabel="guide R²", ylabel="alpha", title=f"meta units at tick {int(units['tick'].iloc[0])}")
        side.grid(alpha=0.3)
    return fig


def cluster_membership(agents: pd.DataFrame, metrics: pd.DataFrame | None, population: str) -> Figure:
    """Which cluster each neuron of a guided population belongs to at each evaluation (one run:
    the first seed in ``agents``), neurons sorted by their final cluster; below, cluster purity
    with respect to preferred classes against its null (shuffled labels: mean, and the 2.5-97.5%
    band where the metrics hold it) and, where present, the stability of the clustering."""
    neurons = agents[(agents["population"] == population) & (agents["agent_kind"] == "neuron")]
    if "seed" in neurons and len(neurons):
        neurons = neurons[neurons["seed"] == neurons["seed"].iloc[0]]
    neurons = neurons[np.isfinite(neurons["cluster"].to_numpy(dtype=np.float64))]
    _require(neurons, f"cluster ids of population {population}")
    table = neurons.pivot_table(index="AgentID", columns="tick", values="cluster", aggfunc="first")
    final = table.columns[-1]
    table = table.assign(_final=table[final]).sort_values(["_final"], kind="stable").drop(columns="_final")
    panels = 2 if _has(metrics, f"{population}_purity") else 1
    fig = _figure(8.0, 4.5 if panels == 1 else 7.0)
    axes = fig.subplots(panels, 1, squeeze=False, height_ratios=[2, 1][:panels])[:, 0]
    ids = table.to_numpy(dtype=np.float64)
    image = axes[0].imshow(np.mod(ids, 20), aspect="auto", cmap="tab20", vmin=0, vmax=19, interpolation="nearest")
    axes[0].set_xticks(range(table.shape[1]), [str(t) for t in table.columns], fontsize=7)
    axes[0].set(xlabel="tick", ylabel=f"neuron (sorted by cluster at tick {final})",
                title=f"{population}: cluster membership ({int(np.unique(ids[:, -1]).size)} clusters at the end)")
    fig.colorbar(image, ax=axes[0], label="cluster id (mod 20)")
    if panels == 2:
        ax = axes[1]
        _line(ax, metrics, f"{population}_purity", "purity", "C0")
        _line(ax, metrics, f"{population}_purity_shuffled", "purity, shuffled labels (null mean)", _NULL, "--")
        lo, hi = f"{population}_purity_null_lo", f"{population}_purity_null_hi"
        if _has(metrics, lo) and _has(metrics, hi):
            low, high = _by_tick(metrics, lo), _by_tick(metrics, hi)
            joined = low.merge(high, on="tick", suffixes=("_lo", "_hi"))
            ax.fill_between(joined["tick"], joined["mean_lo"], joined["mean_hi"], color=_NULL, alpha=0.25,
                            label="null (2.5-97.5%)")
        _line(ax, metrics, f"{population}_cluster_ari", "ARI with the previous evaluation", "C2", ":")
        _line(ax, metrics, f"{population}_cluster_kept", "neurons that kept their cluster", "C3", ":")
        ax.set(xlabel="tick", ylabel="share", ylim=(0, 1.05))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def _cramers_v(kinds: np.ndarray, classes: np.ndarray) -> float:
    """Cramér's V of the contingency table of two label arrays (0 when either has one value)."""
    table = pd.crosstab(kinds, classes).to_numpy(dtype=np.float64)
    if min(table.shape) < 2:
        return 0.0
    n = table.sum()
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / n
    chi2 = ((table - expected) ** 2 / expected).sum()
    return float(np.sqrt(chi2 / (n * (min(table.shape) - 1))))


def _kind_spread(selectivity: np.ndarray, kinds: np.ndarray) -> float:
    """The range of the per-kind mean selectivities (0 with one kind)."""
    means = [selectivity[kinds == kind].mean() for kind in np.unique(kinds)]
    return float(max(means) - min(means))


def evolved_kinds(agents: pd.DataFrame, population: str, permutations: int = 200) -> Figure:
    """Which kind of candidate serves each neuron of a population (a layer) whose guides evolve:
    the share of neurons per kind and their serving fitness at each evaluation (mean over seeds);
    below, at the last evaluation (first seed), the kinds by preferred class, with Cramér's V of
    kind against preferred class and its label-permutation null (95th percentile of
    ``permutations`` shuffles, generator seeded 0), and each kind's neurons' selectivity, with the
    spread of the kinds' mean selectivities against its kind-permutation null (the same
    generator, after the first null's draws): a specialization of kinds by class or selectivity,
    or none. One figure per population: the report draws one for every evolving layer."""
    neurons = agents[(agents["population"] == population) & (agents["agent_kind"] == "neuron")]
    if "guide_kind" not in neurons:
        raise ValueError(f"the guides of population {population} do not evolve")
    neurons = neurons[neurons["guide_kind"].notna()]
    _require(neurons, f"guide kinds of population {population}")
    seeds = neurons["seed"] if "seed" in neurons else pd.Series(0, index=neurons.index)
    kinds = sorted(neurons["guide_kind"].unique())
    fig = _figure(8.0, 10.0)
    top, bottom, lowest = fig.subplots(3, 1, height_ratios=[1, 1, 1])
    share = (neurons.assign(_seed=seeds).groupby(["_seed", "tick"])["guide_kind"].value_counts(normalize=True)
             .unstack(fill_value=0.0).groupby("tick").mean())
    for i, kind in enumerate(kinds):
        top.plot(share.index, share[kind], marker="o", color=f"C{i}", label=f"served by {kind}")
    top.set(xlabel="tick", ylabel="share of neurons", ylim=(-0.02, 1.02),
            title=f"{population}: the kind of guide candidate serving each neuron")
    fitness = neurons.groupby("tick")["guide_fitness"].mean()
    twin = top.twinx()
    twin.plot(fitness.index, fitness.to_numpy(), "k--", label="mean serving fitness")
    twin.set_ylabel("fitness")
    lines = top.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    top.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="lower right")
    top.grid(alpha=0.3)
    first = neurons[seeds == seeds.iloc[0]]
    last = first[first["tick"] == first["tick"].max()]
    classes = last["preferred_class"].to_numpy(dtype=np.float64)
    known = np.isfinite(classes)
    rng = np.random.default_rng(0)
    if known.any():
        served, preferred = last["guide_kind"].to_numpy()[known], classes[known].astype(int)
        table = pd.crosstab(preferred, served).reindex(columns=kinds, fill_value=0)
        bottom_edge = np.zeros(len(table))
        for i, kind in enumerate(kinds):
            bottom.bar(table.index, table[kind], bottom=bottom_edge, color=f"C{i}", label=kind)
            bottom_edge += table[kind].to_numpy()
        value = _cramers_v(served, preferred)
        null = [_cramers_v(served, rng.permutation(preferred)) for _ in range(permutations)]
        bottom.set(xlabel="preferred class", ylabel="neurons", xticks=list(table.index),
                   title=f"serving kinds by preferred class at tick {int(last['tick'].iloc[0])}\nCramér's V {value:.2f} "
                         f"(label-permutation null: 95th percentile {np.quantile(null, 0.95):.2f})")
        bottom.legend(fontsize=7)
    else:
        bottom.set_axis_off()
        bottom.set_title("no neuron has a preferred class at the last evaluation")
    selectivity = last["selectivity"].to_numpy(dtype=np.float64) if "selectivity" in last else np.array([])
    measured = np.isfinite(selectivity)
    if measured.any():
        served, values = last["guide_kind"].to_numpy()[measured], selectivity[measured]
        present = [kind for kind in kinds if (served == kind).any()]
        lowest.boxplot([values[served == kind] for kind in present])
        lowest.set_xticks(range(1, len(present) + 1), present)
        spread = _kind_spread(values, served)
        null = [_kind_spread(values, rng.permutation(served)) for _ in range(permutations)]
        lowest.set(xlabel="serving kind", ylabel="selectivity",
                   title=f"selectivity by serving kind\nspread of the kinds' means {spread:.3f} "
                         f"(kind-permutation null: 95th percentile {np.quantile(null, 0.95):.3f})")
        lowest.grid(alpha=0.3)
    else:
        lowest.set_axis_off()
        lowest.set_title("no neuron's selectivity was measured at the last evaluation")
    return fig


def modularity_over_time(metrics: pd.DataFrame, populations: Sequence[str]) -> Figure:
    """The modularity of each guided population's |W| graph under its clustering, over time."""
    fig = _figure()
    ax = fig.subplots()
    drawn = [name for i, name in enumerate(populations) if _line(ax, metrics, f"{name}_modularity", name, f"C{i}")]
    if not drawn:
        raise ValueError("nothing to draw: no modularity values")
    ax.axhline(0, color="0.5", linewidth=0.8)
    ax.set(xlabel="tick", ylabel="modularity", title="Modularity of the |W| graph under the clusters")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


# ---------------------------------------------------------------------------------- one run's state


def receptive_fields(weights: np.ndarray, image_shape: tuple[int, int], *, preferred: np.ndarray | None = None,
                     cluster: np.ndarray | None = None, title: str = "Receptive fields",
                     max_neurons: int = 256) -> Figure:
    """Each neuron's incoming weights from an image input (``weights``: (neurons, pixels), a row
    per neuron) drawn as an image of ``image_shape``, in a grid sorted by cluster, then by
    preferred class (each tile labelled); each tile on its own symmetric colour scale (red
    positive, blue negative: the tile divided by its largest |w|).  At most ``max_neurons`` are
    drawn (the first in that order).  The grid is one image (tiles one blank pixel apart), so
    that hundreds of neurons draw in one go."""
    weights = np.asarray(weights, dtype=np.float64)
    rows, columns = image_shape
    if weights.ndim != 2 or weights.shape[1] != rows * columns or weights.shape[0] == 0:
        raise ValueError(f"nothing to draw: weights of shape {weights.shape} are not (neurons, {rows * columns})")
    n = weights.shape[0]
    keys = [np.arange(n)]
    for key in (preferred, cluster):  # lexsort: the last key sorts first
        if key is not None:
            keys.append(np.nan_to_num(np.asarray(key, dtype=np.float64), nan=np.inf))
    order = np.lexsort(keys)[:max_neurons]
    grid = math.ceil(math.sqrt(len(order)))
    mosaic = np.full((grid * (rows + 1) - 1, grid * (columns + 1) - 1), np.nan)
    fig = _figure(min(12.0, 0.85 * grid + 1), min(12.5, 0.95 * grid + 1.2))
    ax = fig.subplots()
    for position, neuron in enumerate(order):
        r, c = divmod(position, grid)
        tile = weights[neuron].reshape(rows, columns)
        scale = float(np.abs(tile).max()) or 1.0
        mosaic[r * (rows + 1):r * (rows + 1) + rows, c * (columns + 1):c * (columns + 1) + columns] = tile / scale
        parts = []
        if cluster is not None and np.isfinite(cluster[neuron]):
            parts.append(f"c{int(cluster[neuron])}")
        if preferred is not None and np.isfinite(preferred[neuron]):
            parts.append(f"k{int(preferred[neuron])}")
        ax.text(c * (columns + 1) + (columns - 1) / 2, r * (rows + 1) - 0.6, " ".join(parts) or str(neuron),
                ha="center", va="bottom", fontsize=6)
    colormap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="white")
    ax.imshow(mosaic, cmap=colormap, vmin=-1, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    shown = f" (first {len(order)} of {n})" if len(order) < n else ""
    ax.set_title(f"{title}{shown}: sorted by cluster (c) then preferred class (k)", fontsize=10, pad=12)
    return fig


def tuning_matrix(tuning: pd.DataFrame, population: str, tick: int | None = None) -> Figure:
    """The class tuning of a population's neurons at ``tick`` (default: the last in the table;
    one run: the first seed): each neuron's mean response to each class (above its activation's
    floor), neurons sorted by preferred class, then by how strongly they prefer it."""
    part = tuning[tuning["population"] == population]
    if "seed" in part and len(part):
        part = part[part["seed"] == part["seed"].iloc[0]]
    _require(part, f"tuning rows of population {population}")
    tick = int(part["tick"].max()) if tick is None else tick
    part = part[part["tick"] == tick]
    _require(part, f"tuning rows of population {population} at tick {tick}")
    matrix = part.pivot_table(index="AgentID", columns="class", values="response", aggfunc="mean")
    values = matrix.to_numpy(dtype=np.float64)
    filled = np.nan_to_num(values, nan=-np.inf)
    best = filled.argmax(axis=1)
    strength = filled.max(axis=1)
    order = np.lexsort((-strength, best))
    fig = _figure(6.0, 6.5)
    ax = fig.subplots()
    image = ax.imshow(values[order], aspect="auto", cmap="magma", interpolation="nearest")
    ax.set_xticks(range(values.shape[1]), [str(int(c)) for c in matrix.columns])
    ax.set(xlabel="class", ylabel="neuron (sorted by preferred class)",
           title=f"{population}: class tuning at tick {tick}")
    fig.colorbar(image, ax=ax, label="mean response above the floor")
    return fig


def spike_raster(spikes: dict[str, np.ndarray], labels: Sequence[int] | np.ndarray, *, samples: int = 4,
                 max_neurons: int = 200, title: str = "Spike raster",
                 size: tuple[float, float] | None = None, dpi: int = 100) -> Figure:
    """Neurons x steps of a few held-out samples, one row of axes per spiking population: a dot
    where a neuron spiked; the samples' steps side by side, separated by a line and labelled with
    the sample's class (classification).  ``spikes``: per population (samples, steps, size), 0/1; a population of
    more than ``max_neurons`` shows its first ``max_neurons``."""
    shown = {name: np.asarray(values)[:samples] for name, values in spikes.items() if np.asarray(values).size}
    if not shown:
        raise ValueError("nothing to draw: no spiking population's steps were recorded")
    rows = len(shown)
    classes = np.ndim(labels) == 1  # class labels; a regression's targets (samples x outputs) label nothing
    fig = Figure(figsize=size or (8.0, 1.0 + 2.2 * rows), dpi=dpi, layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, 1, squeeze=False)[:, 0])
    for ax, (name, values) in zip(axes, shown.items()):
        n_samples, steps, neurons = values.shape
        kept = min(neurons, max_neurons)
        sample, step, neuron = np.nonzero(values[:, :, :kept])
        ax.scatter(sample * steps + step, neuron, s=4, marker="|", color="black", linewidths=0.8)
        for k in range(1, n_samples):
            ax.axvline(k * steps - 0.5, color="0.6", linewidth=0.8)
        ax.set_xticks([k * steps + (steps - 1) / 2 for k in range(n_samples)],
                      [f"sample {k} (class {int(labels[k])})" if classes and k < len(labels) else f"sample {k}"
                       for k in range(n_samples)], fontsize=8)
        ax.set_xlim(-0.5, n_samples * steps - 0.5)
        ax.set_ylim(-0.5, kept - 0.5)
        rate = values.mean()
        more = f", first {kept} of {neurons}" if kept < neurons else ""
        ax.set(ylabel=f"{name} neuron", title=f"{name}: {steps} steps per sample{more}; "
               f"{rate:.3f} spikes per neuron and step")
    axes[0].figure.suptitle(title)
    return fig


def firing_rates(agents: pd.DataFrame, populations: Sequence[str], *, title: str = "Firing rates",
                 size: tuple[float, float] = (7.0, 4.0), dpi: int = 100) -> Figure:
    """The distribution of each spiking population's per-neuron firing rate (spikes per step, on
    the held-out set: the neuron's ``activation_mean`` in agents.csv) at the last evaluation, with
    that at initialization (tick 0) as an outline; seeds pooled."""
    neurons = agents[(agents["agent_kind"] == "neuron") & agents["population"].isin(list(populations))]
    _require(neurons, "neuron rows of a spiking population")
    last = int(neurons["tick"].max())
    fig = Figure(figsize=size, dpi=dpi, layout="constrained")
    ax = fig.subplots()
    rates = neurons["activation_mean"].to_numpy(dtype=np.float64)
    top = _rate_axis(rates)
    bins = np.linspace(0.0, top, 41)
    drawn = False
    for index, name in enumerate(populations):
        part = neurons[neurons["population"] == name]
        final = part[part["tick"] == last]["activation_mean"].to_numpy(dtype=np.float64)
        final = final[np.isfinite(final)]
        if not final.size:
            continue
        color = f"C{index % 10}"
        ax.hist(final, bins=bins, alpha=0.6, color=color,
                label=f"{name} at tick {last} (mean {final.mean():.3f}, silent {np.mean(final == 0):.0%})")
        initial = part[part["tick"] == 0]["activation_mean"].to_numpy(dtype=np.float64)
        initial = initial[np.isfinite(initial)]
        if initial.size and last != 0:
            ax.hist(initial, bins=bins, histtype="step", color=color, linestyle="--", label=f"{name} at tick 0")
        drawn = True
    if not drawn:
        raise ValueError("nothing to draw: no spiking neuron has a finite firing rate")
    ax.set(xlim=(0.0, top), xlabel="firing rate (spikes per step, held-out samples)", ylabel="neurons", title=title)
    ax.legend(loc="best", fontsize="small")
    return fig


def weight_distribution(weights: dict[str, tuple[np.ndarray, np.ndarray]], bounds: dict[str, tuple[float, float]],
                        ticks: tuple[int, int], *, title: str = "Weights of the STDP projections",
                        size: tuple[float, float] = (7.0, 4.0), dpi: int = 100) -> Figure:
    """The distribution of each STDP projection's weights at the first and the last snapshot
    (``ticks``), on the axis of its bounds [w_min, w_max], with the share of weights within 10% of
    either bound: what Song, Miller & Abbott's competition does (a bimodal distribution)."""
    if not weights:
        raise ValueError("nothing to draw: no projection learns by STDP")
    fig = Figure(figsize=size, dpi=dpi, layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(weights), squeeze=False)[0])
    for ax, (name, (first, last)) in zip(axes, weights.items()):
        low, high = bounds[name]
        bins = np.linspace(low, high, 41)
        margin = 0.1 * (high - low)
        near = float(np.mean((last <= low + margin) | (last >= high - margin))) if last.size else float("nan")
        ax.hist(first, bins=bins, histtype="step", color="0.5", linestyle="--", label=f"tick {ticks[0]}")
        ax.hist(last, bins=bins, alpha=0.7, color="C0",
                label=f"tick {ticks[1]}: {near:.0%} within 10% of a bound")
        ax.set(xlim=(low, high), xlabel=f"weight of {name}", ylabel="synapses")
        ax.legend(loc="upper center", fontsize="small")
    fig.suptitle(title)
    return fig


def _rate_axis(rates: np.ndarray) -> float:
    """The end of a firing-rate axis: a little above the highest finite rate, at most 1 spike per
    step, at least 0.05."""
    finite = rates[np.isfinite(rates)]
    return float(min(1.0, max(0.05, 1.1 * finite.max()))) if finite.size else 1.0


def weight_graph(weights: dict[str, np.ndarray], populations: Sequence[dict], projections: Sequence[dict], *,
                 max_edges: int = 600, title: str = "Weight graph") -> Figure:
    """The network as a graph (networkx): neurons in columns by population, the strongest
    ``max_edges`` synapses drawn with width by |w| (red positive, blue negative).  ``weights``:
    dense (post, pre) matrices by projection name (:meth:`ribbed.log.reader.LogReader.weights`);
    ``populations`` and ``projections``: the log header's lists."""
    graph = nx.DiGraph()
    starts = {p["name"]: p["start"] for p in populations}
    for index, p in enumerate(populations):
        graph.add_nodes_from(range(p["start"], p["start"] + p["size"]), layer=index)
    edges = []
    for projection in projections:
        matrix = weights.get(projection["name"])
        if matrix is None:
            continue
        post, pre = np.nonzero(matrix)
        for i, j in zip(pre.tolist(), post.tolist()):
            edges.append((starts[projection["pre"]] + i, starts[projection["post"]] + j, float(matrix[j, i])))
    if not graph.number_of_nodes() or not edges:
        raise ValueError("nothing to draw: no neurons or no non-zero weights")
    edges.sort(key=lambda e: -abs(e[2]))
    kept = edges[:max_edges]
    graph.add_weighted_edges_from(kept)
    position = nx.multipartite_layout(graph, subset_key="layer")
    fig = _figure(8.0, 6.0)
    ax = fig.subplots()
    largest = abs(kept[0][2]) or 1.0
    nx.draw_networkx_edges(graph, position, ax=ax, edgelist=[(a, b) for a, b, _ in kept], arrows=False,
                           width=[0.2 + 2.0 * abs(w) / largest for _, _, w in kept],
                           edge_color=["tab:red" if w > 0 else "tab:blue" for _, _, w in kept], alpha=0.5)
    for index, p in enumerate(populations):
        nodes = list(range(p["start"], p["start"] + p["size"]))
        nx.draw_networkx_nodes(graph, position, nodelist=nodes, ax=ax, node_size=12, node_color=f"C{index}",
                               label=f"{p['name']} ({p['size']})")
    shown = f"the {len(kept)} strongest of {len(edges)} synapses" if len(kept) < len(edges) else f"{len(edges)} synapses"
    ax.set_title(f"{title}: {shown}")
    ax.legend(fontsize=8, loc="upper left", markerscale=2)
    ax.set_axis_off()
    return fig


# ------------------------------------------------------------------------- live (one model)
# The dashboard's plots: one running model's metrics so far and its latest per-neuron values,
# small enough to redraw after every step.


def live_curves(metrics: pd.DataFrame, columns: dict[str, str], ylabel: str, title: str, *,
                size: tuple[float, float] = (5.0, 3.2), dpi: int = 80) -> Figure:
    """The ``columns`` of one model's metrics (column: label) against ticks."""
    fig = Figure(figsize=size, dpi=dpi, layout="constrained")
    ax = fig.subplots()
    for column, label in columns.items():
        if column in metrics:
            ax.plot(metrics["tick"], metrics[column], marker="." if len(metrics) < 30 else None, label=label)
    ax.set(xlabel="tick", ylabel=ylabel, title=title)
    if ax.lines:
        ax.legend(loc="best", fontsize="small")
    return fig


def selectivity_histogram(values: dict[str, np.ndarray], null_q90: dict[str, float | None], title: str, *,
                          size: tuple[float, float] = (5.0, 3.2), dpi: int = 80) -> Figure:
    """A histogram of each population's per-neuron selectivity, with the 90th percentile of its
    label-permutation null (where recorded) as a dashed line: neurons right of it are selective
    beyond chance."""
    fig = Figure(figsize=size, dpi=dpi, layout="constrained")
    ax = fig.subplots()
    bins = np.linspace(0.0, 1.0, 21)
    for index, (name, chunk) in enumerate(values.items()):
        ax.hist(chunk[np.isfinite(chunk)], bins=bins, alpha=0.6, color=f"C{index % 10}", label=f"{name} ({chunk.size})")
        q90 = null_q90.get(name)
        if q90 is not None and np.isfinite(q90):
            ax.axvline(q90, color=f"C{index % 10}", linestyle="--", label=f"{name}: null, 90th percentile")
    ax.set(xlim=(0.0, 1.0), xlabel="class selectivity index", ylabel="neurons", title=title)
    ax.legend(loc="best", fontsize="small")
    return fig


def alpha_over_time(metrics: pd.DataFrame, populations: Sequence[str], title: str, *,
                    size: tuple[float, float] = (5.0, 3.2), dpi: int = 80) -> Figure:
    """Each guided population's mean alpha over ticks, with its 10-90% band."""
    fig = Figure(figsize=size, dpi=dpi, layout="constrained")
    ax = fig.subplots()
    for name in populations:
        (line,) = ax.plot(metrics["tick"], metrics[f"{name}_alpha_mean"], label=f"{name} mean")
        ax.fill_between(metrics["tick"], metrics[f"{name}_alpha_q10"], metrics[f"{name}_alpha_q90"],
                        color=line.get_color(), alpha=0.2, label=f"{name} 10-90%")
    ax.set(xlabel="tick", ylabel="alpha", title=title)
    ax.legend(loc="best", fontsize="small")
    return fig


def clusters_over_time(metrics: pd.DataFrame, populations: Sequence[str], title: str, *,
                       size: tuple[float, float] = (5.0, 3.2), dpi: int = 80) -> Figure:
    """Each guided population's number of clusters (left axis) and purity against its
    shuffled-label null (right axis) over ticks."""
    fig = Figure(figsize=size, dpi=dpi, layout="constrained")
    ax = fig.subplots()
    right = ax.twinx()
    for name in populations:
        ax.plot(metrics["tick"], metrics[f"{name}_clusters"], label=f"{name} clusters")
        right.plot(metrics["tick"], metrics[f"{name}_purity"], linestyle="--", label=f"{name} purity")
        right.plot(metrics["tick"], metrics[f"{name}_purity_shuffled"], linestyle=":", label=f"{name} purity, shuffled")
    ax.set(xlabel="tick", ylabel="clusters", title=title)
    right.set(ylabel="purity", ylim=(0.0, 1.05))
    handles, labels = ax.get_legend_handles_labels()
    more_handles, more_labels = right.get_legend_handles_labels()
    ax.legend(handles + more_handles, labels + more_labels, loc="best", fontsize="small")
    return fig


def live_raster(spikes: dict[str, np.ndarray], labels: Sequence[int] | np.ndarray, title: str, *,
                size: tuple[float, float] = (5.0, 3.2), dpi: int = 80) -> Figure:
    """The dashboard's spike raster: :func:`spike_raster` of two held-out samples, small."""
    return spike_raster(spikes, labels, samples=2, max_neurons=100, title=title, size=size, dpi=dpi)


def live_firing_rates(rates: dict[str, np.ndarray], title: str, *, size: tuple[float, float] = (5.0, 3.2),
                      dpi: int = 80) -> Figure:
    """The dashboard's firing rates: a histogram of each spiking population's per-neuron rate
    (spikes per step on the held-out set) at the latest evaluation."""
    fig = Figure(figsize=size, dpi=dpi, layout="constrained")
    ax = fig.subplots()
    top = _rate_axis(np.concatenate([np.ravel(v) for v in rates.values()])) if rates else 1.0
    bins = np.linspace(0.0, top, 41)
    for index, (name, values) in enumerate(rates.items()):
        values = values[np.isfinite(values)]
        ax.hist(values, bins=bins, alpha=0.6, color=f"C{index % 10}",
                label=f"{name} (mean {values.mean():.3f})" if values.size else name)
    ax.set(xlim=(0.0, top), xlabel="spikes per step", ylabel="neurons", title=title)
    if rates:
        ax.legend(loc="best", fontsize="small")
    return fig
