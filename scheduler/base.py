"""The executor contract: what every executor provides, and how a scenario's backend picks one.

An executor runs ticks of one network (drawn in shared code) and gives access to its state by
name, through ``read(name, where)`` and ``write(name, where, values)`` over the declared table
:data:`ribbed.agents.state.STATE_TABLE`, in the canonical orders of
:mod:`ribbed.environment.network`.  It is built from an :class:`ExecutorInputs` (the network, the
training data, the guides' estimators, the Mesa model its agents join), never from the model
that drives it.  The reference, batched and Ray executors give the same results for the same
scenario and seed (to floating-point tolerance; see docs/semantics.md), send the same messages,
and pass the same contract suite (tests/contract/).  Executors register by name
(:mod:`ribbed.scheduler.registry`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, NamedTuple, Sequence

import numpy as np

from ribbed.errors import ScenarioError

if TYPE_CHECKING:
    import mesa

    from ribbed.environment.network import Network
    from ribbed.scenarios.schema import Scenario

__all__ = ["STEP_SAMPLES", "Executor", "ExecutorInputs", "Prediction", "TickResult", "check_backend",
           "make_executor"]

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
    #: Per neuron, what it emitted per sample (and step) on average: y under the rate policy.
    firing_rate: np.ndarray | None = None
    #: A timed scenario's: for the populations asked for, what each neuron emitted at every step
    #: for the first :data:`STEP_SAMPLES` samples, (samples, steps, size) (a spike raster); empty
    #: for an untimed one.
    steps: dict[str, np.ndarray] = {}


#: The held-out samples whose every step a timed evaluation returns (:attr:`Prediction.steps`):
#: few, so that a raster costs little whatever the population's size.
STEP_SAMPLES = 8


class Executor(ABC):
    """The contract every executor keeps (see the module docstring and docs/architecture.md).

    ``neurons`` holds one Mesa agent per neuron, indexed by agent id (the executor's own agents,
    or views that read and write through :meth:`read` and :meth:`write`), and ``clusters`` the
    agents of guide clusters, with ids after the neurons'.  State is reached by name through the
    declared table :data:`~ribbed.agents.state.STATE_TABLE`; adding a per-neuron quantity is one
    row there and its ``read`` (and ``write``) in each executor.
    """

    name = "executor"
    #: Where and in what precision it computes (recorded in a run's summary).
    device_name = "cpu"
    dtype_name = "float64"
    neurons: list
    clusters: list = []
    #: Changes whenever the state may have changed (a tick, a write, a load): memoized reads key on it.
    version = 0

    @abstractmethod
    def tick(self, tick: int, index: np.ndarray) -> TickResult:
        """Run one tick on the mini-batch of training samples ``index`` (the executor holds the
        training inputs and targets it was given, on its device)."""

    @abstractmethod
    def predict(self, inputs: np.ndarray, keep: Sequence[str] = ()) -> Prediction:
        """Outputs for ``inputs`` without learning or messages; cycle-closing inputs read as 0.
        The activations of the populations named in ``keep`` come back too."""

    @abstractmethod
    def read(self, name: str, where: str):
        """The state ``name`` (a row of the table) of the projection or population ``where``, as
        float64 numpy arrays in canonical order (a dict for optimizer state; None where the row
        says it can be)."""

    @abstractmethod
    def write(self, name: str, where: str, values) -> None:
        """Set the writable state ``name`` of ``where`` (values in the shape :meth:`read` gives);
        the next tick computes with it."""

    def read_cached(self, name: str, where: str):
        """:meth:`read`, memoized until the state changes (for views that read one neuron at a time)."""
        cache = self.__dict__.setdefault("_read_cache", {})
        if cache.get("version") != self.version:
            cache.clear()
            cache["version"] = self.version
        key = (name, where)
        if key not in cache:
            cache[key] = self.read(name, where)
        return cache[key]

    def changed(self) -> None:
        """Note that the state changed (memoized reads are dropped)."""
        self.version += 1

    @property
    @abstractmethod
    def message_counts(self) -> np.ndarray:
        """Messages sent so far, by :class:`~ribbed.scheduler.messages.Kind`."""

    @abstractmethod
    def tick_values(self, activity: bool, messages: bool) -> dict:
        """What the last tick computed, for the message log (references, not copies, in the
        executor's own precision: the next tick replaces them rather than writing into them): per
        population in network order, ``activation`` (batch x size) when ``activity``, and ``delta``
        (batch x size, None where the population computed no credit) with the task's ``answer``
        B dL/dy when ``messages``."""

    @abstractmethod
    def state(self) -> tuple[dict, dict]:
        """The executor's learned and running state (optimizers, guides, meta state, coupling,
        held-over activity, message counts) as ``(values, kinds)`` (scheduler/state.py); weights
        and biases are read in canonical order through :meth:`read`."""

    @abstractmethod
    def load_state(self, values: dict, kinds: dict) -> None:
        """Put back what :meth:`state` returned (into an executor of the same scenario)."""

    @abstractmethod
    def held_out_credit(self, inputs: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
        """Per guided population, an array of shape ``(4, size)``: for each of its neurons,
        ``[sum (guidance - credit)^2, sum credit, sum credit^2, count]`` over the samples ``inputs`` (with ``targets`` as context): the true
        credit is that of a tick with propagated error, without learning; the guides predict
        from the same features; cycle-closing inputs read as 0."""

    def close(self) -> None:
        """Release what the executor holds outside this process (the Ray executor's shards); its
        state stays readable, and it runs no more ticks."""

    def describe(self) -> dict:
        """What a run's summary records about how the executor ran (beyond its name, device and dtype)."""
        return {}


class ExecutorInputs(NamedTuple):
    """What an executor is built from: the network (drawn in shared code), the training data, the
    guides' estimators, and the Mesa model its agents join."""

    network: Network
    train_inputs: np.ndarray  # (samples, n_inputs)
    train_targets: np.ndarray  # (samples, n_outputs): one-hot classes or regression targets
    loss: str  # "cross_entropy" or "mse"
    guide_estimators: dict  # population name -> scikit-learn regressor (guide kind sklearn)
    host: mesa.Model  # the Mesa model whose agents the executor's neurons and clusters are

    @property
    def scenario(self) -> Scenario:
        return self.network.scenario


def check_backend(scenario: Scenario) -> None:
    """Refuse, with a clear error, a backend the schema accepts but this machine cannot run (the
    rules are in :func:`ribbed.scenarios.validation.backend_problems`)."""
    from ribbed.scenarios.validation import backend_problems

    problems = backend_problems(scenario)
    if problems:
        raise ScenarioError(problems)


def make_executor(inputs: ExecutorInputs) -> Executor:
    """The executor the scenario's backend names, built from ``inputs`` (a lookup in the registry)."""
    from ribbed.scheduler.registry import executor_class

    check_backend(inputs.scenario)
    return executor_class(inputs.scenario.backend.kind)(inputs)
