"""NetworkModel: a network of neuron agents as a ``mesa.Model``.

The model draws everything random from the scenario seed in shared code (the network, the
data and its order), hands the network to the executor the scenario names, and runs it one
tick per ``step()``.  Evaluation on the held-out set is recorded through a Mesa
``DataCollector`` (model-level metrics and per-neuron metrics), as Mesa users expect.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import mesa
from mesa.agent import AgentSet
import numpy as np
import pandas as pd

from ribbed.agents.neuron import NeuronAgent
from ribbed.agents.state import PER_NEURON
from ribbed.errors import RibbedWarning
from ribbed.resources import MemoryLimit
from ribbed.environment.losses import LOSSES, accuracy, r2
from ribbed.environment.network import Network, PopulationInfo, ProjectionInfo, build_network
from ribbed.environment.stream import DataStream
from ribbed.environment.tasks import Dataset, load_task
from ribbed.scenarios.loader import load_scenario
from ribbed.scenarios.schema import Scenario
from ribbed.scenarios.validation import validate
from ribbed.scheduler.base import Executor, ExecutorInputs, TickResult, make_executor
from ribbed.scheduler.messages import Kind
from ribbed.seeding import component_rng
from ribbed.specialization_recorder import NEURON_METRICS, SpecializationRecorder

__all__ = ["NetworkModel", "Population", "Projection", "check_estimators"]

#: Per-neuron metrics recorded at each evaluation (attribute names of NeuronAgent, or callables).
AGENT_REPORTERS: dict[str, str | Callable] = {
    "population": lambda agent: agent.population.name,
    "in_degree": "in_degree",
    "weight_norm": "weight_norm",
    "bias": "bias",
    "activation_mean": "activation_mean",
    "activation_std": "activation_std",
    **{name: (lambda name: lambda agent: agent.model.neuron_metric(name, agent))(name) for name in NEURON_METRICS},
    "agent_kind": "agent_kind",
}


class Population:
    """A population of the running model: its neurons as a Mesa AgentSet, and its biases."""

    def __init__(self, model: NetworkModel, info: PopulationInfo):
        self.model = model
        self.info = info
        self.agents = AgentSet([model.neuron(i) for i in info.ids], random=model.random)

    name = property(lambda self: self.info.name)
    size = property(lambda self: self.info.size)

    def __len__(self) -> int:
        return self.info.size

    def __repr__(self) -> str:
        return f"Population({self.info.name!r}, size={self.info.size}, role={self.info.role!r})"

    def get(self, name: str) -> Any:
        """This population's state ``name``, a row of :data:`ribbed.agents.state.STATE_TABLE`
        (e.g. ``"bias"``, ``"alpha"``, ``"firing_rate"``, ``"y"``), on any executor."""
        return self.model.executor.read(name, self.info.name)

    def set(self, name: str, values: Any) -> None:
        """Set this population's writable state ``name``; the next tick computes with it."""
        self.model.executor.write(name, self.info.name, values)

    def get_biases(self) -> np.ndarray:
        return self.get("bias")

    def set_biases(self, values: np.ndarray) -> None:
        self.set("bias", np.asarray(values, dtype=np.float64).reshape(self.info.size))

    def get_dfa_matrix(self) -> np.ndarray | None:
        """This population's fixed random projections of the output error, (size, n_outputs)."""
        return self.get("dfa")

    def set_dfa_matrix(self, values: np.ndarray) -> None:
        self.set("dfa", np.asarray(values, dtype=np.float64))


class Projection:
    """A projection of the running model, with PyNN-style weight access.

    ``get_weights()`` returns one weight per synapse in canonical order (sorted by post, then
    pre; see :meth:`connections`); ``get_weights(format="array")`` an (n_pre, n_post) matrix
    with NaN where there is no synapse.
    """

    def __init__(self, model: NetworkModel, info: ProjectionInfo):
        self.model = model
        self.info = info

    name = property(lambda self: self.info.name)
    pre = property(lambda self: self.info.pre.name)
    post = property(lambda self: self.info.post.name)

    def __len__(self) -> int:
        return self.info.n_synapses

    def __repr__(self) -> str:
        return f"Projection({self.info.name!r}, synapses={self.info.n_synapses})"

    def connections(self) -> tuple[np.ndarray, np.ndarray]:
        """Population-local (pre, post) indices of the synapses, in canonical order."""
        return self.info.pre_idx.copy(), self.info.post_idx.copy()

    def _as_array(self, values: np.ndarray) -> np.ndarray:
        matrix = np.full((self.info.pre.size, self.info.post.size), np.nan)
        matrix[self.info.pre_idx, self.info.post_idx] = values
        return matrix

    def _from_input(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if values.shape == (self.info.pre.size, self.info.post.size):
            return values[self.info.pre_idx, self.info.post_idx]
        if values.shape == (self.info.n_synapses,):
            return values
        raise ValueError(f"expected {self.info.n_synapses} values or an array of shape "
                         f"({self.info.pre.size}, {self.info.post.size}), got shape {values.shape}")

    def get_weights(self, format: str = "list") -> np.ndarray:
        values = self.model.executor.read("weights", self.info.name)
        return self._as_array(values) if format == "array" else values

    def set_weights(self, values: np.ndarray) -> None:
        self.model.executor.write("weights", self.info.name, self._from_input(values))

    def get_feedback(self, format: str = "list") -> np.ndarray | None:
        """The fixed random feedback weights of feedback alignment (None for other rules)."""
        values = self.model.executor.read("feedback", self.info.name)
        if values is None:
            return None
        return self._as_array(values) if format == "array" else values

    def set_feedback(self, values: np.ndarray) -> None:
        if self.info.feedback is None:
            raise ValueError(f"projection '{self.info.name}' does not use feedback_alignment")
        self.model.executor.write("feedback", self.info.name, self._from_input(values))


class NetworkModel(mesa.Model):
    """A scenario's network of neuron agents, trained one mini-batch per tick.

    >>> model = NetworkModel(load_scenario("xor"))   # doctest: +SKIP
    >>> metrics = model.run()                         # doctest: +SKIP
    """

    def __init__(self, scenario: Scenario | str | Path | Mapping[str, Any], *,
                 guides: Mapping[str, Any] | None = None,
                 max_memory: int | str | MemoryLimit | None = None):
        """``guides`` maps a population whose guide is ``{kind: sklearn}`` to the scikit-learn
        regressor its guides are cloned from.  A scenario whose estimated size
        (:mod:`ribbed.scenarios.size`) does not fit in ``max_memory`` (bytes, or ``"8G"``;
        default: the memory this machine has available) is refused before anything is built."""
        scenario = load_scenario(scenario)
        self.guide_estimators = check_estimators(scenario, dict(guides or {}), max_memory=max_memory)
        # Mesa's own generators (model.random, model.rng) are seeded like every other component.
        super().__init__(rng=component_rng(scenario.seed, "mesa"))
        self.scenario = scenario
        self.network: Network = build_network(scenario)
        for message in self.network.warnings:
            warnings.warn(f"{scenario.source}: {message}", RibbedWarning, stacklevel=2)
        self.dataset: Dataset = load_task(scenario)
        self.stream = DataStream(len(self.dataset.X_train), scenario.run.batch_size, scenario.seed)
        self.targets_train = self.dataset.targets(self.dataset.y_train)
        self.targets_test = self.dataset.targets(self.dataset.y_test)
        self.executor: Executor = make_executor(ExecutorInputs(
            network=self.network, train_inputs=self.dataset.X_train, train_targets=self.targets_train,
            loss=self.dataset.loss, guide_estimators=self.guide_estimators, host=self))
        self.specialization = SpecializationRecorder(self)
        self.populations = {name: Population(self, info) for name, info in self.network.populations.items()}
        self.projections = {p.name: Projection(self, p) for p in self.network.projections}
        self.last_result: TickResult | None = None
        #: Records the run's message log when set (ribbed.log.recorder); the runner attaches one.
        self.recorder = None
        self.last_metrics: dict[str, float] = {}
        self._window: list[tuple[TickResult, np.ndarray]] = []
        self.counts_at_record = np.zeros(len(Kind), dtype=np.int64)
        #: Evaluations made before a resume (see :meth:`restore_metrics`).
        self.earlier_metrics: pd.DataFrame | None = None
        self.datacollector = mesa.DataCollector(
            model_reporters={key: _metric(key) for key in self._metric_names()},
            agent_reporters=dict(AGENT_REPORTERS),
        )

    # ------------------------------------------------------------------ agents

    def neuron(self, agent_id: int) -> NeuronAgent:
        """The agent (or agent view) of neuron ``agent_id``."""
        return self.executor.neurons[agent_id]

    @property
    def neurons(self) -> list[NeuronAgent]:
        return self.executor.neurons

    # ------------------------------------------------------------------ ticks

    @property
    def tick(self) -> int:
        """Ticks run so far: Mesa's ``steps`` (one step is one tick), restored on resume."""
        return self.steps

    @tick.setter
    def tick(self, value: int) -> None:
        self.steps = int(value)

    def step(self) -> None:
        """One tick: one mini-batch through sense, forward, readout, backward and learn."""
        tick = self.steps - 1  # Mesa counts a step before it runs it
        try:
            index = self.stream.indices(tick)
            if self.recorder is not None:
                self.recorder.before_tick()
            result = self.executor.tick(tick, index)
        except BaseException:
            self.steps = tick  # a tick that did not complete is not counted
            raise
        if self.recorder is not None:
            self.recorder.after_tick(result, index, tick % self.scenario.schedule.backward_every == 0)
        self.last_result = result
        # Read at the next evaluation, so that a device-side executor is not waited for every tick.
        self._window.append((result, index))

    def evaluate(self) -> dict[str, float]:
        """Metrics on the held-out set (and per-neuron activation statistics on it)."""
        prediction = self.executor.predict(self.dataset.X_test, keep=self.specialization.kept_populations)
        loss, _ = LOSSES[self.dataset.loss](prediction.outputs, self.targets_test)
        metrics = {"test_loss": loss}
        if self.dataset.classification:
            metrics["test_accuracy"] = accuracy(prediction.outputs, self.dataset.y_test)
        else:
            metrics["test_r2"] = r2(prediction.outputs, self.targets_test)
        # Every per-neuron statistic of the prediction that is a row of the state table is kept by
        # the executor, where agents and views read it.
        for key in PER_NEURON.intersection(prediction._fields):
            for name, info in self.network.populations.items():
                self.executor.write(key, name, getattr(prediction, key)[info.start:info.start + info.size])
        metrics.update(self.specialization.record(prediction.activations))
        return metrics

    def neuron_metric(self, name: str, agent: Any) -> float:
        """A per-neuron specialization value of the latest evaluation (NaN where it does not
        apply; None for agents that are not neurons)."""
        if getattr(agent, "agent_kind", None) != "neuron":
            return None
        return float(self.specialization.values[name][agent.unique_id])

    def record(self) -> dict[str, float]:
        """Evaluate and append one row of metrics to the DataCollector."""
        counts = self.executor.message_counts
        window = counts - self.counts_at_record
        self.counts_at_record = counts
        row: dict[str, float] = {
            "tick": self.tick,
            "epoch": self.tick * self.scenario.run.batch_size / len(self.dataset.X_train),
            "train_loss": float(np.mean([r.loss for r, _ in self._window])) if self._window else float("nan"),
        }
        if self.dataset.classification:
            scores = [accuracy(r.outputs, self.dataset.y_train[index]) for r, index in self._window]
            row["train_accuracy"] = float(np.mean(scores)) if scores else float("nan")
        row.update(self.evaluate())
        row["messages"] = int(window.sum())
        row.update({f"msg_{kind.name.lower()}": int(window[kind]) for kind in Kind})
        self._window = []
        self.last_metrics = row
        self.datacollector.collect(self)
        if self.recorder is not None:
            self.recorder.after_record()
        return row

    def _metric_names(self) -> list[str]:
        names = ["tick", "epoch", "train_loss"]
        names += ["train_accuracy", "test_loss", "test_accuracy"] if self.dataset.classification else ["test_loss", "test_r2"]
        names += ["messages"] + [f"msg_{kind.name.lower()}" for kind in Kind]
        return names + self.specialization.metric_names()

    def run(self, ticks: int | None = None, *, on_tick: Callable[[NetworkModel], None] | None = None,
            on_record: Callable[[NetworkModel, dict], None] | None = None) -> pd.DataFrame:
        """Run ``ticks`` ticks (the scenario's ``run.ticks`` by default), evaluating at tick 0,
        every ``run.eval_every`` ticks and after the last; return the metrics so far."""
        ticks = self.scenario.run.ticks if ticks is None else ticks
        end = self.tick + ticks
        every = self.scenario.run.eval_every
        if not self.last_metrics:
            row = self.record()
            if on_record:
                on_record(self, row)
        while self.tick < end and self.running:  # running: False when asked to stop (ribbed.signals)
            self.step()
            if on_tick:
                on_tick(self)
            if self.tick % every == 0 or self.tick == end:
                row = self.record()
                if on_record:
                    on_record(self, row)
        return self.metrics

    def agent_records(self) -> list[dict]:
        """The per-agent metrics of the latest evaluation, one dict per neuron and per cluster
        (the same reporters the DataCollector records), for writing as they are produced."""
        rows = []
        for agent in [*self.neurons, *self.executor.clusters]:
            row = {"tick": self.tick, "AgentID": agent.unique_id}
            for key, reporter in AGENT_REPORTERS.items():
                row[key] = reporter(agent) if callable(reporter) else getattr(agent, reporter, None)
            rows.append(row)
        return rows

    @property
    def metrics(self) -> pd.DataFrame:
        """One row per evaluation: those before a resume (:meth:`restore_metrics`), then the
        DataCollector's model variables."""
        collected = self.datacollector.get_model_vars_dataframe()
        if self.earlier_metrics is None or self.earlier_metrics.empty:
            return collected
        earlier = self.earlier_metrics.reindex(columns=collected.columns)
        return pd.concat([earlier, collected], ignore_index=True) if len(collected) else earlier

    def restore_metrics(self, earlier: pd.DataFrame) -> None:
        """The rows of the evaluations a resumed run made before the tick it resumes from (read
        from its metrics.csv): :attr:`metrics` starts with them, and the DataCollector collects
        only what this model evaluates."""
        self.earlier_metrics = earlier.reset_index(drop=True)

    @property
    def agent_metrics(self) -> pd.DataFrame:
        """One row per neuron per evaluation (the DataCollector's agent variables)."""
        return self.datacollector.get_agent_vars_dataframe()


def _metric(key: str) -> Callable[[NetworkModel], float]:
    return lambda model: model.last_metrics.get(key, float("nan"))


def check_estimators(scenario: Scenario, guides: dict[str, Any], *,
                     max_memory: int | str | MemoryLimit | None = None) -> dict[str, Any]:
    """``guides``, the estimators for the populations with ``guide: {kind: sklearn}``, once every
    rule of the scenario is checked (:func:`ribbed.scenarios.validation.validate`, its size
    against ``max_memory`` included)."""
    validate(scenario, guides=guides, max_memory=max_memory)
    return guides
