"""Every figure of :mod:`ribbed.figures`, drawn from a real run's files: it shows data, and it
changes when that data changes."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from matplotlib.figure import Figure
from report_runs import run_dir, sweep_dir

from ribbed import figures
from ribbed.log import open_log
from ribbed.run_data import load_results


def png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def drawn(figure: Figure) -> int:
    """How many things with data the figure's axes hold (lines with points, images, patches, collections)."""
    count = 0
    for ax in figure.axes:
        count += sum(1 for line in ax.get_lines() if len(line.get_xdata()) > 0)
        count += len(ax.get_images()) + len(ax.patches) + len(ax.collections)
    return count


def check(build, before, after) -> None:
    """``build(data)`` draws something from the run's data, and a different picture from the changed data."""
    first, second = build(before), build(after)
    assert isinstance(first, Figure) and drawn(first) > 0
    assert png(first) != png(second)


@pytest.fixture(scope="module")
def digits():
    return load_results(run_dir("digits")).groups[0]


@pytest.fixture(scope="module")
def guided():
    return load_results(run_dir("digits-specialize", 60, 20)).groups[0]


def changed(frame, column, factor=0.5):
    other = frame.copy()
    other[column] = other[column] * factor
    return other


def test_learning_curves(digits):
    check(figures.learning_curves, digits.metrics, changed(digits.metrics, "test_loss"))


def test_learning_curves_of_a_sweep_draw_a_band_per_grid_point():
    metrics = load_results(sweep_dir()).metrics
    figure = figures.learning_curves(metrics)
    assert drawn(figure) > 0
    bands = [c for ax in figure.axes for c in ax.collections]  # fill_between: one per line with seeds
    assert len(bands) == 6  # 2 points x (held-out loss, training loss, held-out accuracy)
    check(figures.learning_curves, metrics, changed(metrics, "test_accuracy"))


def test_messages_by_kind(digits):
    figure = figures.messages_by_kind(digits.metrics)
    assert {t.get_text() for t in figure.axes[0].get_legend().get_texts()} == {"activation", "error"}
    check(figures.messages_by_kind, digits.metrics, changed(digits.metrics, "msg_error", 3))


@pytest.mark.parametrize("measure", ["selectivity", "mutual_info"])
def test_specialization_over_time(digits, measure):
    check(lambda agents: figures.specialization_over_time(agents, digits.metrics, "hidden", measure),
          digits.agents, changed(digits.agents, measure, 2.0))


def test_specialization_is_drawn_against_the_runs_permutation_null(digits):
    metrics = digits.metrics
    figure = figures.specialization_over_time(digits.agents, metrics, "hidden")
    assert len(figure.axes) == 2  # the share above the null gets its own panel
    labels = {t.get_text() for t in figure.axes[0].get_legend().get_texts()}
    assert {"permutation null of the mean (2.5-97.5%)", "per-neuron null, 90th percentile"} <= labels
    check(lambda m: figures.specialization_over_time(digits.agents, m, "hidden"), metrics,
          changed(metrics, "hidden_selectivity_null_hi", 2.0))


def test_preference_coverage(digits):
    agents = digits.agents.copy()
    other = agents.copy()
    other.loc[other["population"] == "hidden", "preferred_class"] = 3.0
    check(lambda a: figures.preference_coverage(a, digits.metrics, "hidden", 10), agents, other)


def test_receptive_fields_are_the_logged_input_weights(digits):
    run = digits.first
    with open_log(run.log_path) as log:
        weights = log.weights(40)["pixels->hidden"]
    rows = digits.agents[(digits.agents["tick"] == 40) & (digits.agents["population"] == "hidden")]
    preferred = rows["preferred_class"].to_numpy()
    figure = figures.receptive_fields(weights, (8, 8), preferred=preferred, cluster=rows["cluster"].to_numpy())
    mosaic = figure.axes[0].get_images()[0].get_array()
    assert mosaic.shape == (8 * 9 - 1, 8 * 9 - 1)  # 8 x 8 tiles of 8 x 8 pixels, one blank pixel apart
    first = int(np.lexsort((np.arange(64), preferred))[0])  # sorted by preferred class
    np.testing.assert_allclose(mosaic[:8, :8], weights[first].reshape(8, 8) / np.abs(weights[first]).max())
    second = int(np.lexsort((np.arange(64), preferred))[1])
    np.testing.assert_allclose(mosaic[:8, 9:17], weights[second].reshape(8, 8) / np.abs(weights[second]).max())
    check(lambda w: figures.receptive_fields(w, (8, 8), preferred=preferred), weights, -weights)


def test_tuning_matrix_from_the_runs_tuning_table(digits):
    tuning = digits.tuning  # tuning.csv: tick, AgentID, population, class, response
    assert tuning is not None and set(tuning["class"]) == set(range(10))
    figure = figures.tuning_matrix(tuning, "hidden")
    matrix = figure.axes[0].get_images()[0].get_array()
    assert matrix.shape == (64, 10)
    assert list(np.argmax(matrix, axis=1)) == sorted(np.argmax(matrix, axis=1))  # sorted by preferred class
    check(lambda t: figures.tuning_matrix(t, "hidden"), tuning, changed(tuning, "response", -1.0))


def test_alpha_and_guide_r2(guided):
    check(lambda m: figures.alpha_and_guide_r2(m, "hidden"), guided.metrics, changed(guided.metrics, "hidden_guide_r2"))
    figure = figures.alpha_and_guide_r2(guided.metrics, "hidden", guided.agents)
    assert len(figure.axes) == 2  # the meta units' own guide R² and alpha (agents.csv's cluster rows)
    units = figure.axes[1].collections[0].get_offsets()
    assert len(units) == 8  # hash coupling, 3 bits
    check(lambda a: figures.alpha_and_guide_r2(guided.metrics, "hidden", a), guided.agents,
          changed(guided.agents, "guide_r2", 0.25))


def test_cluster_membership(guided):
    agents = guided.agents
    hidden = agents[(agents["population"] == "hidden") & (agents["agent_kind"] == "neuron")]
    assert hidden.groupby("tick")["cluster"].nunique().max() > 1  # hash coupling: real clusters
    check(lambda a: figures.cluster_membership(a, guided.metrics, "hidden"), agents, changed(agents, "cluster", 0.0))
    check(lambda m: figures.cluster_membership(agents, m, "hidden"), guided.metrics,
          changed(guided.metrics, "hidden_purity"))


def test_modularity_over_time(guided):
    check(lambda m: figures.modularity_over_time(m, ["hidden"]), guided.metrics,
          changed(guided.metrics, "hidden_modularity", -2.0))


def test_weight_graph_draws_the_strongest_synapses(digits):
    layout = digits.first.layout
    with open_log(digits.first.log_path) as log:
        weights = log.weights(40)
    figure = figures.weight_graph(weights, layout["populations"], layout["projections"], max_edges=300)
    assert "300 strongest of 4736" in figure.axes[0].get_title()
    flipped = {name: -w for name, w in weights.items()}
    check(lambda w: figures.weight_graph(w, layout["populations"], layout["projections"]), weights, flipped)


def test_a_figure_with_nothing_to_draw_says_so(digits):
    with pytest.raises(ValueError, match="nothing to draw"):
        figures.specialization_over_time(digits.agents, digits.metrics, "no-such-population")
    with pytest.raises(ValueError, match="nothing to draw"):
        figures.alpha_and_guide_r2(digits.metrics, "hidden")  # digits has no guide


# ------------------------------------------------------------------------------ spiking populations


@pytest.fixture(scope="module")
def spiking():
    return load_results(run_dir("digits-spiking")).groups[0]


def test_the_raster_marks_exactly_the_runs_spikes(spiking):
    raster = spiking.first.raster
    assert raster is not None and set(raster.spikes) == {"hidden", "classes"}
    steps = load_results(run_dir("digits-spiking")).scenario["run"]["steps_per_sample"]
    for values in raster.spikes.values():
        assert values.shape[:2] == (8, steps) and set(np.unique(values)) <= {0, 1}
    assert raster.spikes["hidden"].sum() > 0
    figure = figures.spike_raster(raster.spikes, raster.labels, samples=3)
    for ax, name in zip(figure.axes, ("hidden", "classes")):
        (marks,) = ax.collections
        sample, step, neuron = np.nonzero(raster.spikes[name][:3])
        expected = np.stack([sample * steps + step, neuron], axis=1)
        assert np.array_equal(np.asarray(marks.get_offsets()), expected)
        assert f"class {int(raster.labels[0])}" in ax.get_xticklabels()[0].get_text()
    flipped = {name: 1 - values for name, values in raster.spikes.items()}
    check(lambda spikes: figures.spike_raster(spikes, raster.labels), raster.spikes, flipped)


def test_firing_rates_are_the_spiking_neurons_rates_at_the_last_evaluation(spiking):
    agents = spiking.agents
    figure = figures.firing_rates(agents, ["hidden", "classes"])
    last = agents[(agents["tick"] == agents["tick"].max()) & (agents["population"] == "hidden")]
    hidden_bars = figure.axes[0].patches[:40]  # the first histogram drawn: hidden at the last evaluation
    assert sum(bar.get_height() for bar in hidden_bars) == len(last) == 100
    assert "hidden at tick" in figure.axes[0].get_legend().get_texts()[0].get_text()
    check(lambda frame: figures.firing_rates(frame, ["hidden", "classes"]), agents,
          changed(agents, "activation_mean", 0.5))
    with pytest.raises(ValueError, match="nothing to draw"):
        figures.firing_rates(agents, ["no-such-population"])


def test_live_spike_figures(spiking):
    raster = spiking.first.raster
    assert drawn(figures.live_raster(raster.spikes, raster.labels, "spikes")) > 0
    assert drawn(figures.live_firing_rates({"hidden": np.array([0.1, 0.2, 0.0])}, "rates")) > 0


def _evolved_agents(specialized: bool):
    """One evaluation of 40 neurons served by linear or mlp candidates: with ``specialized``, the
    mlp neurons prefer classes 2-3 and are more selective; without, each class and selectivity
    level has as many neurons of each kind."""
    import pandas as pd

    kinds = np.array(["linear", "mlp"] * 20) if not specialized else np.repeat(["linear", "mlp"], 20)
    index = np.arange(40)
    classes = (index // 2) % 4 if not specialized else np.where(kinds == "mlp", 2 + index % 2, index % 2)
    selectivity = (0.2 + 0.1 * ((index // 2) % 3) if not specialized
                   else np.where(kinds == "mlp", 0.6, 0.2) + 0.01 * (index % 3))
    return pd.DataFrame({"tick": 100, "AgentID": index, "population": "hidden", "agent_kind": "neuron",
                         "guide_kind": kinds, "guide_fitness": 0.5, "preferred_class": classes.astype(float),
                         "selectivity": selectivity})


@pytest.mark.parametrize("specialized", [True, False])
def test_evolved_kinds_tests_class_and_selectivity_against_their_nulls(specialized):
    """The evolved-kinds figure's statistics: Cramér's V of kind against preferred class and the
    spread of the kinds' mean selectivities, each beside its permutation null's 95th percentile;
    kinds that split by class and selectivity stand above both nulls, a balanced design at 0."""
    fig = figures.evolved_kinds(_evolved_agents(specialized), "hidden")
    _, by_class, by_selectivity = fig.axes[:3]
    v, v_null = map(float, re.findall(r"V ([0-9.]+) .*percentile ([0-9.]+)", by_class.get_title())[0])
    spread, s_null = map(float, re.findall(r"means ([0-9.]+) .*percentile ([0-9.]+)", by_selectivity.get_title())[0])
    if specialized:
        assert v == pytest.approx(1.0) and v > v_null
        assert spread == pytest.approx(0.4) and spread > s_null
    else:
        assert v == 0.0 and spread == pytest.approx(0.0, abs=1e-12)
