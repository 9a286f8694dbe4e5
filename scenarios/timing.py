"""Scenario sections for time within a tick: firing policies, input encodings and readouts.

A sample may be presented for several *steps* (``run.steps_per_sample``); a population's
``firing`` policy says what its neurons emit at each step (``rate``: y = f(u), today's neuron and
the default; ``threshold``, ``lif``, ``random``: spikes), the task's ``encoding`` how the inputs are
presented over the steps, and the output population's ``readout`` what over the steps the task
judges.  docs/semantics.md ("Spiking neurons", "Time within a tick") is the exact statement.

Why the checks are written here and not taken from :mod:`ribbed.agents.firing`: the scenario
layer sits below the agents (tests/test_layers.py), so it states the same ranges as schema fields
(with the same defaults, snnTorch's), and a test holds the two to each other
(tests/test_timing_schema.py), so a scenario that loads always builds a valid ``FiringPolicy``.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from ribbed.scenarios.base import Strict, tagged_union

__all__ = ["ConductanceSpec", "DirectEncodingSpec", "EncodingSpec", "FiringSpec", "LatencyEncodingSpec",
           "PoissonEncodingSpec", "READOUTS", "RateEncodingSpec", "SPIKING_ENCODINGS", "STDPSpec",
           "SURROGATE_DEFAULTS", "SequenceEncodingSpec", "SurrogateSpec",
           "default_readout"]

#: Each surrogate's default parameter (atan's alpha, the sigmoids' slope): snnTorch's, as in
#: ribbed.agents.firing.SURROGATES (a test keeps the two equal).
SURROGATE_DEFAULTS: dict[str, float] = {"atan": 2.0, "fast_sigmoid": 25.0, "sigmoid": 25.0}


class SurrogateSpec(Strict):
    """The derivative that stands in for a spike's in the backward pass (snnTorch's formulas)."""

    kind: Literal["atan", "fast_sigmoid", "sigmoid"] = Field(
        "atan", description="atan: (alpha/2) / (1 + (pi alpha x / 2)^2); fast_sigmoid: 1 / (slope |x| + 1)^2; "
        "sigmoid: the derivative of sigmoid(slope x).")
    parameter: Optional[float] = Field(
        None, gt=0.0, allow_inf_nan=False,
        description="atan's alpha (default 2) or the sigmoids' slope (default 25); left out: the default.")


class ConductanceSpec(Strict):
    """The conductance-based integrate-and-fire neuron of Brian2's STDP example (Song, Miller &
    Abbott 2000), in mV and ms: dv/dt = (g (E_e - v) + E_l - v) / tau_m, dg/dt = -g / tau_e,
    a spike where v > v_t, then v = v_r; each step's input current u is added to g."""

    tau_m: float = Field(10.0, gt=0.0, allow_inf_nan=False, description="Membrane time constant (ms).")
    tau_e: float = Field(5.0, gt=0.0, allow_inf_nan=False, description="Excitatory conductance decay (ms).")
    e_e: float = Field(0.0, allow_inf_nan=False, description="Excitatory reversal potential (mV).")
    e_l: float = Field(-74.0, allow_inf_nan=False, description="Leak reversal potential (mV).")
    v_t: float = Field(-54.0, allow_inf_nan=False, description="Spike threshold (mV).")
    v_r: float = Field(-60.0, allow_inf_nan=False, description="Reset potential, and the membrane at the start (mV).")
    dt: float = Field(1.0, gt=0.0, allow_inf_nan=False, description="The step (ms).")


class FiringSpec(Strict):
    """A population's firing policy: what its neurons emit at each step (docs/semantics.md,
    "Spiking neurons")."""

    policy: Literal["rate", "threshold", "lif", "random", "conductance"] = Field(
        "rate", description="rate: y = f(u) (the default, today's neuron); threshold: a spike where u > threshold; "
        "lif: leaky integrate-and-fire (snnTorch's Leaky); random: a spike with probability sigmoid(u / temperature); "
        "conductance: Brian2's conductance-based integrate-and-fire neuron (no gradient: for STDP).")
    threshold: float = Field(1.0, allow_inf_nan=False, description="The spike threshold theta (snnTorch's default 1).")
    beta: Optional[float] = Field(None, ge=0.0, le=1.0, description="lif's membrane decay, required for lif: "
                                  "U[t+1] = beta U[t] + I[t+1] - reset.")
    reset: Literal["subtract", "zero", "none"] = Field("subtract", description="lif's reset after a spike.")
    reset_delay: bool = Field(True, description="lif: the reset for a spike acts on the next step "
                              "(snnTorch's default).")
    strict: bool = Field(True, description="A spike where x > 0 (snnTorch's comparison); false: where x >= 0.")
    temperature: float = Field(1.0, gt=0.0, allow_inf_nan=False, description="random: p = sigmoid(u / temperature).")
    refractory: int = Field(0, ge=0, le=2**31 - 1, description="Steps after a spike during which a neuron emits none.")
    surrogate: SurrogateSpec = Field(default_factory=SurrogateSpec, description="The spike's surrogate derivative.")
    conductance: Optional[ConductanceSpec] = Field(
        None, description="The conductance policy's constants (left out: Brian2's STDP example's).")

    @model_validator(mode="after")
    def _policy_fields(self) -> "FiringSpec":
        if self.policy == "lif" and self.beta is None:
            raise PydanticCustomError("scenario", "a lif policy needs its membrane decay beta",
                                      {"fix": "give beta in [0, 1], e.g. beta: 0.9"})
        if self.policy != "lif" and self.beta is not None:
            raise PydanticCustomError("scenario", f"beta is the lif membrane's decay, and this policy is {self.policy}",
                                      {"fix": "remove beta, or use policy: lif"})
        if self.policy == "rate" and self.refractory:
            raise PydanticCustomError("scenario", "a rate neuron emits no spikes, so it has no refractory period",
                                      {"fix": "remove refractory, or choose a spiking policy (threshold, lif, random)"})
        if self.policy != "conductance" and self.conductance is not None:
            raise PydanticCustomError("scenario", f"conductance holds the conductance neuron's constants, and this "
                                      f"policy is {self.policy}",
                                      {"fix": "remove conductance, or use policy: conductance"})
        return self

    @property
    def spiking(self) -> bool:
        """Whether the policy emits spikes (every policy but rate)."""
        return self.policy != "rate"


class DirectEncodingSpec(Strict):
    """The inputs as a constant current at every step (with one step, today's input)."""

    kind: Literal["direct"]


class RateEncodingSpec(Strict):
    """Input neuron i spikes at each step with probability sigmoid(gain x_i) (uniforms from the seed)."""

    kind: Literal["rate"]
    gain: float = Field(1.0, gt=0.0, allow_inf_nan=False, description="p = sigmoid(gain x) per step.")


class LatencyEncodingSpec(Strict):
    """Input neuron i spikes once, at step rint((1 - sigmoid(gain x_i)) (T - 1)): stronger is earlier."""

    kind: Literal["latency"]
    gain: float = Field(1.0, gt=0.0, allow_inf_nan=False, description="The spike step from sigmoid(gain x).")


class SequenceEncodingSpec(Strict):
    """Each sample is a sequence: its features split into T consecutive chunks of n_inputs, chunk s
    fed at step s as a current (digits row by row: 8 steps of 8 pixels; a time-series window: T steps
    of one value).  Needs n_features = T x the input population's size."""

    kind: Literal["sequence"]


class PoissonEncodingSpec(Strict):
    """Input neuron i spikes at each step with probability rate_hz * dt / 1000 * x_i (clipped to [0, 1]):
    a Poisson train of rate_hz * x_i Hz at a step of dt ms (uniforms from the seed, as rate's)."""

    kind: Literal["poisson"]
    rate_hz: float = Field(..., gt=0.0, allow_inf_nan=False, description="The rate (Hz) of an input of value 1.")
    dt: float = Field(1.0, gt=0.0, allow_inf_nan=False, description="The step (ms).")


EncodingSpec = tagged_union("kind", DirectEncodingSpec, RateEncodingSpec, LatencyEncodingSpec, SequenceEncodingSpec,
                            PoissonEncodingSpec)

#: The encodings whose input neurons emit spikes (the others emit currents, as activations).
SPIKING_ENCODINGS = ("rate", "latency", "poisson")


class STDPSpec(Strict):
    """Pair-based STDP's parameters (docs/semantics.md, "STDP"; ribbed.agents.stdp.STDPParams), and
    R-STDP's eligibility time constant and reward.  Times in the unit of dt (ms in scenarios)."""

    tau_plus: float = Field(20.0, gt=0.0, allow_inf_nan=False, description="Presynaptic trace time constant.")
    tau_minus: float = Field(20.0, gt=0.0, allow_inf_nan=False, description="Postsynaptic trace time constant.")
    a_plus: float = Field(0.01, ge=0.0, allow_inf_nan=False, description="Potentiation (post after pre) amplitude.")
    a_minus: float = Field(0.0105, ge=0.0, allow_inf_nan=False, description="Depression (pre after post) amplitude.")
    w_min: float = Field(0.0, allow_inf_nan=False, description="Lower weight bound.")
    w_max: float = Field(1.0, allow_inf_nan=False, description="Upper weight bound.")
    pairing: Literal["all_to_all", "nearest"] = Field(
        "all_to_all", description="all_to_all: every earlier spike of the partner pairs; nearest: only its latest.")
    bounds: Literal["hard", "soft"] = Field("hard", description="hard: additive, clipped; soft: multiplicative.")
    dt: float = Field(1.0, gt=0.0, allow_inf_nan=False, description="The step, in the unit of the time constants.")
    tau_e: float = Field(1000.0, gt=0.0, allow_inf_nan=False, description="r_stdp: eligibility time constant.")
    reward: Literal["correct", "negative_loss", "shuffled"] = Field(
        "correct", description="r_stdp: the reward the task sends each sample at its last step: correct, +1 for a "
        "correct readout (argmax = label) and -1 for a wrong one (classification); negative_loss: minus the "
        "sample's loss; shuffled, the null baseline: the batch's correct rewards permuted across its samples by "
        "a permutation drawn from the seed for the tick (the same +1/-1 counts, unrelated to the sample).")

    @model_validator(mode="after")
    def _ordered(self) -> "STDPSpec":
        if not self.w_min < self.w_max:
            raise PydanticCustomError("scenario", f"w_max ({self.w_max}) must be above w_min ({self.w_min})",
                                      {"fix": "set w_min < w_max"})
        return self

#: The readouts an output population may have; None in a scenario takes the policy's default.
READOUTS = ("mean", "count", "membrane", "last")


def default_readout(firing: FiringSpec | None) -> str:
    """The readout of an output population that names none: mean for rate, count for spiking."""
    return "count" if firing is not None and firing.spiking else "mean"
