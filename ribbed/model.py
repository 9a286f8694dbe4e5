"""NetworkModel: a network of neuron agents as a ``mesa.Model``.

The model draws everything random from the scenario seed in shared code (the network, the
data and its order), hands the network to the executor the scenario names, and runs it one
tick per ``step()``.  Evaluation on the held-out set is recorded through a Mesa
``DataCollector`` (model-level metrics and per-neuron metrics), as Mesa users expect.

Mesa's tools drive a model by its constructor's keywords and ``step()``: ``mesa.batch_run``
builds ``NetworkModel(scenario="xor", seed=3, learning__lr=0.1)`` (a ``__`` stands for a dot of
the scenario field), steps it while ``running`` (False once ``run.ticks`` are done) and reads the
DataCollector at each step.  So ``step()`` evaluates when the scenario says (before the first
tick, every ``run.eval_every`` ticks, at ``run.ticks``) and keeps the DataCollector at one entry
per step, which repeats the latest evaluation between two (its ``tick`` says which).  ``run()``
and a replay tick with :meth:`NetworkModel.advance` instead, which only ticks.
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
from ribbed.environment.losses import LOSSES, accuracy, r2
from ribbed.environment.network import Network, PopulationInfo, ProjectionInfo, build_network
from ribbed.environment.stream import DataStream
from ribbed.environment.tasks import Dataset, load_task
from ribbed.errors import Problem, RibbedWarning, ScenarioError
from ribbed.resources import MemoryLimit
from ribbed.scenarios.loader import load_scenario
from ribbed.scenarios.overrides import apply_fields
from ribbed.scenarios.schema import Scenario
from ribbed.scenarios.validation import validate
from ribbed.scheduler.base import Executor, ExecutorInputs, TickResult, make_executor
from ribbed.scheduler.messages import Kind
from ribbed.seeding import component_rng
from ribbed.specialization_recorder import CLUSTER_METRICS, NEURON_METRICS, SpecializationRecorder

__all__ = ["TUNING_COLUMNS", "NetworkModel", "Population", "Projection", "check_estimators"]

#: The columns of the class-tuning records (``tuning.csv``).
TUNING_COLUMNS = ("tick", "AgentID", "population", "class", "response")

#: Per-neuron metrics recorded at each evaluation (attribute names of NeuronAgent, or callables).
AGENT_REPORTERS: dict[str, str | Callable] = {
    "population": "population",
    "in_degree": "in_degree",
    "weight_norm": "weight_norm",
    "bias": "bias",
    "activation_mean": "activation_mean",
    "activation_std": "activation_std",
    **{name: (lambda name: lambda agent: agent.model.agent_metric(name, agent))(name)
       for name in (*NEURON_METRICS, *CLUSTER_METRICS)},
    "agent_kind": "agent_kind",
}

#: agents.csv columns of a run whose guides evolve (docs/semantics.md, "Evolving guides"): per
#: neuron, the candidate serving its meta unit (empty for other agents).
LINEAGE_REPORTERS: dict[str, Callable] = {
    f"guide_{key}": (lambda key: lambda agent: agent.model.lineage_value(key, agent))(key)
    for key in ("kind", "generation", "fitness", "candidate", "parent")
}

#: agents.csv columns of a run with hierarchical meta units (docs/semantics.md, "Hierarchical meta
#: units"): per guide that is a meta unit, its group and the alpha its group sent (empty elsewhere).
HIERARCHY_REPORTERS: dict[str, Callable] = {
    key: (lambda key: lambda agent: agent.model.hierarchy_value(key, agent))(key) for key in ("meta_group", "group_alpha")
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
                 guides: Mapping[str, Any] | None = None, max_memory: int | str | MemoryLimit | None = None,
                 seed: int | None = None, rng: Any = None, **fields: Any):
        """``guides`` maps a population whose guide is ``{kind: sklearn}`` to the scikit-learn
        regressor its guides are cloned from.  A scenario whose estimated size
        (:mod:`ribbed.scenarios.size`) does not fit in ``max_memory`` (bytes, or ``"8G"``;
        default: the memory this machine has available) is refused before anything is built.

        The keywords Mesa's tools pass (``mesa.batch_run``'s parameters): ``seed`` replaces the
        scenario's root seed (``rng`` too, as an integer: newer Mesa passes its seeds so), and
        every other keyword sets a scenario field, a ``__`` standing for each dot of its path:
        ``learning__lr=0.1``, ``run__ticks=200``, ``populations__hidden__size=16``."""
        scenario = _configured(load_scenario(scenario), seed, rng, fields)
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
        self._agent_reporters = dict(AGENT_REPORTERS)
        if any(g.evolution is not None for g in self.network.guided.values()):
            self._agent_reporters.update(LINEAGE_REPORTERS)
        if any(g.hierarchy is not None for g in self.network.guided.values()):
            self._agent_reporters.update(HIERARCHY_REPORTERS)
        self._lineage: tuple[int, dict[str, dict]] | None = None
        self._hierarchy: tuple[int, dict[str, dict]] | None = None
        self.datacollector = mesa.DataCollector(
            model_reporters={key: _metric(key) for key in self._metric_names()},
            agent_reporters=dict(self._agent_reporters),
        )
        #: The DataCollector's entries that are evaluations (``step()`` adds entries between them).
        self._evaluations: list[int] = []
        self._tuning_by_tick: dict[int, dict[str, np.ndarray]] = {}
        #: The neurons and the clusters (guide owners) as Mesa AgentSets, beside ``model.agents``.
        self.neurons = AgentSet(self.executor.neurons, random=self.random)
        self.clusters = AgentSet(self.executor.clusters, random=self.random)

    # ------------------------------------------------------------------ agents

    def neuron(self, agent_id: int) -> NeuronAgent:
        """The agent (or agent view) of neuron ``agent_id``."""
        return self.executor.neurons[agent_id]

    # ------------------------------------------------------------------ ticks

    @property
    def tick(self) -> int:
        """Ticks run so far: Mesa's ``steps`` (one step is one tick), restored on resume."""
        return self.steps

    @tick.setter
    def tick(self, value: int) -> None:
        self.steps = int(value)

    @property
    def running(self) -> bool:
        """Mesa's flag: True until the scenario's ``run.ticks`` are done, or until something asks
        the model to stop (``model.running = False``: Ctrl-C does so between two ticks)."""
        if self.__dict__.get("_stopped", False):
            return False
        scenario = self.__dict__.get("scenario")
        return scenario is None or self.steps < scenario.run.ticks

    @running.setter
    def running(self, value: bool) -> None:
        self._stopped = not value

    def step(self) -> None:
        """Mesa's step: one tick, and the evaluations the scenario asks for: before the first
        tick, every ``run.eval_every`` ticks, and at ``run.ticks``.  The DataCollector keeps one
        entry per step (see the module docstring)."""
        every, ticks = self.scenario.run.eval_every, self.scenario.run.ticks
        if not self.last_metrics:  # the evaluation of the start, before Mesa counted this step
            self.steps -= 1
            try:
                self.record()
            finally:
                self.steps += 1
        self._tick()
        if self.tick % every == 0 or self.tick == ticks:
            self.record()
        self._one_entry_per_step()

    def advance(self) -> None:
        """One tick and nothing else (no evaluation): how :meth:`run` and a replay tick."""
        self.steps += 1
        self._tick()

    def _one_entry_per_step(self) -> None:
        """Fill the DataCollector's model variables up to one entry per step, each repeating the
        latest evaluation: Mesa 3.3's batch_run reads ``model_vars[name][step]``.  A Mesa that
        records the step of each collection (``_collection_steps``) finds them itself."""
        collector = self.datacollector
        if hasattr(collector, "_collection_steps"):
            return
        columns = collector.model_vars
        missing = self.steps + 1 - len(columns["tick"])
        if missing > 0 and columns["tick"]:
            for values in columns.values():
                values.extend([values[-1]] * missing)

    def _tick(self) -> None:
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
            if self.dataset.persistence is not None:  # a time series: the bar to clear
                metrics["test_persistence_r2"] = r2(self.dataset.persistence, self.targets_test)
        # Every per-neuron statistic of the prediction that is a row of the state table is kept by
        # the executor, where agents and views read it.
        for key in PER_NEURON.intersection(prediction._fields):
            for name, info in self.network.populations.items():
                self.executor.write(key, name, getattr(prediction, key)[info.start:info.start + info.size])
        metrics.update(self.specialization.record(prediction.activations))
        self.specialization.keep_raster(prediction.steps)
        self._tuning_by_tick[self.tick] = dict(self.specialization.tuning)
        return metrics

    def agent_metric(self, name: str, agent: Any) -> float | None:
        """A specialization value of ``agent`` at the latest evaluation: a neuron's selectivity,
        mutual information, preferred class, alpha and cluster; a cluster's size (neurons whose
        meta unit it is), guide R^2 over them, alpha and its own unit index.  NaN where a value
        does not apply to an agent of its kind, None for agents that are neither."""
        kind = getattr(agent, "agent_kind", None)
        if kind == "neuron":
            return float(self.specialization.values[name][agent.unique_id]) if name in NEURON_METRICS else float("nan")
        if kind != "cluster":
            return None
        if name == "alpha":
            return float(agent.alpha)
        if name == "cluster":
            return float(agent.index)
        if name in CLUSTER_METRICS:
            return float(self.specialization.cluster_values[name][agent.unique_id - self.network.n_neurons])
        return float("nan")

    def lineage_value(self, key: str, agent: Any) -> Any:
        """A neuron's evolving-guide lineage at this tick (``key``: kind, generation, fitness,
        candidate or parent; the kind by name), read once per tick through the executor's
        ``read("lineage", population)``; None for agents whose guides do not evolve."""
        if self._lineage is None or self._lineage[0] != self.tick:
            self._lineage = (self.tick, {name: self.executor.read("lineage", name)
                                         for name, g in self.network.guided.items() if g.evolution is not None})
        if getattr(agent, "agent_kind", None) != "neuron" or agent.population not in self._lineage[1]:
            return None
        info = self.network.populations[agent.population]
        value = self._lineage[1][agent.population][key][agent.unique_id - info.start]
        if key == "kind":
            return self.network.guided[agent.population].evolution.kinds[int(value)]
        return float(value) if key == "fitness" else int(value)

    def hierarchy_value(self, key: str, agent: Any) -> float | None:
        """A cluster's second-level group (``meta_group``, the group of the unit it is) or the alpha
        that group last sent it (``group_alpha``), read once per tick for every guide; None for
        other agents, NaN for guides that are no meta unit."""
        if getattr(agent, "agent_kind", None) != "cluster":
            return None
        if self._hierarchy is None or self._hierarchy[0] != self.tick:
            per_guide = {}
            for name, guided in self.network.guided.items():
                if guided.hierarchy is not None:
                    groups = np.full(guided.coupling.n_guides, np.nan)
                    groups[guided.coupling.unit_guides()] = self.executor.read("hierarchy", name)["groups"]
                    per_guide[name] = {"meta_group": groups, "group_alpha": self.executor.read("group_alpha", name)}
            self._hierarchy = (self.tick, per_guide)
        values = self._hierarchy[1].get(agent.population_info.name)
        return None if values is None else float(values[key][agent.index])

    def tuning_records(self) -> list[dict]:
        """The class-tuning matrices of the latest evaluation, one dict per (neuron, class):
        ``tick, AgentID, population, class, response`` (the neuron's mean response above its
        activation's floor to the held-out samples of that class; NaN for a class without any)."""
        return self._tuning_frame(self.tick, self.specialization.tuning).to_dict("records")

    @property
    def tuning(self) -> pd.DataFrame:
        """The class-tuning records of every evaluation this model made (see :meth:`tuning_records`)."""
        frames = [self._tuning_frame(tick, matrices) for tick, matrices in sorted(self._tuning_by_tick.items())]
        return pd.concat(frames, ignore_index=True) if frames else self._tuning_frame(self.tick, {})

    def _tuning_frame(self, tick: int, matrices: dict[str, np.ndarray]) -> pd.DataFrame:
        parts = []
        for name, matrix in matrices.items():
            n_classes, size = matrix.shape
            ids = self.network.populations[name].start + np.repeat(np.arange(size), n_classes)
            parts.append(pd.DataFrame({"tick": tick, "AgentID": ids, "population": name,
                                       "class": np.tile(np.arange(n_classes), size), "response": matrix.T.ravel()}))
        if not parts:
            return pd.DataFrame(columns=list(TUNING_COLUMNS))
        return pd.concat(parts, ignore_index=True)

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
        self._evaluations.append(len(self.datacollector.model_vars["tick"]) - 1)
        if self.recorder is not None:
            self.recorder.after_record()
        return row

    def _metric_names(self) -> list[str]:
        names = ["tick", "epoch", "train_loss"]
        names += ["train_accuracy", "test_loss", "test_accuracy"] if self.dataset.classification else ["test_loss", "test_r2"]
        if self.dataset.persistence is not None:
            names.append("test_persistence_r2")
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
        while self.tick < end and not self.__dict__.get("_stopped", False):  # asked to stop: ribbed.signals
            self.advance()
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
            for key, reporter in self._agent_reporters.items():
                row[key] = reporter(agent) if callable(reporter) else getattr(agent, reporter, None)
            rows.append(row)
        return rows

    @property
    def metrics(self) -> pd.DataFrame:
        """One row per evaluation: those before a resume (:meth:`restore_metrics`), then the
        DataCollector's model variables."""
        collected = self.datacollector.get_model_vars_dataframe()
        if len(collected) != len(self._evaluations):  # stepped by step(): the evaluations only
            collected = collected.iloc[self._evaluations].reset_index(drop=True)
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


def _configured(scenario: Scenario, seed: Any, rng: Any, fields: dict[str, Any]) -> Scenario:
    """The scenario with the constructor's Mesa keywords applied (see NetworkModel.__init__)."""
    if seed is not None and rng is not None:
        raise ValueError("give either seed or rng, not both (as mesa.Model asks)")
    given = seed if seed is not None else rng
    call = ", ".join([*(f"{k}={v!r}" for k, v in (("seed", seed), ("rng", rng)) if v is not None),
                      *(f"{k}={v!r}" for k, v in fields.items())])
    label = f"NetworkModel({call})"
    if given is not None:
        if isinstance(given, bool) or not isinstance(given, (int, np.integer)):
            raise ScenarioError(Problem(f"{scenario.source} with {label}", "seed",
                                        f"expected an integer seed, got {type(given).__name__}",
                                        "every random draw of a run derives from one integer root seed: "
                                        "pass seed=<int> (or rng=<int>)"))
    dotted = {} if given is None else {"seed": int(given)}
    dotted.update({key.replace("__", "."): value for key, value in fields.items()})
    return apply_fields(scenario, dotted, label=label)


def _metric(key: str) -> Callable[[NetworkModel], float]:
    return lambda model: model.last_metrics.get(key, float("nan"))


def check_estimators(scenario: Scenario, guides: dict[str, Any], *,
                     max_memory: int | str | MemoryLimit | None = None) -> dict[str, Any]:
    """``guides``, the estimators for the populations with ``guide: {kind: sklearn}``, once every
    rule of the scenario is checked (:func:`ribbed.scenarios.validation.validate`, its size
    against ``max_memory`` included)."""
    validate(scenario, guides=guides, max_memory=max_memory)
    return guides
