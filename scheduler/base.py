"""What every executor provides, and how a scenario's backend picks one.

An executor runs ticks of one network (drawn in shared code) and gives access to its state
in the canonical orders of :mod:`ribbed.environment.network`: weights and feedback weights in
(post, pre) synapse order per projection, biases and DFA matrices per population.  The
reference, batched and Ray executors must give the same results for the same scenario and
seed (to floating-point tolerance; see docs/semantics.md), and send the same messages.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, NamedTuple, Sequence

import numpy as np

from ribbed.errors import Problem, ScenarioError

if TYPE_CHECKING:
    from ribbed.agents.neuron import NeuronAgent
    from ribbed.environment.network import PopulationInfo, ProjectionInfo
    from ribbed.model import NetworkModel
    from ribbed.scenarios.schema import Scenario

__all__ = ["AVAILABLE_EXECUTORS", "Executor", "Prediction", "TickResult", "check_backend", "make_executor"]

#: The executors this version can run.
AVAILABLE_EXECUTORS = ("reference", "batched", "ray")


class TickResult:
    """The loss and the outputs (batch x n_outputs) of one tick.

    An executor on a device may hand them over as tensors: they are converted when read, so a
    run does not wait for the device at every tick.
    """

    __slots__ = ("_loss", "_outputs")

    def __init__(self, loss, outputs):
        self._loss, self._outputs = loss, outputs

    @property
    def loss(self) -> float:
        return float(self._loss)

    @property
    def raw_outputs(self):
        """The outputs as the executor handed them over (a tensor, possibly on a device, or an
        array): for copying them somewhere without a detour through numpy."""
        return self._outputs

    @property
    def outputs(self) -> np.ndarray:
        outputs = self._outputs
        if not isinstance(outputs, np.ndarray):
            outputs = self._outputs = outputs.detach().cpu().numpy()
        return outputs


class Prediction(NamedTuple):
    outputs: np.ndarray  # (samples, n_outputs)
    activation_mean: np.ndarray  # per neuron, over the samples
    activation_std: np.ndarray
    activations: dict[str, np.ndarray] = {}  # (samples, size) of the populations asked for


class Executor(ABC):
    """What the model needs from an executor (see the module docstring).

    ``neurons`` holds one agent per neuron, indexed by agent id: the model registers them as
    its Mesa agents, so analysis code reads neuron state the same way on every executor.
    """

    name = "executor"
    #: Where and in what precision it computes (recorded in a run's summary).
    device_name = "cpu"
    dtype_name = "float64"
    neurons: list[NeuronAgent]
    #: The ClusterAgents (or their views) of guided populations, in id order after the neurons.
    clusters: list = []

    @abstractmethod
    def tick(self, tick: int, index: np.ndarray) -> TickResult:
        """Run one tick on the mini-batch of training samples ``index`` (the executor holds the
        training inputs and targets it was given, on its device)."""

    @abstractmethod
    def predict(self, inputs: np.ndarray, keep: Sequence[str] = ()) -> Prediction:
        """Outputs for ``inputs`` without learning or messages; cycle-closing inputs read as 0.
        The activations of the populations named in ``keep`` come back too."""

    @abstractmethod
    def get_weights(self, projection: ProjectionInfo) -> np.ndarray:
        """The projection's weights, one per synapse in canonical order."""

    @abstractmethod
    def set_weights(self, projection: ProjectionInfo, values: np.ndarray) -> None: ...

    @abstractmethod
    def get_feedback(self, projection: ProjectionInfo) -> np.ndarray | None:
        """The fixed feedback weights of a feedback-alignment projection, else None."""

    @abstractmethod
    def set_feedback(self, projection: ProjectionInfo, values: np.ndarray) -> None: ...

    @abstractmethod
    def get_biases(self, population: PopulationInfo) -> np.ndarray: ...

    @abstractmethod
    def set_biases(self, population: PopulationInfo, values: np.ndarray) -> None: ...

    @abstractmethod
    def get_dfa(self, population: PopulationInfo) -> np.ndarray | None:
        """A DFA population's fixed projections of the output error (size x n_outputs), else None."""

    @abstractmethod
    def set_dfa(self, population: PopulationInfo, values: np.ndarray) -> None: ...

    @property
    @abstractmethod
    def message_counts(self) -> np.ndarray:
        """Messages sent so far, by :class:`~ribbed.scheduler.messages.Kind`."""

    @abstractmethod
    def tick_values(self, activity: bool, messages: bool) -> dict:
        """What the last tick computed, for the message log (references, not copies: the next
        tick replaces them rather than writing into them): per population in network order,
        ``activation`` (batch x size) when ``activity``, and ``delta`` (batch x size, None where
        the population computed no credit) with the task's ``answer`` dL/dy when ``messages``."""

    #: What a snapshot saves besides weights and biases (scheduler/state.py).
    _state_attrs: tuple[str, ...] = ()

    def state_arrays(self) -> tuple[dict, dict]:
        """The executor's running state (optimizers, guides, meta state, coupling, held-over
        activity, message counts) as ``(values, kinds)``; weights and biases are read in canonical
        order through :meth:`get_weights` and :meth:`get_biases`."""
        from ribbed.scheduler.state import collect_state

        return collect_state(self)

    def load_state_arrays(self, values: dict, kinds: dict) -> None:
        """Put back what :meth:`state_arrays` returned (into an executor of the same scenario)."""
        from ribbed.scheduler.state import restore_state

        restore_state(self, values, kinds, getattr(self, "device", None))

    @abstractmethod
    def held_out_credit(self, inputs: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
        """Per guided population, ``[sum (guidance - credit)^2, sum credit, sum credit^2, count]``
        over its neurons and the samples ``inputs`` (with ``targets`` as context): the true
        credit is that of a tick with propagated error, without learning; the guides predict
        from the same features; cycle-closing inputs read as 0."""

    @abstractmethod
    def guidance_state(self, name: str) -> dict[str, np.ndarray]:
        """A guided population's ``alpha`` and meta unit (``cluster``) per neuron, and the last
        tick's ``guidance`` (batch x size; None before the first tick)."""

    def close(self) -> None:
        """Release what the executor holds outside this process (the Ray executor's shards); its
        state stays readable, and it runs no more ticks."""

    def describe(self) -> dict:
        """What a run's summary records about how the executor ran (beyond its name, device and dtype)."""
        return {}

    def store_activation_stats(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Keep each neuron's held-out activation statistics (from :meth:`predict`) where its
        agent reads them."""
        for neuron, m, s in zip(self.neurons, mean, std):
            neuron.activation_mean, neuron.activation_std = float(m), float(s)


def check_backend(scenario: Scenario) -> None:
    """Refuse, with a clear error, a backend the schema accepts but this machine cannot run (the
    rules are in :func:`ribbed.scenarios.validation.backend_problems`)."""
    from ribbed.scenarios.validation import backend_problems

    problems = backend_problems(scenario)
    if problems:
        raise ScenarioError(problems)


def make_executor(model: NetworkModel) -> Executor:
    """The executor named by the scenario's backend."""
    check_backend(model.scenario)
    if model.scenario.backend.kind == "ray":
        from ribbed.scheduler.ray.executor import RayExecutor

        return RayExecutor(model)
    if model.scenario.backend.kind == "batched":
        from ribbed.scheduler.batched.executor import BatchedExecutor

        return BatchedExecutor(model)
    from ribbed.scheduler.reference.executor import ReferenceExecutor

    return ReferenceExecutor(model)
