"""What every executor provides, and how a scenario's backend picks one.

An executor runs ticks of one network (drawn in shared code) and gives access to its state
in the canonical orders of :mod:`ribbed.environment.network`: weights in (post, pre) synapse
order per projection, biases and feedback matrices per population.  The reference, batched
and Ray executors must give the same results for the same scenario and seed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from ribbed.errors import Problem, ScenarioError

if TYPE_CHECKING:
    from ribbed.environment.network import PopulationInfo, ProjectionInfo
    from ribbed.model import NetworkModel
    from ribbed.scenarios.schema import Scenario

__all__ = ["AVAILABLE_EXECUTORS", "Executor", "Prediction", "TickResult", "check_backend", "make_executor"]

#: The executors this version can run.
AVAILABLE_EXECUTORS = ("reference",)


class TickResult(NamedTuple):
    loss: float
    outputs: np.ndarray  # (batch, n_outputs)


class Prediction(NamedTuple):
    outputs: np.ndarray  # (samples, n_outputs)
    activation_mean: np.ndarray  # per neuron, over the samples
    activation_std: np.ndarray


class Executor:
    """Interface of the executors (see the module docstring)."""

    name = "executor"

    def tick(self, tick: int, inputs: np.ndarray, targets: np.ndarray) -> TickResult:
        raise NotImplementedError

    def predict(self, inputs: np.ndarray) -> Prediction:
        """Outputs for ``inputs`` without learning or messages; cycle-closing inputs read as 0."""
        raise NotImplementedError

    def get_weights(self, projection: ProjectionInfo) -> np.ndarray:
        raise NotImplementedError

    def set_weights(self, projection: ProjectionInfo, values: np.ndarray) -> None:
        raise NotImplementedError

    def get_feedback(self, projection: ProjectionInfo) -> np.ndarray | None:
        raise NotImplementedError

    def set_feedback(self, projection: ProjectionInfo, values: np.ndarray) -> None:
        raise NotImplementedError

    def get_biases(self, population: PopulationInfo) -> np.ndarray:
        raise NotImplementedError

    def set_biases(self, population: PopulationInfo, values: np.ndarray) -> None:
        raise NotImplementedError

    def get_dfa(self, population: PopulationInfo) -> np.ndarray | None:
        raise NotImplementedError

    def set_dfa(self, population: PopulationInfo, values: np.ndarray) -> None:
        raise NotImplementedError

    @property
    def message_counts(self) -> np.ndarray:
        """Messages sent so far, by :class:`~ribbed.scheduler.messages.Kind`."""
        raise NotImplementedError


def check_backend(scenario: Scenario) -> None:
    """Refuse, with a clear error, a backend the schema accepts but this version cannot run."""
    if scenario.backend.kind not in AVAILABLE_EXECUTORS:
        raise ScenarioError(Problem(
            scenario.source, "backend.kind", f"the '{scenario.backend.kind}' executor is not available yet",
            "use 'backend: {kind: reference}' (or --backend reference)",
        ))


def make_executor(model: NetworkModel) -> Executor:
    """The executor named by the scenario's backend."""
    check_backend(model.scenario)
    from ribbed.scheduler.reference import ReferenceExecutor

    return ReferenceExecutor(model)
