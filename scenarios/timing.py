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

__all__ = ["DirectEncodingSpec", "EncodingSpec", "FiringSpec", "LatencyEncodingSpec", "READOUTS",
           "RateEncodingSpec", "SPIKING_ENCODINGS", "SURROGATE_DEFAULTS", "SequenceEncodingSpec", "SurrogateSpec",
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


class FiringSpec(Strict):
    """A population's firing policy: what its neurons emit at each step (docs/semantics.md,
    "Spiking neurons")."""

    policy: Literal["rate", "threshold", "lif", "random"] = Field(
        "rate", description="rate: y = f(u) (the default, today's neuron); threshold: a spike where u > threshold; "
        "lif: leaky integrate-and-fire (snnTorch's Leaky); random: a spike with probability sigmoid(u / temperature).")
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


EncodingSpec = tagged_union("kind", DirectEncodingSpec, RateEncodingSpec, LatencyEncodingSpec, SequenceEncodingSpec)

#: The encodings whose input neurons emit spikes (the others emit currents, as activations).
SPIKING_ENCODINGS = ("rate", "latency")

#: The readouts an output population may have; None in a scenario takes the policy's default.
READOUTS = ("mean", "count", "membrane", "last")


def default_readout(firing: FiringSpec | None) -> str:
    """The readout of an output population that names none: mean for rate, count for spiking."""
    return "count" if firing is not None and firing.spiking else "mean"
