"""The page ``ribbed dashboard SCENARIO`` serves: Mesa's SolaraViz around a NetworkModel.

A Mesa user expects a model's live page to be SolaraViz: play, pause, step and reset in the
sidebar, sliders for the model's constructor keywords, and plots in the main area that redraw
after each step.  NetworkModel's keywords already follow Mesa's convention (``learning__lr`` sets
``learning.lr``), so the sliders are plain SolaraViz ``model_params``; as in every SolaraViz page,
a moved slider takes effect at the next Reset, which builds a new model with the sliders' values.

Decisions:

* **Evaluation cadence.** A scenario's ``run.eval_every`` is sized for a batch run (every 100 or
  200 ticks); a page whose curves move once every 200 clicks would look frozen.  The page
  therefore evaluates after every tick by default (an evaluation of ``digits`` costs a few
  milliseconds), and its "evaluate every (ticks)" slider (``run__eval_every``) or
  ``ribbed dashboard --eval-every N`` raises the interval for large networks.
* **The start is evaluated at once** (:class:`DashboardModel`), so the plots show tick 0 before
  the first step, after a Reset too (SolaraViz's Reset builds ``type(model)(**params)``).
* **Plots are matplotlib figures** drawn by :mod:`ribbed.figures` (the one home of plot code)
  from the model's metrics and latest values (``*_figure(model)`` here picks them), so that tests
  can check their data without a browser; a plot that does not apply (no guided population, a
  regression task without selectivity) says why in a note instead of drawing an empty axis.

The server process (``ribbed.dashboard_server``) passes the scenario in the environment
variables :data:`SCENARIO_VARIABLE` and :data:`EVAL_EVERY_VARIABLE`; :data:`Page` reads them.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import solara
from matplotlib.figure import Figure

# Mesa 3.3's ComponentsView calls a hook after an early return (for an empty component list, which
# this page never has); solara's check warns about it on every start of the page. Mesa's code, not
# ours: that one warning is silenced (before Mesa's module, where it is raised, is imported).
warnings.filterwarnings("ignore", message=r".*ComponentsView: `use_state` found despite early return",
                        category=UserWarning)

from mesa.visualization import SolaraViz  # noqa: E402  (after the filter above)

from ribbed import figures
from ribbed.dashboard_server import EVAL_EVERY_VARIABLE, SCENARIO_VARIABLE, check_eval_every
from ribbed.model import NetworkModel
from ribbed.scenarios.loader import load_scenario
from ribbed.scenarios.schema import Scenario

__all__ = ["EVAL_EVERY_VARIABLE", "SCENARIO_VARIABLE", "Dashboard", "DashboardModel", "Page", "accuracy_figure",
           "alpha_figure", "clusters_figure", "components", "firing_rate_figure", "loss_figure", "model_params",
           "raster_figure", "selectivity_figure"]


#: One figure size for every plot: two plots side by side fit SolaraViz's grid.
_FIGSIZE = (5.0, 3.2)
_DPI = 80


class DashboardModel(NetworkModel):
    """A NetworkModel that evaluates its start when it is built, so that a fresh page (or one just
    Reset) draws tick 0 before the first step; ``step()`` then evaluates as NetworkModel's does."""

    def __init__(self, scenario: Scenario | str | Path, **kwargs: Any):
        super().__init__(scenario, **kwargs)
        self.record()


# ----------------------------------------------------------------------------- parameters


def model_params(scenario: Scenario, eval_every: int = 1) -> dict[str, Any]:
    """SolaraViz's ``model_params`` for ``scenario``: the scenario itself (fixed) and sliders for
    the parameters one tries first (seed, learning rate, batch size, how often the error is
    propagated, how often the page evaluates), each starting at the scenario's value."""
    lr = scenario.learning.lr
    batch = scenario.run.batch_size
    backward = scenario.schedule.backward_every
    ticks = scenario.run.ticks
    return {
        "scenario": scenario,
        "seed": {"type": "SliderInt", "label": "seed", "value": scenario.seed, "min": 0,
                 "max": max(100, scenario.seed), "step": 1},
        "learning__lr": {"type": "SliderFloat", "label": "learning rate (learning.lr)", "value": lr,
                         "min": 0.001, "max": round(max(1.0, 4 * lr), 3), "step": 0.001},
        "run__batch_size": {"type": "SliderInt", "label": "batch size (run.batch_size)", "value": batch,
                            "min": 1, "max": max(256, batch), "step": 1},
        "schedule__backward_every": {"type": "SliderInt", "label": "error every (schedule.backward_every)",
                                     "value": backward, "min": 1, "max": max(16, backward), "step": 1},
        "run__eval_every": {"type": "SliderInt", "label": "evaluate every (run.eval_every)", "value": eval_every,
                            "min": 1, "max": max(1, min(ticks, max(100, eval_every))), "step": 1},
    }


# ----------------------------------------------------------------------------- figures


def loss_figure(model: NetworkModel) -> Figure:
    """Training loss (mean over the ticks since the previous evaluation) and held-out loss."""
    return figures.live_curves(model.metrics, {"train_loss": "train", "test_loss": "held out"}, "loss",
                               f"loss, tick {model.tick}", size=_FIGSIZE, dpi=_DPI)


def accuracy_figure(model: NetworkModel) -> Figure:
    """Training and held-out accuracy (held-out R² on a regression task)."""
    if model.dataset.classification:
        return figures.live_curves(model.metrics, {"train_accuracy": "train", "test_accuracy": "held out"},
                                   "accuracy", f"accuracy, tick {model.tick}", size=_FIGSIZE, dpi=_DPI)
    return figures.live_curves(model.metrics, {"test_r2": "held out"}, "R²", f"R², tick {model.tick}",
                               size=_FIGSIZE, dpi=_DPI)


def selectivity_figure(model: NetworkModel) -> Figure | str:
    """A histogram of the class selectivity of each analysed hidden neuron at the latest
    evaluation, one per population; or why there is none."""
    analysed = model.specialization.analysed
    if not analysed:
        return ("no selectivity: it is measured for the hidden populations of a classification task"
                if model.dataset.classification else "no selectivity on a regression task (it needs classes)")
    values = model.specialization.values["selectivity"]
    chunks = {info.name: values[info.start:info.start + info.size] for info in analysed}
    nulls = {info.name: model.last_metrics.get(f"{info.name}_selectivity_null_q90") for info in analysed}
    return figures.selectivity_histogram(chunks, nulls, f"selectivity, evaluated at tick {_last_tick(model)}",
                                         size=_FIGSIZE, dpi=_DPI)


def _last_tick(model: NetworkModel) -> int:
    tick = model.last_metrics.get("tick")
    return int(tick) if tick is not None else model.tick


def _no_guided(model: NetworkModel) -> str | None:
    if model.network.guided:
        return None
    return (f"no guided population in '{model.scenario.name}': alpha and clusters belong to populations with "
            "a guide (try digits-guide-direct, digits-guide-hash or digits-guide-tree)")


def alpha_figure(model: NetworkModel) -> Figure | str:
    """Each guided population's mean trust alpha over time, with its 10-90% band."""
    return _no_guided(model) or figures.alpha_over_time(model.metrics, list(model.network.guided),
                                                        f"alpha, tick {model.tick}", size=_FIGSIZE, dpi=_DPI)


def clusters_figure(model: NetworkModel) -> Figure | str:
    """Each guided population's number of clusters (left axis) and purity against shuffled
    labels (right axis) over time."""
    return _no_guided(model) or figures.clusters_over_time(model.metrics, list(model.network.guided),
                                                           f"clusters, tick {model.tick}", size=_FIGSIZE, dpi=_DPI)


def _no_spikes(model: NetworkModel) -> str | None:
    if model.specialization.spiking - {model.network.input.name}:
        return None
    return (f"no spiking population in '{model.scenario.name}': rasters and firing rates belong to populations "
            "with a spiking firing policy (try digits-spiking)")


def raster_figure(model: NetworkModel) -> Figure | str:
    """The spikes of two held-out samples at every step, per spiking population, at the latest
    evaluation; or why there are none."""
    recorder = model.specialization
    if (why := _no_spikes(model)) is not None:
        return why
    if not recorder.raster:
        return "no raster: the spiking populations are too large to keep their held-out spikes"
    return figures.live_raster(recorder.raster, recorder.raster_labels,
                               f"spikes, evaluated at tick {recorder.raster_tick}", size=_FIGSIZE, dpi=_DPI)


def firing_rate_figure(model: NetworkModel) -> Figure | str:
    """A histogram of each spiking population's per-neuron firing rate (spikes per step on the
    held-out set) at the latest evaluation; or why there is none."""
    if (why := _no_spikes(model)) is not None:
        return why
    rates = {p.name: np.asarray(model.executor.read("firing_rate", p.name), dtype=np.float64)
             for p in model.network.populations.values()
             if p.name in model.specialization.spiking and p.role != "input"}
    return figures.live_firing_rates(rates, f"firing rates, evaluated at tick {_last_tick(model)}",
                                     size=_FIGSIZE, dpi=_DPI)


# ----------------------------------------------------------------------------- components


def _format(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def readout(model: NetworkModel) -> list[tuple[str, str]]:
    """What the page says about the running model: its parameters as it was built with them,
    and its latest evaluation."""
    scenario = model.scenario
    rows = [("scenario", scenario.name), ("tick", f"{model.tick} of {scenario.run.ticks}"),
            ("seed", str(scenario.seed)), ("learning rate", f"{scenario.learning.lr:g}"),
            ("batch size", str(scenario.run.batch_size)),
            ("error every", f"{scenario.schedule.backward_every} ticks"),
            ("evaluate every", f"{scenario.run.eval_every} ticks"),
            ("backend", scenario.backend.kind)]
    last = model.last_metrics
    rows.append(("evaluated at tick", _format(last.get("tick"))))
    rows.append(("held-out loss", _format(last.get("test_loss"))))
    key = "test_accuracy" if model.dataset.classification else "test_r2"
    rows.append((key.replace("test_", "held-out ").replace("r2", "R²"), _format(last.get(key))))
    return rows


def _card(title: str, build: Callable[[NetworkModel], Figure | str]) -> Callable[[NetworkModel], Any]:
    """A SolaraViz component: a card titled ``title`` with ``build(model)``'s figure, or its note."""

    def component(model: NetworkModel) -> Any:
        drawn = build(model)
        with solara.Card(title) as card:
            if isinstance(drawn, Figure):
                solara.FigureMatplotlib(drawn, format="png")
            else:
                solara.Info(drawn)
        return card

    component.__name__ = f"{title.title().replace(' ', '')}Card"
    return component


def ModelCard(model: NetworkModel) -> Any:
    """The running model's parameters and latest evaluation, as a table of text (the sliders
    show what the next Reset will build; this shows what is running)."""
    with solara.Card("Model") as card:
        with solara.Column(gap="2px"):
            for label, value in readout(model):
                solara.Text(f"{label}: {value}", classes=["ribbed-readout"])
    return card


def components() -> list[tuple[Callable[[NetworkModel], Any], int]]:
    """SolaraViz's ``components``: the readout and the seven plots, on one page."""
    cards = [ModelCard, _card("Loss", loss_figure), _card("Accuracy", accuracy_figure),
             _card("Selectivity", selectivity_figure), _card("Alpha", alpha_figure),
             _card("Clusters", clusters_figure), _card("Spikes", raster_figure),
             _card("Firing rates", firing_rate_figure)]
    return [(card, 0) for card in cards]


@solara.component
def Dashboard(scenario: Scenario | str | Path, eval_every: int = 1) -> Any:
    """The dashboard of ``scenario``: SolaraViz around a :class:`DashboardModel` built once per
    browser session (each open page has its own model)."""
    loaded = solara.use_memo(lambda: load_scenario(scenario), [scenario])
    params = solara.use_memo(lambda: model_params(loaded, check_eval_every(loaded, eval_every)), [loaded, eval_every])
    model = solara.use_memo(
        lambda: DashboardModel(**{key: (value["value"] if isinstance(value, dict) else value)
                                  for key, value in params.items()}), [params])
    return SolaraViz(model, components=components(), model_params=params, name=f"ribbed · {loaded.name}")


@solara.component
def Page() -> Any:
    """The page ``solara run ribbed.dashboard:Page`` serves: the dashboard of the scenario named by
    :data:`SCENARIO_VARIABLE`, evaluating every :data:`EVAL_EVERY_VARIABLE` ticks (default 1)."""
    source = os.environ.get(SCENARIO_VARIABLE)
    if not source:
        return solara.Error(f"no scenario: start the page with `ribbed dashboard SCENARIO` (it sets {SCENARIO_VARIABLE})")
    return Dashboard(source, int(os.environ.get(EVAL_EVERY_VARIABLE, "1")))
