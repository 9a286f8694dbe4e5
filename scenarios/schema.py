"""The scenario schema: the validated description of one run.

Every section is a strict pydantic model (unknown keys are errors).  The checks that need
more than one field at a time (a projection naming an unknown population, a task whose
input size does not match the input population...) live with every other rule in
:mod:`ribbed.scenarios.validation`; a scenario runs them when it is built, and reports errors at
the path of the offending field, so a message can always say *where*.  The backend section
is in :mod:`ribbed.scenarios.backend`, the guidance sections in :mod:`ribbed.scenarios.guidance`.

Field descriptions double as documentation: ``ribbed schema`` prints them as JSON Schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from ribbed.scenarios.backend import BackendSpec, BatchedBackendSpec, RayBackendSpec, ReferenceBackendSpec
from ribbed.scenarios.base import MAX_COUNT, MAX_NEURONS, MAX_SEED, Fraction, Name, Strict, tagged_union
from ribbed.scenarios.guidance import ConfidenceMetaSpec, CouplingSpec, DirectCouplingSpec, GuideSpec, MetaSpec
from ribbed.scenarios.timing import DirectEncodingSpec, EncodingSpec, FiringSpec, STDPSpec, default_readout

__all__ = [
    "BackendSpec",
    "BatchedBackendSpec",
    "BroadcastSpec",
    "DFABroadcastSpec",
    "ConnectivitySpec",
    "LearningOverride",
    "LearningSpec",
    "OutputSpec",
    "PopulationSpec",
    "ProjectionSpec",
    "RayBackendSpec",
    "ReferenceBackendSpec",
    "RunSpec",
    "Scenario",
    "ScheduleSpec",
    "TaskSpec",
    "WeightInitSpec",
]

GRADIENT_RULES = ("backprop", "feedback_alignment", "direct_feedback_alignment")
#: Spike-timing rules: the weights change step by step during forward (docs/semantics.md, "STDP").
STDP_RULES = ("stdp", "r_stdp")
#: The most steps a sample may be presented for: every step keeps its activity for the backward pass.
MAX_STEPS = 2**20

# --------------------------------------------------------------------------- learning


class LearningSpec(Strict):
    """How synapses learn: the rule that produces each weight's update, and the optimizer."""

    rule: Literal["backprop", "feedback_alignment", "direct_feedback_alignment", "hebbian", "stdp", "r_stdp"] = Field(
        "backprop",
        description=(
            "backprop: exact gradient by error messages; feedback_alignment: errors travel "
            "back through fixed random matrices; direct_feedback_alignment: output errors are "
            "broadcast to every hidden neuron through its own fixed random projection; "
            "hebbian: local, no error messages (see variant); stdp: pair-based spike-timing-dependent "
            "plasticity at every step (see stdp); r_stdp: STDP into an eligibility trace, turned into a weight "
            "change by the task's reward at the last step of each sample, scaled by lr."
        ),
    )
    stdp: STDPSpec = Field(default_factory=STDPSpec, description="rules stdp and r_stdp: their parameters.")
    variant: Literal["oja", "sanger"] = Field(
        "oja",
        description=(
            "Hebbian variant. oja: each neuron alone (first principal component); sanger: the "
            "generalized Hebbian algorithm, neurons of a population exchange lateral messages "
            "and learn the leading principal components in order. Ignored by other rules."
        ),
    )
    optimizer: Literal["sgd", "momentum", "adam"] = Field(
        "sgd", description="Per-neuron optimizer; the update formulas are torch.optim's."
    )
    lr: float = Field(0.05, gt=0.0, description="Learning rate.")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="Momentum coefficient (optimizer: momentum).")
    beta1: float = Field(0.9, ge=0.0, lt=1.0, description="Adam's first-moment decay.")
    beta2: float = Field(0.999, ge=0.0, lt=1.0, description="Adam's second-moment decay.")
    eps: float = Field(1e-8, gt=0.0, description="Adam's denominator epsilon.")
    kappa: float = Field(
        0.0,
        ge=-1.0,
        le=1.0,
        description=(
            "Chiral modulation: each synapse's step is scaled by 1 + kappa * (2a - 1), where a "
            "is the share of the neuron's incoming gradients with the same sign. 0 is the plain rule."
        ),
    )


def _partial(model: type[BaseModel], name: str, doc: str) -> type[BaseModel]:
    """A copy of ``model`` whose fields are all optional and default to None (an override)."""
    fields: dict[str, Any] = {}
    for field_name, info in model.model_fields.items():
        annotation = Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
        fields[field_name] = (Optional[annotation], Field(None, description=info.description))
    return create_model(name, __base__=Strict, __doc__=doc, **fields)


LearningOverride = _partial(
    LearningSpec,
    "LearningOverride",
    "Overrides of the network-wide learning settings; the keys left out are inherited.",
)


def resolve_learning(base: LearningSpec, *overrides: BaseModel | None) -> LearningSpec:
    """The network-wide settings with each override's explicitly set keys applied in turn."""
    resolved = base
    for override in overrides:
        if override is not None:
            update = {k: v for k, v in override.model_dump(exclude_unset=True).items() if v is not None}
            if "stdp" in update:  # an override's stdp section overrides only the keys it sets
                update["stdp"] = {**resolved.stdp.model_dump(), **update["stdp"]}
            if update:
                resolved = LearningSpec.model_validate({**resolved.model_dump(), **update})
    return resolved


class DFABroadcastSpec(Strict):
    """A control for guided learning: on ticks without propagated error, each neuron learns from
    the task's broadcast alone (the context guides see: label and surprise), through a fixed random
    projection, as direct feedback alignment does from the output error: delta_j = f'(u_j) sum_k
    B_jk e_k with e = -s t, minus the surprise times the targets (docs/semantics.md, "Broadcast
    credit")."""

    kind: Literal["dfa"]


BroadcastSpec = tagged_union("kind", DFABroadcastSpec)


# --------------------------------------------------------------------------- network


class PopulationSpec(Strict):
    """A named group of neurons of one kind (PyNN's Population)."""

    name: Name
    size: int = Field(..., gt=0, le=MAX_NEURONS, description="Number of neurons.")
    role: Literal["input", "hidden", "output"] = Field(
        "hidden",
        description="input: fed by the task; output: judged by the task; exactly one of each.",
    )
    activation: Optional[Literal["identity", "tanh", "relu", "sigmoid", "leaky_relu"]] = Field(
        None,
        description="y = f(u); defaults to tanh. Input neurons pass their input through unchanged (identity).",
    )
    bias: bool = Field(True, description="Whether each neuron has a bias b_j (learned by gradient rules).")
    learning: Optional[LearningOverride] = Field(  # type: ignore[valid-type]
        None,
        description="Overrides for this population's biases and the projections into it.",
    )
    guide: Optional[GuideSpec] = Field(  # type: ignore[valid-type]
        None,
        description="Hidden populations: the ML model each neuron consults for its credit (tree, linear, mlp, "
        "or sklearn from Python); "
        "see the scenario's coupling and meta sections.",
    )
    broadcast: Optional[BroadcastSpec] = Field(  # type: ignore[valid-type]
        None,
        description="Hidden populations without a guide: on ticks without propagated error "
        "(schedule.backward_every), learn from the task's broadcast of label and surprise through a fixed "
        "random matrix (dfa), the information guides see, with no model: the fair control for guides.",
    )
    coupling: Optional[CouplingSpec] = Field(  # type: ignore[valid-type]
        None, description="Overrides the scenario's coupling for this population's guides."
    )
    meta: Optional[MetaSpec] = Field(  # type: ignore[valid-type]
        None, description="Overrides the scenario's meta-controller for this population."
    )
    firing: Optional[FiringSpec] = Field(
        None, description="Hidden and output populations: what a neuron emits at each step (policy rate, threshold, "
        "lif or random; docs/semantics.md, 'Spiking neurons'); left out: rate, y = f(u)."
    )
    readout: Optional[Literal["mean", "count", "membrane", "last"]] = Field(
        None, description="The output population: what the task judges over the run.steps_per_sample steps: mean "
        "(of what it emitted; the default for rate), count (spikes; the default for spiking policies), membrane "
        "(lif's mean membrane), last (what it emitted at the last step: a sequence classifier's or predictor's "
        "output)."
    )

    @model_validator(mode="after")
    def _default_activation(self) -> "PopulationSpec":
        if self.role == "input" and self.activation not in (None, "identity"):
            raise PydanticCustomError("scenario", "input neurons pass their input through unchanged",
                                      {"fix": "remove 'activation' from the input population"})
        if self.activation is None:
            # Written back so a dumped scenario states it; bypasses validate_assignment.
            self.__dict__["activation"] = "identity" if self.role == "input" else "tanh"
        return self


class AllToAll(Strict):
    """Every presynaptic neuron to every postsynaptic neuron."""

    rule: Literal["all_to_all"]
    allow_self_connections: bool = Field(True, description="For a projection of a population onto itself.")


class OneToOne(Strict):
    """Neuron i to neuron i; both populations have the same size."""

    rule: Literal["one_to_one"]


class FixedProbability(Strict):
    """Each possible synapse exists independently with probability p."""

    rule: Literal["fixed_probability"]
    p: float = Field(..., gt=0.0, le=1.0)
    allow_self_connections: bool = True


class FixedInDegree(Strict):
    """Each postsynaptic neuron gets exactly k distinct presynaptic neurons, drawn at random."""

    rule: Literal["fixed_in_degree"]
    k: int = Field(..., gt=0, le=MAX_NEURONS)
    allow_self_connections: bool = True


class NetworkxGraph(Strict):
    """Synapses from a networkx graph generator, by name (``watts_strogatz_graph``...).

    For a projection of a population onto itself the generator is called with the population
    size as its first argument and its nodes are the neurons.  Between two populations it is
    called with ``(n_pre, n_post)`` (a bipartite generator such as ``bipartite.random_graph``):
    nodes ``0..n_pre-1`` are the presynaptic neurons and the rest the postsynaptic ones.
    Undirected edges become synapses in both directions (pre to post only, between populations).
    The call is checked against the generator's signature, and its graph sized from its
    arguments, when the scenario is validated (:mod:`ribbed.scenarios.graphs`): never by running it.
    """

    rule: Literal["networkx"]
    generator: str = Field(..., description="A generator in networkx's namespace, e.g. 'erdos_renyi_graph'.")
    params: dict[str, Union[bool, int, float, str]] = Field(
        default_factory=dict, description="Keyword arguments of the generator (the seed is supplied); integers "
        "within 64 bits."
    )

    @field_validator("params", mode="before")
    @classmethod
    def _integers_fit(cls, params: Any) -> Any:
        # Before the union reads them: an integer beyond 64 bits would pass as a float (another
        # value), and the message log stores the scenario's integers in 64 bits.
        if isinstance(params, dict):
            for key, value in params.items():
                if isinstance(value, int) and not isinstance(value, bool) and not -MAX_COUNT - 1 <= value <= MAX_COUNT:
                    raise PydanticCustomError("scenario", f"params '{key}' is {value}, beyond a 64-bit integer",
                                              {"fix": f"give '{key}' a value from {-MAX_COUNT - 1} to {MAX_COUNT}"})
        return params


class EdgeList(Strict):
    """An explicit list of synapses as ``[pre_index, post_index]`` pairs, local to each population."""

    rule: Literal["edges"]
    edges: list[Annotated[list[Annotated[int, Field(ge=0, lt=MAX_NEURONS)]], Field(min_length=2, max_length=2)]] = Field(
        ..., min_length=1, description="[pre_index, post_index] pairs."
    )


ConnectivitySpec = tagged_union("rule", AllToAll, OneToOne, FixedProbability, FixedInDegree, NetworkxGraph, EdgeList)


class FanInUniform(Strict):
    """U(-gain/sqrt(fan_in), gain/sqrt(fan_in)): torch.nn.Linear's default when gain is 1."""

    kind: Literal["fan_in_uniform"]
    gain: float = Field(1.0, gt=0.0)


class GlorotUniform(Strict):
    """U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio, 2010)."""

    kind: Literal["glorot_uniform"]
    gain: float = Field(1.0, gt=0.0)


class HeNormal(Strict):
    """N(0, gain^2 * 2 / fan_in) (He et al., 2015)."""

    kind: Literal["he_normal"]
    gain: float = Field(1.0, gt=0.0)


class Normal(Strict):
    kind: Literal["normal"]
    mean: float = 0.0
    std: float = Field(..., gt=0.0)


class Uniform(Strict):
    kind: Literal["uniform"]
    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> "Uniform":
        if not self.low < self.high:
            raise PydanticCustomError("ordered", "low must be smaller than high (got low={low}, high={high})",
                                      {"low": self.low, "high": self.high})
        return self


class Constant(Strict):
    kind: Literal["constant"]
    value: float


WeightInitSpec = tagged_union("kind", FanInUniform, GlorotUniform, HeNormal, Normal, Uniform, Constant)


class ProjectionSpec(Strict):
    """The synapses from one population to another (PyNN's Projection)."""

    name: Optional[Name] = Field(None, description="Defaults to 'PRE->POST'.")
    pre: Name = Field(..., description="Presynaptic population.")
    post: Name = Field(..., description="Postsynaptic population.")
    connectivity: ConnectivitySpec = Field(default_factory=lambda: AllToAll(rule="all_to_all"))  # type: ignore[valid-type]
    init: WeightInitSpec = Field(default_factory=lambda: FanInUniform(kind="fan_in_uniform"))  # type: ignore[valid-type]
    learning: Optional[LearningOverride] = Field(None, description="Overrides for this projection only.")  # type: ignore[valid-type]
    frozen: bool = Field(False, description="No plasticity: weights keep their initial values (credit still flows).")
    storage: Literal["auto", "dense", "sparse"] = Field(
        "auto",
        description="batched executor: how the weights are held. auto: a dense matrix, or a sparse (CSR) one "
        "when the projection's density is below backend.sparse_threshold.",
    )

    @property
    def label(self) -> str:
        return self.name or f"{self.pre}->{self.post}"


# --------------------------------------------------------------------------- task


_ENCODING_DOC = ("How the inputs are presented over run.steps_per_sample steps: direct (a constant current, the "
                 "default), rate (Bernoulli spikes), latency (one spike, earlier for stronger input), sequence "
                 "(the features as T consecutive chunks of the input population's size, chunk s at step s).")


class _TaskBase(Strict):
    test_fraction: Fraction = Field(0.2, description="Share of the samples held out for evaluation.")
    encoding: Optional[EncodingSpec] = Field(None, description=_ENCODING_DOC)  # type: ignore[valid-type]


class DigitsTask(_TaskBase):
    """scikit-learn's bundled 8x8 digits (1797 images, 10 classes), stratified split, standardized."""

    kind: Literal["digits"]
    loss: Literal["cross_entropy", "mse"] = "cross_entropy"


class MoonsTask(_TaskBase):
    """Two interleaving half circles (scikit-learn's make_moons), 2 classes, standardized."""

    kind: Literal["moons"]
    n_samples: int = Field(1000, ge=10, le=MAX_COUNT)
    noise: float = Field(0.1, ge=0.0)
    loss: Literal["cross_entropy", "mse"] = "cross_entropy"


class XorTask(_TaskBase):
    """Points around the four corners of [-1, 1]^2, labelled by the XOR of their signs."""

    kind: Literal["xor"]
    n_samples: int = Field(400, ge=8, le=MAX_COUNT)
    noise: float = Field(0.1, ge=0.0)
    loss: Literal["cross_entropy", "mse"] = "cross_entropy"


class SineTask(_TaskBase):
    """Regression of y = sin(x) + noise on x uniform in [-pi, pi]."""

    kind: Literal["sine"]
    n_samples: int = Field(1000, ge=10, le=MAX_COUNT)
    noise: float = Field(0.0, ge=0.0)
    loss: Literal["mse"] = "mse"


class NpzTask(Strict):
    """Your own arrays: an .npz file with X_train, y_train, X_test, y_test (no pickles)."""

    kind: Literal["npz"]
    path: str = Field(..., description="Path of the .npz file, relative to the scenario file.")
    problem: Literal["classification", "regression"] = Field(
        ..., description="classification: y holds integer labels 0..C-1; regression: y holds targets."
    )
    loss: Literal["cross_entropy", "mse"] = "mse"
    encoding: Optional[EncodingSpec] = Field(None, description=_ENCODING_DOC)  # type: ignore[valid-type]


class MackeyGlassTask(_TaskBase):
    """Time-series prediction on the Mackey-Glass series (tau = 17, chaotic), generated from the seed:
    each sample is a window of consecutive values, its target the value ``horizon`` samples after
    the window; training windows come before held-out ones in time (docs/semantics.md, "Data")."""

    kind: Literal["mackey_glass"]
    n_samples: int = Field(1000, ge=10, le=MAX_COUNT, description="Windows (samples), training and held-out.")
    window: int = Field(20, ge=1, le=10_000, description="Values per window: the sample's features.")
    horizon: int = Field(1, ge=1, le=10_000, description="The target is the series this many samples after the "
                         "window's last value.")
    sample_every: int = Field(1, ge=1, le=1000, description="Time units between two samples of the series "
                              "(the integration step is 0.1).")
    noise: float = Field(0.0, ge=0.0, description="Standard deviation of noise added to the inputs (not the targets), "
                         "in units of the series' deviation.")
    loss: Literal["mse"] = "mse"


class ConstantTask(_TaskBase):
    """Every sample is the same input vector (every input ``value``) with target 0: for runs in which
    the encoding makes the input (e.g. Poisson spike trains) and nothing learns from targets (STDP)."""

    kind: Literal["constant"]
    n_inputs: int = Field(..., gt=0, le=MAX_NEURONS, description="Input size.")
    n_outputs: int = Field(1, gt=0, le=MAX_NEURONS, description="Output size (targets are 0).")
    value: float = Field(1.0, allow_inf_nan=False, description="Every input's value.")
    n_samples: int = Field(10, ge=2, le=MAX_COUNT)
    loss: Literal["mse"] = "mse"


class DelayedRecallTask(_TaskBase):
    """Delayed recall: a cue (one of ``n_symbols``, one-hot) at the first step of a sequence, then
    ``delay`` steps of distractor noise; the class to answer is the cue.  A sample's features are
    the (delay + 1) x n_symbols values, step by step: with ``encoding: sequence`` (T = delay + 1, an
    input population of n_symbols) only a network that keeps the cue can answer at the last step
    (docs/semantics.md, "Data")."""

    kind: Literal["delayed_recall"]
    n_samples: int = Field(1000, ge=10, le=MAX_COUNT)
    n_symbols: int = Field(4, ge=2, le=1000, description="Cue symbols: the classes.")
    delay: int = Field(5, ge=1, le=10_000, description="Steps of distractor between the cue and the answer.")
    noise: float = Field(1.0, ge=0.0, allow_inf_nan=False, description="Standard deviation of the distractor, "
                         "added to every value after the cue.")
    loss: Literal["cross_entropy", "mse"] = "cross_entropy"


TaskSpec = tagged_union("kind", DigitsTask, MoonsTask, XorTask, SineTask, MackeyGlassTask, DelayedRecallTask, NpzTask,
                        ConstantTask)

#: Input and output sizes of the tasks whose data is known without reading a file.
TASK_SHAPES: dict[str, tuple[int, int]] = {"digits": (64, 10), "moons": (2, 2), "xor": (2, 2), "sine": (1, 1)}


def task_shape(task: Any) -> tuple[int, int] | None:
    """(features, outputs) of a task known without reading a file, else None (npz)."""
    if task.kind == "mackey_glass":
        return task.window, 1
    if task.kind == "constant":
        return task.n_inputs, task.n_outputs
    if task.kind == "delayed_recall":
        return (task.delay + 1) * task.n_symbols, task.n_symbols
    return TASK_SHAPES.get(task.kind)


# --------------------------------------------------------------------------- run


class ScheduleSpec(Strict):
    """When messages are delivered."""

    mode: Literal["staged"] = Field(
        "staged",
        description="staged: messages sent in a stage are delivered before the next stage.",
    )
    backward_every: int = Field(
        1, gt=0, le=MAX_COUNT,
        description="The propagated error (the backward stage) runs on ticks that are multiples of this; "
        "in between, guided neurons learn from their guides alone, and unguided hidden neurons get no credit.",
    )


class RunSpec(Strict):
    """How long the run is and how often it is evaluated."""

    ticks: int = Field(1000, gt=0, le=MAX_COUNT, description="Number of ticks; one tick consumes one mini-batch.")
    batch_size: int = Field(32, gt=0, le=MAX_COUNT, description="Samples per tick (the run's memory estimate "
                            "and the message log's record size bound it further; ribbed validate says by how much).")
    eval_every: int = Field(
        100, gt=0, le=MAX_COUNT, description="Evaluate on the held-out set every this many ticks, and after the last tick."
    )
    steps_per_sample: int = Field(
        1, gt=0, le=MAX_STEPS, description="Steps each sample is presented for within a tick (docs/semantics.md, "
        "'Time within a tick'); 1: today's tick."
    )
    bptt_window: Optional[int] = Field(
        None, gt=0, le=MAX_STEPS, description="Truncated backprop through the steps: the carried state is detached "
        "every this many steps (torch's h.detach() every k steps), so credit never crosses a multiple of k; left "
        "out: the full steps_per_sample (docs/semantics.md, 'Learning over the steps')."
    )
    carry_state: bool = Field(
        False, description="Neuron state (membrane, conductance, refractory counter) and STDP traces carry from one "
        "tick to the next, batch row by batch row, instead of resetting for each sample: a long simulation cut into "
        "ticks (docs/semantics.md, 'Carried state')."
    )


class LogSpec(Strict):
    """What the run's message log (run.log in the run folder) records; docs/log-format.md."""

    level: Literal["off", "summary", "activity", "messages"] = Field(
        "summary",
        description="off: no log. summary: per tick the loss, outputs, message counts and batch, and "
        "snapshots of the full state. activity: also every neuron's activation (so every activation "
        "message). messages: also every neuron's credit, the task's answers and the weights the error "
        "messages were made with (so every error message).",
    )
    snapshot_every: Optional[int] = Field(
        None, gt=0, le=MAX_COUNT, description="Ticks between snapshots (weights, optimizer, guide and RNG state) for "
        "seeking and --resume; a multiple of run.eval_every; default: at every evaluation. A snapshot "
        "is also taken after the last tick.",
    )
    key_file: Optional[str] = Field(
        None, min_length=1, description="A file of 16 to 4096 secret bytes that key the log's digest chain "
        "(HMAC-SHA256 instead of SHA-256), so that nobody without the key can re-chain an edited log; "
        "relative to the scenario's folder. The log records the key's id, never the key; ribbed replay "
        "--verify --key-file checks it (docs/log-format.md, 'Keyed chain').",
    )


class OutputSpec(Strict):
    """Where a run writes its results."""

    dir: str = Field("runs", description="Parent folder of run directories.")
    agent_metrics: bool = Field(True, description="Also write per-neuron metrics (agents.csv) at each evaluation.")


# --------------------------------------------------------------------------- scenario


class Scenario(Strict):
    """One run: seed, task, populations, projections, learning, coupling, meta, schedule, run length,
    backend, output, log."""

    name: Name
    description: str = ""
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Root seed: every random draw of the run derives from it "
                      "(0 to 2^64 - 1).")
    task: TaskSpec  # type: ignore[valid-type]
    populations: list[PopulationSpec] = Field(..., min_length=1)
    projections: list[ProjectionSpec] = Field(default_factory=list)
    learning: LearningSpec = Field(default_factory=LearningSpec, description="Network-wide learning settings.")
    coupling: Optional[CouplingSpec] = Field(  # type: ignore[valid-type]
        None, description="How neurons of guided populations reach their guides; default: direct."
    )
    meta: Optional[MetaSpec] = Field(  # type: ignore[valid-type]
        None, description="How much each guided neuron trusts its guide; default: confidence."
    )
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    run: RunSpec = Field(default_factory=RunSpec)
    backend: BackendSpec = Field(  # type: ignore[valid-type]
        default_factory=ReferenceBackendSpec,
        description="Which executor runs the tick (kind: reference, batched or ray), with that executor's settings.",
    )
    output: OutputSpec = Field(default_factory=OutputSpec)
    log: LogSpec = Field(default_factory=LogSpec)

    # Where the scenario came from: used in messages and to resolve relative paths (npz task).
    _source: str = PrivateAttr("<python>")
    _folder: Optional[Path] = PrivateAttr(None)

    @property
    def source(self) -> str:
        return self._source

    @property
    def folder(self) -> Optional[Path]:
        return self._folder

    def locate(self, source: str, folder: Optional[Path]) -> "Scenario":
        """Say where this scenario came from (for messages, and to resolve relative paths); returns it."""
        self._source, self._folder = source, folder
        return self

    def __eq__(self, other: object) -> bool:
        """Equal when every field is: where a scenario was loaded from (its source and folder)
        is provenance, not content, so a run's scenario.yaml loads back equal to the original."""
        if not isinstance(other, Scenario):
            return NotImplemented
        return self.__dict__ == other.__dict__

    @model_validator(mode="after")
    def _consistent(self) -> "Scenario":
        # The rules live with the others in validation.py, which imports this module for the
        # types it checks: imported here, when the first scenario is validated, not at import.
        from ribbed.scenarios.validation import consistency_findings

        errors = [InitErrorDetails(type=PydanticCustomError("scenario", f.message, {"fix": f.fix}), loc=f.loc,
                                   input=f.value) for f in consistency_findings(self)]
        if errors:
            raise ValidationError.from_exception_data("Scenario", errors)
        return self

    # Convenience lookups used throughout the package.
    def population(self, name: str) -> PopulationSpec:
        for population in self.populations:
            if population.name == name:
                return population
        raise KeyError(name)

    def population_learning(self, population: PopulationSpec) -> LearningSpec:
        return resolve_learning(self.learning, population.learning)

    def population_coupling(self, population: PopulationSpec) -> CouplingSpec:  # type: ignore[valid-type]
        """The coupling of a guided population: its own, the scenario's, or direct."""
        return population.coupling or self.coupling or DirectCouplingSpec(kind="direct")

    def population_meta(self, population: PopulationSpec) -> MetaSpec:  # type: ignore[valid-type]
        """The meta-controller of a guided population: its own, the scenario's, or confidence."""
        return population.meta or self.meta or ConfidenceMetaSpec(kind="confidence")

    def population_firing(self, population: PopulationSpec) -> FiringSpec:
        """The population's firing policy: its own, or rate (y = f(u), today's neuron)."""
        return population.firing or FiringSpec()

    def population_readout(self, population: PopulationSpec) -> str:
        """The output population's readout: its own, or the policy's default (mean for rate, count for spikes)."""
        return population.readout or default_readout(population.firing)

    @property
    def encoding(self) -> EncodingSpec:  # type: ignore[valid-type]
        """The task's input encoding: its own, or direct."""
        return self.task.encoding or DirectEncodingSpec(kind="direct")

    @property
    def timed(self) -> bool:
        """Whether the run uses time within a tick (docs/semantics.md, "Time within a tick"): more
        than one step per sample, a spiking population, a spiking encoding or a readout other than
        the mean.  An untimed scenario runs today's tick exactly."""
        return (self.run.steps_per_sample > 1 or self.encoding.kind != "direct" or self.run.carry_state
                or any(self.population_firing(p).spiking for p in self.populations)
                or any(self.population_readout(p) != "mean" for p in self.populations if p.role == "output"))

    def projection_learning(self, projection: ProjectionSpec) -> LearningSpec:
        return resolve_learning(self.learning, self.population(projection.post).learning, projection.learning)
