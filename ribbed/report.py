"""``ribbed report``: one self-contained HTML page of a run or a sweep, with its figures.

:func:`write_report` reads a run directory or a sweep folder (:mod:`ribbed.run_data`), decides
which figures of :mod:`ribbed.figures` apply to it, draws them, and writes them as PNG files
and one HTML page that embeds every PNG as a ``data:`` URI: the page needs no other file and no
network to be viewed, and refers to nothing outside itself.  By default both go to a folder
``report/`` inside the run or sweep folder (``report/report.html`` and ``report/*.png``);
``out`` names another HTML file, and the PNGs go beside it.

A figure that does not apply (no guided population, a task whose inputs are not images, a
network too large to draw as a graph...) is not drawn; the page says why in one line.  A sweep
gets an overview (the learning curves of every grid point, and a table of final metrics with
95% intervals across seeds), then one section per grid point; figures of one run's state
(receptive fields, tuning, clusters, the weight graph) are drawn from the point's first seed.
"""

from __future__ import annotations

import base64
import html
import io
import re
import time
import warnings
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from string import Template

import numpy as np
import pandas as pd

from ribbed import figures
from ribbed.environment.tasks import image_shape
from ribbed.errors import Problem, RibbedError
from ribbed.intervals import mean_ci
from ribbed.run_data import Group, Results, RunFiles, analysed_populations as _analysed, guided_populations as _guided
from ribbed.run_data import headline_metrics, load_results, spiking_populations as _spiking_populations

__all__ = ["FIGURE_TITLES", "MAX_GRAPH_NEURONS", "Drawn", "Skipped", "plan_group", "write_report"]

#: The largest network drawn as a weight graph: above it, a graph of its synapses is unreadable.
MAX_GRAPH_NEURONS = 200
#: Every figure a report can hold, by key (the PNG's name ends with it).
FIGURE_TITLES = {
    "learning-curves": "Learning curves",
    "messages": "Messages by kind",
    "selectivity": "Selectivity over time, against its nulls",
    "mutual-info": "Mutual information over time, against its nulls",
    "coverage": "Class-preference coverage",
    "receptive-fields": "Receptive fields",
    "tuning": "Class-tuning matrix",
    "alpha-r2": "Alpha against guide R²",
    "clusters": "Cluster membership and purity",
    "modularity": "Modularity",
    "evolved-kinds": "Evolved guide kinds",
    "weight-graph": "Weight graph",
    "raster": "Spike raster",
    "firing-rates": "Firing-rate distributions",
    "stdp-weights": "Weights of the STDP projections",
}


@dataclass
class Drawn:
    """A figure drawn for a section: its key, title, caption and PNG bytes."""

    key: str
    title: str
    caption: str
    png: bytes


@dataclass
class Skipped:
    """A figure that does not apply, and why (one line)."""

    key: str
    title: str
    reason: str


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _one_cluster_each(agents: pd.DataFrame, population: str) -> bool:
    """Whether every neuron of ``population`` is always its own cluster (direct coupling)."""
    neurons = agents[(agents["population"] == population) & (agents["agent_kind"] == "neuron")]
    neurons = neurons[np.isfinite(neurons["cluster"].to_numpy(dtype=np.float64))]
    if neurons.empty:
        return False
    per_tick = neurons.groupby(["seed", "tick"]).agg(n=("AgentID", "size"), clusters=("cluster", "nunique"))
    return bool((per_tick["n"] == per_tick["clusters"]).all())


def _last_snapshot(run: RunFiles):
    """(the run's log opened, the tick of its last snapshot), or (None, reason)."""
    from ribbed.log.reader import LogReader

    if run.log_path is None:
        return None, "the run has no message log (log.level off), so its weights were not kept"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        log = LogReader(run.log_path)
    ticks = log.snapshot_ticks
    if len(ticks) == 0:
        log.close()
        return None, "the run's log holds no snapshot yet (it stopped before its first evaluation)"
    return log, int(ticks[-1])


def _agents_at(agents: pd.DataFrame | None, run: RunFiles, population: str, tick: int) -> pd.DataFrame | None:
    """The neuron rows of ``population`` in ``run`` at the last evaluation at or before ``tick``."""
    if agents is None:
        return None
    rows = agents[(agents["seed"] == run.seed) & (agents["population"] == population)
                  & (agents["agent_kind"] == "neuron") & (agents["tick"] <= tick)]
    if rows.empty:
        return None
    return rows[rows["tick"] == rows["tick"].max()].sort_values("AgentID")


def _draw(items: list, key: str, caption: str, build, suffix: str = "", title: str | None = None) -> None:
    """Draw one figure into ``items``; a figure function that finds nothing to draw is a skip."""
    title = title or FIGURE_TITLES[key] + suffix
    name = key + (f"-{_slug(suffix)}" if suffix else "")
    try:
        figure = build()
    except ValueError as exc:
        items.append(Skipped(name, title, str(exc)))
        return
    items.append(Drawn(name, title, caption, _png(figure)))


def plan_group(group: Group, scenario: dict, *, overview: bool = False) -> list[Drawn | Skipped]:
    """Every figure of one group (a run, or a grid point's seeds), drawn or skipped with why."""
    items: list[Drawn | Skipped] = []
    metrics, agents = group.metrics, group.agents
    seeds = len(group.runs)
    band = f" Lines are the mean over {seeds} seeds, bands its 95% t-interval." if seeds > 1 else ""
    if metrics is None:
        items.append(Skipped("learning-curves", FIGURE_TITLES["learning-curves"],
                             "the run has not evaluated yet (metrics.csv holds no row)"))
        return items
    _draw(items, "learning-curves", "Loss on the training batches and on the held-out set, and the held-out score, "
          "at each evaluation (tick 0 is the initialization)." + band, lambda: figures.learning_curves(metrics))
    _draw(items, "messages", "Messages sent in each evaluation window, by kind." + band.replace("Lines", "Bars")
          .replace(", bands its 95% t-interval", ""), lambda: figures.messages_by_kind(metrics))
    classification = "test_accuracy" in metrics
    analysed = _analysed(metrics)
    outputs = next((p for p in scenario["populations"] if p.get("role") == "output"), None)
    n_classes = int(outputs["size"]) if outputs else 0
    if not classification:
        for key in ("selectivity", "mutual-info", "coverage", "tuning"):
            items.append(Skipped(key, FIGURE_TITLES[key], "a regression task has no classes to be selective to"))
    elif not analysed or agents is None:
        for key in ("selectivity", "mutual-info", "coverage", "tuning"):
            items.append(Skipped(key, FIGURE_TITLES[key], "no hidden population's selectivity was recorded"))
    else:
        for population in analysed:
            suffix = f": {population}" if len(analysed) > 1 else ""
            for key, measure in (("selectivity", "selectivity"), ("mutual-info", "mutual_info")):
                _draw(items, key, f"Each neuron's {measure.replace('_', ' ')} at every evaluation (boxes), the "
                      "population mean, the distribution at initialization (grey band) and, where recorded, the "
                      "label-permutation null of the mean (orange band) and of single neurons (dashed).",
                      lambda m=measure, p=population: figures.specialization_over_time(agents, metrics, p, m), suffix)
            _draw(items, "coverage", "How many neurons prefer each class at each evaluation, and the share of "
                  "classes preferred by at least one neuron.",
                  lambda p=population: figures.preference_coverage(agents, metrics, p, n_classes), suffix)
            tuning = group.tuning
            if tuning is None:
                items.append(Skipped("tuning", FIGURE_TITLES["tuning"] + suffix,
                                     "the run wrote no tuning.csv (runs of an older ribbed)"))
            else:
                _draw(items, "tuning", "Each neuron's mean response to each class at the last evaluation, neurons "
                      "sorted by preferred class." + (" First seed." if seeds > 1 else ""),
                      lambda p=population: figures.tuning_matrix(tuning, p), suffix)
    _receptive_fields(items, group, scenario, analysed)
    guided = _guided(metrics)
    if not guided:
        for key in ("alpha-r2", "clusters", "modularity", "evolved-kinds"):
            items.append(Skipped(key, FIGURE_TITLES[key], "no population has a guide"))
    else:
        for population in guided:
            suffix = f": {population}" if len(guided) > 1 else ""
            _draw(items, "alpha-r2", "The guides' R² on held-out credit, and the trust alpha the neurons give them "
                  "(mean, 10th-90th percentile); where recorded, each meta unit's alpha against its guide's R²."
                  + band, lambda p=population: figures.alpha_and_guide_r2(metrics, p, agents), suffix)
            if agents is None:
                items.append(Skipped("clusters", FIGURE_TITLES["clusters"] + suffix, "the run wrote no agents.csv"))
            elif _one_cluster_each(agents, population):
                items.append(Skipped("clusters", FIGURE_TITLES["clusters"] + suffix, "every neuron is its own "
                                     "cluster (direct coupling): membership and purity say nothing"))
            else:
                _draw(items, "clusters", "Cluster of each neuron at each evaluation (first seed), sorted by the final "
                      "cluster; purity of the clusters with respect to preferred classes, against shuffled labels.",
                      lambda p=population: figures.cluster_membership(agents, metrics, p), suffix)
            if agents is None or "guide_kind" not in agents:
                why = "the guides do not evolve" if agents is not None else "the run wrote no agents.csv"
                items.append(Skipped("evolved-kinds", FIGURE_TITLES["evolved-kinds"] + suffix, why))
            else:
                _draw(items, "evolved-kinds", "The kind of candidate serving each neuron's meta unit (share of neurons, "
                      "and their mean serving fitness) at every evaluation; at the last, the kinds by preferred class "
                      "with Cramér's V against its label-permutation null, and each kind's neurons' selectivity with "
                      "the spread of the kinds' means against its kind-permutation null (first seed).",
                      lambda p=population: figures.evolved_kinds(agents, p), suffix)
        _draw(items, "modularity", "Modularity of the |W| graph of each guided population under its clusters." + band,
              lambda: figures.modularity_over_time(metrics, guided))
    _weight_graph(items, group)
    _spiking(items, group, scenario)
    _stdp_weights(items, group, scenario)
    return items


def _stdp_projections(scenario: dict) -> dict[str, tuple[float, float]]:
    """The projections that learn by STDP or R-STDP (by name, as the log names them), with their
    weight bounds (w_min, w_max)."""
    default = scenario.get("learning") or {}
    found = {}
    for projection in scenario.get("projections", []):
        learning = {**default, **(projection.get("learning") or {})}
        if learning.get("rule") in ("stdp", "r_stdp") and not projection.get("frozen"):
            stdp = {**(default.get("stdp") or {}), **(learning.get("stdp") or {})}
            name = projection.get("name") or f"{projection['pre']}->{projection['post']}"
            found[name] = (float(stdp.get("w_min", 0.0)), float(stdp.get("w_max", 1.0)))
    return found


def _stdp_weights(items: list, group: Group, scenario: dict) -> None:
    """The weight distributions of the STDP projections at the first and the last snapshot."""
    key, title = "stdp-weights", FIGURE_TITLES["stdp-weights"]
    bounds = _stdp_projections(scenario)
    if not bounds:
        items.append(Skipped(key, title, "no projection learns by STDP"))
        return
    run = group.first
    log, tick = _last_snapshot(run)
    if log is None:
        items.append(Skipped(key, title, tick))
        return
    with log:
        first_tick = int(log.snapshot_ticks[0])
        first, last = log.weights(first_tick, dense=False), log.weights(tick, dense=False)
    weights = {name: (first[name].weights, last[name].weights) for name in bounds if name in last}
    _draw(items, key, f"Each STDP projection's weights at the first snapshot (tick {first_tick}, dashed) and the last "
          f"(tick {tick})" + (" (first seed)" if len(group.runs) > 1 else "") + ", on the axis of its bounds.",
          lambda: figures.weight_distribution(weights, bounds, (first_tick, tick)))


def _spiking(items: list, group: Group, scenario: dict) -> None:
    """The spike raster and the firing-rate distributions of the spiking populations."""
    spiking = _spiking_populations(scenario)
    if not spiking:
        for key in ("raster", "firing-rates"):
            items.append(Skipped(key, FIGURE_TITLES[key], "no population spikes (every population follows the rate "
                                 "policy)"))
        return
    first = " First seed." if len(group.runs) > 1 else ""
    raster = group.first.raster
    if raster is None:
        items.append(Skipped("raster", FIGURE_TITLES["raster"], "the run wrote no raster.npz (it has not evaluated "
                             "yet, or was run by an older ribbed)"))
    else:
        _draw(items, "raster", f"What each neuron of the spiking populations emitted at every step for the first "
              f"held-out samples, at the evaluation of tick {raster.tick}: a mark per spike." + first,
              lambda: figures.spike_raster(raster.spikes, raster.labels, title=f"Spikes at tick {raster.tick}"))
    if group.agents is None:
        items.append(Skipped("firing-rates", FIGURE_TITLES["firing-rates"], "the run wrote no agents.csv "
                             "(output.agent_metrics is off)"))
    else:
        _draw(items, "firing-rates", "Each spiking neuron's firing rate (spikes per step over the held-out samples) "
              "at the last evaluation, and at initialization (dashed outline).",
              lambda: figures.firing_rates(group.agents, spiking))


def _receptive_fields(items: list, group: Group, scenario: dict, analysed: list[str]) -> None:
    key, title = "receptive-fields", FIGURE_TITLES["receptive-fields"]
    kind = scenario.get("task", {}).get("kind")
    shape = image_shape(kind)
    if shape is None:
        items.append(Skipped(key, title, f"the task's inputs ({kind}) are not images"))
        return
    run = group.first
    layout = run.layout
    inputs = next(p for p in layout["populations"] if p["role"] == "input")
    if inputs["size"] != shape[0] * shape[1]:
        items.append(Skipped(key, title, f"the input population has {inputs['size']} neurons, not the "
                             f"{shape[0]}x{shape[1]} pixels of the task's images"))
        return
    roles = {p["name"]: p["role"] for p in layout["populations"]}
    targets = [p for p in layout["projections"] if p["pre"] == inputs["name"] and roles[p["post"]] == "hidden"]
    if not targets:
        items.append(Skipped(key, title, "no projection runs from the image input to a hidden population"))
        return
    log, tick = _last_snapshot(run)
    if log is None:
        items.append(Skipped(key, title, tick))
        return
    with log:
        weights = log.weights(tick)
    for projection in targets:
        rows = _agents_at(group.agents, run, projection["post"], tick)
        preferred = rows["preferred_class"].to_numpy(dtype=np.float64) if rows is not None else None
        cluster = rows["cluster"].to_numpy(dtype=np.float64) if rows is not None else None
        if preferred is not None and len(preferred) != weights[projection["name"]].shape[0]:
            preferred = cluster = None
        suffix = f": {projection['name']}" if len(targets) > 1 else ""
        _draw(items, key, f"Incoming weights of each {projection['post']} neuron from the {shape[0]}x{shape[1]} "
              f"image, at tick {tick}" + (" (first seed)" if len(group.runs) > 1 else "") + "; labels: cluster (c) "
              "and preferred class (k).",
              lambda w=weights[projection["name"]], p=preferred, c=cluster, n=projection["name"]:
              figures.receptive_fields(w, shape, preferred=p, cluster=c, title=f"{n} at tick {tick}"), suffix)


def _weight_graph(items: list, group: Group) -> None:
    key, title = "weight-graph", FIGURE_TITLES["weight-graph"]
    run = group.first
    layout = run.layout
    neurons = sum(p["size"] for p in layout["populations"])
    if neurons > MAX_GRAPH_NEURONS:
        items.append(Skipped(key, title, f"the network has {neurons} neurons, more than {MAX_GRAPH_NEURONS}: a "
                             "graph of its synapses would be unreadable"))
        return
    log, tick = _last_snapshot(run)
    if log is None:
        items.append(Skipped(key, title, tick))
        return
    with log:
        weights = log.weights(tick)
    _draw(items, key, f"The network's strongest synapses at tick {tick}" + (" (first seed)" if len(group.runs) > 1
          else "") + ", one column per population; width by |w|, red positive, blue negative.",
          lambda: figures.weight_graph(weights, layout["populations"], layout["projections"],
                                       title=f"Weights at tick {tick}"))


# ---------------------------------------------------------------------------------- numbers


def _finals(group: Group) -> pd.DataFrame | None:
    """Each run's last metrics row (its final evaluation)."""
    frames = [run.metrics.iloc[[-1]] for run in group.runs if run.metrics is not None]
    return pd.concat(frames, ignore_index=True) if frames else None


def _initials(group: Group) -> pd.DataFrame | None:
    frames = [run.metrics[run.metrics["tick"] == 0] for run in group.runs if run.metrics is not None]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else None


def _cell(values) -> str:
    return html.escape(mean_ci(values).text())


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _finals_table(groups: list[Group]) -> str:
    finals = {g.label: _finals(g) for g in groups}
    present = [f for f in finals.values() if f is not None]
    if not present:
        return "<p>No run has evaluated yet.</p>"
    names = headline_metrics(pd.concat(present, ignore_index=True, sort=False))
    rows = []
    for label, final in finals.items():
        if final is None:
            rows.append([html.escape(label)] + ["-"] * (len(names) + 1))
            continue
        rows.append([html.escape(label), str(len(final))]
                    + [_cell(final[n]) if n in final else "-" for n in names])
    return _table(["", "seeds", *names], rows)


def _specialization_table(group: Group) -> str:
    """Final value against its value at initialization and its nulls, with p-values where recorded."""
    final, initial = _finals(group), _initials(group)
    if final is None:
        return ""
    rows = []
    for population in _analysed(final):
        for measure in ("selectivity", "mutual_info"):
            def value(frame, suffix):
                column = f"{population}_{measure}_{suffix}"
                return _cell(frame[column]) if frame is not None and column in frame else "-"

            rows.append([html.escape(f"{population} {measure.replace('_', ' ')} (mean)"), value(final, "mean"),
                         value(initial, "mean"), value(final, "null_mean"), value(final, "p"),
                         value(final, "above_null")])
        kept = f"{population}_preferred_kept"
        if kept in final:
            rows.append([html.escape(f"{population} neurons that kept their tick-0 preferred class"),
                         _cell(final[kept]), "-", "-", "-", "-"])
    for population in _guided(final):
        def purity(frame, column):
            return _cell(frame[column]) if frame is not None and column in frame else "-"

        rows.append([html.escape(f"{population} cluster purity"), purity(final, f"{population}_purity"),
                     purity(initial, f"{population}_purity"), purity(final, f"{population}_purity_shuffled"),
                     purity(final, f"{population}_purity_p"), "-"])
    if not rows:
        return ""
    return ("<h3>Specialization: final, at initialization, and under the null</h3>"
            + _table(["", "final", "at tick 0", "null mean (label permutation)", "p", "share of neurons above null"],
                     rows))


def _status(group: Group) -> str:
    parts = []
    for run in group.runs:
        last = int(run.metrics["tick"].iloc[-1]) if run.metrics is not None else None
        parts.append(f"seed {run.seed}: {run.status}" + (f", last evaluation at tick {last}" if last is not None
                                                          else ", not evaluated yet"))
    return "; ".join(parts)


# ---------------------------------------------------------------------------------- the page


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "run"


def _section(title: str, intro: str, items: list[Drawn | Skipped], prefix: str, folder: Path) -> str:
    parts = [f"<h2>{html.escape(title)}</h2>", intro]
    skipped = []
    for item in items:
        if isinstance(item, Skipped):
            skipped.append(f"<li><b>{html.escape(item.title)}</b>: {html.escape(item.reason)}</li>")
            continue
        name = f"{prefix}-{item.key}.png"
        (folder / name).write_bytes(item.png)
        data = base64.b64encode(item.png).decode("ascii")
        parts.append(f'<figure id="{html.escape(name[:-4])}"><h3>{html.escape(item.title)}</h3>'
                     f'<img alt="{html.escape(item.title)}" src="data:image/png;base64,{data}">'
                     f"<figcaption>{html.escape(item.caption)} ({html.escape(name)})</figcaption></figure>")
    if skipped:
        parts.append('<div class="skipped"><p>Not drawn:</p><ul>' + "".join(skipped) + "</ul></div>")
    return "\n".join(parts)


def _report_path(results: Results, out: str | Path | None) -> Path:
    target = Path(out) if out is not None else results.directory / "report" / "report.html"
    if target.exists() and target.is_dir():
        target = target / "report.html"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RibbedError(Problem(str(target.parent), "--out", f"cannot create the report's folder: "
                                  f"{exc.strerror or exc}", "choose a folder this process can write to")) from None
    return target


def write_report(path: str | Path, out: str | Path | None = None) -> Path:
    """Write the report of the run directory or sweep folder at ``path`` (see the module
    docstring) and return the HTML file's path."""
    started = time.perf_counter()
    results = load_results(path)
    target = _report_path(results, out)
    folder = target.parent
    sections = []
    if results.kind == "sweep":
        grid = ", ".join(f"{k} = {v}" for k, v in results.grid.items()) or "no swept field"
        overview: list[Drawn | Skipped] = []
        if results.metrics is not None:
            _draw(overview, "learning-curves", "Every grid point's learning curves: mean over seeds, band its 95% "
                  "t-interval.", lambda: figures.learning_curves(results.metrics, "Learning curves by grid point"))
        sections.append(_section("Overview", f"<p>Grid: {html.escape(grid)}; seeds: "
                                 f"{html.escape(str(sorted({s for g in results.groups for s in g.seeds})))}.</p>"
                                 "<h3>Final metrics (mean ± half the 95% t-interval across seeds)</h3>"
                                 + _finals_table(results.groups), overview, "overview", folder))
        for index, group in enumerate(results.groups):
            scenario = group.first.scenario if group.first is not None else results.scenario
            intro = (f"<p class=\"meta\">{html.escape(_status(group))}</p>" + _specialization_table(group))
            sections.append(_section(f"Point {index}: {group.label}", intro, plan_group(group, scenario),
                                     f"p{index}", folder))
    else:
        group = results.groups[0]
        intro = (f"<p class=\"meta\">{html.escape(_status(group))}</p><h3>Final metrics</h3>"
                 + _finals_table([group]) + _specialization_table(group))
        sections.append(_section("Run", intro, plan_group(group, results.scenario), "run", folder))
    meta = (f"{results.kind} folder {results.directory} · scenario {results.name} · written "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')} in {time.perf_counter() - started:.1f} s")
    page = Template(files("ribbed").joinpath("report_template.html").read_text(encoding="utf-8")).substitute(
        title=html.escape(f"{results.name} ({results.kind})"), meta=html.escape(meta), body="\n".join(sections))
    try:
        target.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise RibbedError(Problem(str(target), "", f"cannot write the report: {exc.strerror or exc}",
                                  "choose a folder this process can write to (--out)")) from None
    return target
