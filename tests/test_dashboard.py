"""The dashboard page as a widget tree (``solara.render``, no browser): its controls, its plots,
what a step and a Reset with a moved slider do, and the plots' data against the model's metrics.

The page is rendered inside solara's AppLayout, as ``solara run`` serves it: SolaraViz puts its
controls in the layout's sidebar.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import ipyvuetify
import ipywidgets
import solara
from matplotlib.figure import Figure

from ribbed import load_scenario
from ribbed.dashboard import (
    Dashboard, DashboardModel, Page, accuracy_figure, alpha_figure, clusters_figure, firing_rate_figure, loss_figure,
    model_params, raster_figure, readout, selectivity_figure)
from ribbed.dashboard_server import (
    EVAL_EVERY_VARIABLE, OFFLINE_CDN, SCENARIO_VARIABLE, check_eval_every, server_command, server_environment)
from ribbed.errors import ScenarioError

PLOTS = ("Loss", "Accuracy", "Selectivity", "Alpha", "Clusters", "Spikes", "Firing rates")
SLIDERS = {"seed": "seed", "learning__lr": "learning rate (learning.lr)", "run__batch_size": "batch size (run.batch_size)",
           "schedule__backward_every": "error every (schedule.backward_every)",
           "run__eval_every": "evaluate every (run.eval_every)"}


def render(scenario: str, eval_every: int = 1):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, rc = solara.render(solara.AppLayout(children=[Dashboard(scenario, eval_every)]), handle_error=False)
    return rc


def widgets(root) -> list[ipywidgets.Widget]:
    """Every widget under ``root`` (a widget, or a render context's container), depth first."""
    found, stack = [], [getattr(root, "container", root)]
    while stack:
        item = stack.pop()
        found.append(item)
        children = list(getattr(item, "children", None) or [])
        if isinstance(getattr(item, "items", None), list):  # the grid of SolaraViz's components
            children += item.items
        stack.extend(reversed([child for child in children if isinstance(child, ipywidgets.Widget)]))
    return found


def texts(rc) -> list[str]:
    return [child for widget in widgets(rc) if isinstance(widget, ipyvuetify.Html)
            for child in widget.children if isinstance(child, str)]


def readout_value(rc, label: str) -> str:
    found = [text.split(": ", 1)[1] for text in texts(rc) if text.startswith(f"{label}: ")]
    assert len(found) == 1, (label, texts(rc))
    return found[0]


def card(rc, title: str):
    """The card titled ``title`` (a widget)."""
    cards = [w for w in widgets(rc) if isinstance(w, ipyvuetify.Card)
             and any(isinstance(c, ipyvuetify.CardTitle) and c.children == [title] for c in w.children)]
    assert len(cards) == 1, title
    return cards[0]


def images(widget) -> list[ipywidgets.Image]:
    return [w for w in widgets(widget) if isinstance(w, ipywidgets.Image)]


def notes(widget) -> list[str]:
    return [w.children[0] for w in widgets(widget) if isinstance(w, ipyvuetify.Alert)]


def plot_bytes(rc, title: str) -> bytes:
    found = images(card(rc, title))
    assert len(found) == 1, f"{title} has no plot"
    return bytes(found[0].value)


def button(rc, label: str):
    return rc.find(ipyvuetify.Btn, children=[label]).widget


# ------------------------------------------------------------------------------ the page


def test_page_has_the_controls_sliders_readout_and_plots():
    rc = render("digits")
    for label in ("Reset", "▶", "Step"):
        assert not button(rc, label).disabled
    sliders = {w.label: w.v_model for w in widgets(rc) if isinstance(w, ipyvuetify.Slider)}
    scenario = load_scenario("digits")
    assert sliders[SLIDERS["seed"]] == scenario.seed
    assert sliders[SLIDERS["learning__lr"]] == pytest.approx(scenario.learning.lr)
    assert sliders[SLIDERS["run__batch_size"]] == scenario.run.batch_size
    assert sliders[SLIDERS["schedule__backward_every"]] == scenario.schedule.backward_every
    assert sliders[SLIDERS["run__eval_every"]] == 1
    for title in ("Model", *PLOTS):
        card(rc, title)
    # Evaluated at once: tick 0 is drawn before the first step.
    assert readout_value(rc, "tick") == f"0 of {scenario.run.ticks}"
    assert readout_value(rc, "evaluated at tick") == "0"
    for title in ("Loss", "Accuracy", "Selectivity"):
        assert plot_bytes(rc, title).startswith(b"\x89PNG")
    # digits has no guided population: alpha and clusters say so instead of drawing empty axes.
    for title in ("Alpha", "Clusters"):
        assert not images(card(rc, title))
        assert "no guided population in 'digits'" in notes(card(rc, title))[0]
    for title in ("Spikes", "Firing rates"):  # nor a spiking one
        assert not images(card(rc, title))
        assert "no spiking population in 'digits'" in notes(card(rc, title))[0]


def test_steps_redraw_the_plots_and_the_readout():
    rc = render("digits")
    before = {title: plot_bytes(rc, title) for title in ("Loss", "Accuracy", "Selectivity")}
    step = button(rc, "Step")
    for _ in range(3):
        step.click()
    assert readout_value(rc, "tick").startswith("3 of ")
    assert readout_value(rc, "evaluated at tick") == "3"
    assert "Step: 3" in texts(rc)
    for title, old in before.items():
        assert plot_bytes(rc, title) != old, f"{title} did not change after 3 steps"


def test_a_moved_slider_takes_effect_at_reset():
    rc = render("digits")
    button(rc, "Step").click()
    slider = rc.find(ipyvuetify.Slider, label=SLIDERS["learning__lr"]).widget
    slider.v_model = 0.25
    assert readout_value(rc, "learning rate") == "0.1"  # the running model keeps its parameters
    button(rc, "Reset").click()
    assert readout_value(rc, "learning rate") == "0.25"
    assert readout_value(rc, "tick").startswith("0 of ")  # a new model, evaluated at its start
    assert readout_value(rc, "evaluated at tick") == "0"


def test_the_evaluation_slider_sets_the_cadence():
    rc = render("digits", eval_every=1)
    rc.find(ipyvuetify.Slider, label=SLIDERS["run__eval_every"]).widget.v_model = 2
    button(rc, "Reset").click()
    assert readout_value(rc, "evaluate every") == "2 ticks"
    step = button(rc, "Step")
    step.click()
    assert readout_value(rc, "evaluated at tick") == "0"  # tick 1: no evaluation
    step.click()
    assert readout_value(rc, "evaluated at tick") == "2"


def test_page_without_a_scenario_says_how_to_start_it(monkeypatch):
    monkeypatch.delenv(SCENARIO_VARIABLE, raising=False)
    _, rc = solara.render(Page(), handle_error=False)
    assert "ribbed dashboard SCENARIO" in notes(rc)[0]


def test_page_reads_the_scenario_from_the_environment(monkeypatch):
    monkeypatch.setenv(SCENARIO_VARIABLE, "xor")
    monkeypatch.setenv(EVAL_EVERY_VARIABLE, "3")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, rc = solara.render(solara.AppLayout(children=[Page()]), handle_error=False)
    assert readout_value(rc, "scenario") == "xor"
    assert readout_value(rc, "evaluate every") == "3 ticks"


# ------------------------------------------------------------------------------ the figures


def line_data(figure: Figure, label: str) -> tuple[np.ndarray, np.ndarray]:
    for ax in figure.axes:
        for line in ax.get_lines():
            if line.get_label() == label:
                return np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
    raise AssertionError(f"no line {label!r}")


def stepped(scenario: str, steps: int, **fields) -> DashboardModel:
    model = DashboardModel(scenario, run__eval_every=1, **fields)
    for _ in range(steps):
        model.step()
    return model


def test_loss_and_accuracy_plot_the_metrics():
    model = stepped("digits", 4)
    metrics = model.metrics
    assert list(metrics["tick"]) == [0, 1, 2, 3, 4]
    for figure, column, label in ((loss_figure(model), "test_loss", "held out"),
                                  (loss_figure(model), "train_loss", "train"),
                                  (accuracy_figure(model), "test_accuracy", "held out")):
        x, y = line_data(figure, label)
        np.testing.assert_array_equal(x, metrics["tick"])
        np.testing.assert_allclose(y, metrics[column], equal_nan=True)


def test_selectivity_histogram_counts_every_hidden_neuron():
    model = stepped("digits", 2)
    figure = selectivity_figure(model)
    assert isinstance(figure, Figure)
    bars = figure.axes[0].patches
    hidden = model.populations["hidden"]
    values = model.specialization.values["selectivity"][hidden.info.start:hidden.info.start + hidden.size]
    assert sum(bar.get_height() for bar in bars) == np.isfinite(values).sum() == hidden.size
    latest = model.agent_metrics.xs(model.tick, level="Step")
    np.testing.assert_allclose(np.sort(latest.loc[latest["population"] == "hidden", "selectivity"]), np.sort(values))


def test_guided_population_draws_alpha_and_clusters():
    model = stepped("digits-guide-hash", 3)
    metrics = model.metrics
    alpha = alpha_figure(model)
    clusters = clusters_figure(model)
    assert isinstance(alpha, Figure) and isinstance(clusters, Figure)
    x, y = line_data(alpha, "hidden mean")
    np.testing.assert_array_equal(x, metrics["tick"])
    np.testing.assert_allclose(y, metrics["hidden_alpha_mean"])
    _, count = line_data(clusters, "hidden clusters")
    np.testing.assert_allclose(count, metrics["hidden_clusters"])
    _, purity = line_data(clusters, "hidden purity")
    np.testing.assert_allclose(purity, metrics["hidden_purity"], equal_nan=True)


def test_plots_that_do_not_apply_say_why():
    model = stepped("sine", 1)  # regression: no classes, no guided population
    assert "no selectivity on a regression task" in selectivity_figure(model)
    assert "no guided population in 'sine'" in alpha_figure(model)
    assert "no guided population in 'sine'" in clusters_figure(model)
    x, y = line_data(accuracy_figure(model), "held out")
    np.testing.assert_allclose(y, model.metrics["test_r2"])
    assert dict(readout(model))["held-out R²"] != "-"


# ------------------------------------------------------------------------------ parameters and server settings


def test_every_slider_is_a_model_keyword():
    scenario = load_scenario("digits-guide-direct")
    params = model_params(scenario, eval_every=5)
    assert params["scenario"] is scenario
    assert {key for key in params if key != "scenario"} == set(SLIDERS)
    for key, spec in params.items():
        if key != "scenario":
            assert spec["min"] <= spec["value"] <= spec["max"], key
    values = {key: (spec["value"] if isinstance(spec, dict) else spec) for key, spec in params.items()}
    values["learning__lr"] = 0.5
    values["schedule__backward_every"] = 8
    model = DashboardModel(**values)
    assert model.scenario.learning.lr == 0.5
    assert model.scenario.schedule.backward_every == 8
    assert model.scenario.run.eval_every == 5


def test_eval_every_out_of_range_is_a_located_error():
    scenario = load_scenario("xor")
    assert check_eval_every(scenario, scenario.run.ticks) == scenario.run.ticks
    for bad in (0, scenario.run.ticks + 1, 2.5, True):
        with pytest.raises(ScenarioError, match="--eval-every"):
            check_eval_every(scenario, bad)


def test_server_is_solaras_offline(tmp_path):
    command = server_command("127.0.0.1", 8123, open_browser=False)
    assert command[1:5] == ["-m", "solara", "run", "ribbed.dashboard:Page"]
    assert command[command.index("--host") + 1] == "127.0.0.1" and command[command.index("--port") + 1] == "8123"
    assert "--no-open" in command
    scenario = tmp_path / "my.yaml"
    scenario.write_text("name: x\n")
    environment = server_environment(str(scenario), 4)
    assert environment[SCENARIO_VARIABLE] == str(scenario.resolve())
    assert environment[EVAL_EVERY_VARIABLE] == "4"
    assert environment["SOLARA_TELEMETRY_MIXPANEL_ENABLE"] == "false"
    assert environment["SOLARA_ASSETS_CDN"] == OFFLINE_CDN
    assert server_environment("digits", 1)[SCENARIO_VARIABLE] == "digits"


def test_a_spiking_models_raster_and_firing_rates_are_its_latest_evaluations():
    model = stepped("digits-spiking", 2)
    recorder = model.specialization
    assert recorder.raster_tick == 2 and set(recorder.raster) == {"hidden", "classes"}
    figure = raster_figure(model)
    assert isinstance(figure, Figure)
    steps = model.scenario.run.steps_per_sample
    marks = np.asarray(figure.axes[0].collections[0].get_offsets())
    sample, step, neuron = np.nonzero(recorder.raster["hidden"][:2, :, :100])
    assert np.array_equal(marks, np.stack([sample * steps + step, neuron], axis=1))
    rates = firing_rate_figure(model)
    hidden = np.asarray(model.executor.read("firing_rate", "hidden"))
    assert sum(bar.get_height() for bar in rates.axes[0].patches[:40]) == np.isfinite(hidden).sum() == 100
    rc = render("digits-spiking")
    for title in ("Spikes", "Firing rates"):
        assert plot_bytes(rc, title).startswith(b"\x89PNG")
