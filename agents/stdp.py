"""Spike-timing-dependent plasticity: pair-based STDP with traces, and reward-modulated STDP
(R-STDP) through an eligibility trace, written once over an array namespace ``xp``.

Why one module: the reference executor (numpy, float64) and the tensor executors (torch) must
learn by the same arithmetic, so the formulas live here and both call them (the pattern of
:mod:`ribbed.agents.rules`).  docs/semantics.md ("STDP") is the authoritative statement; in short,
with d₊ = exp(−dt/τ₊), d₋ = exp(−dt/τ₋), spikes s ∈ {0, 1} of this step, and synapse k from
presynaptic neuron i = pre[k] to postsynaptic neuron j = post[k], one step does, in this order:

  1. decay:     x_pre ← d₊ x_pre,   x_post ← d₋ x_post            (every neuron)
  2. update:    Δw_k = A₊ x_pre[i] s_post[j] − A₋ x_post[j] s_pre[i]   (hard bounds)
                Δw_k = A₊ x_pre[i] s_post[j] (w_max − w_k) − A₋ x_post[j] s_pre[i] (w_k − w_min)  (soft)
                w ← clip(w + ⟨Δw⟩, w_min, w_max)   (⟨·⟩: mean over batch axes, if any)
  3. increment: all_to_all: x ← x + s;   nearest: x ← x (1 − s) + s   (reset to 1)

The update reads the traces *before* this step's spikes are added, so a pre spike and a post
spike in the same step do not pair with each other (Δt = 0 gives no change), and a pair at
Δt = n·dt > 0 changes w by exactly A₊ exp(−Δt/τ₊) (or −A₋ exp(−Δt/τ₋)): the traces are sampled
exactly from their continuous exponential decay.

R-STDP (Izhikevich 2007, Florian 2007) routes each sample's Δw of step 2 into an eligibility
trace e per synapse instead of into w: e ← d_e e + Δw (after decaying e by d_e = exp(−dt/τ_e)),
then w ← clip(w + lr ⟨r e⟩, w_min, w_max) with this step's reward r (0 on steps without one).

Traces are per neuron (shape ``batch + (n,)``), weights per synapse (shape ``(n_syn,)``, shared
by the batch, or ``batch + (n_syn,)`` for independent copies), eligibility per synapse and
sample (``batch + (n_syn,)``).  Spikes are 0/1 arrays (bool or float) of the traces' shape.  Index arrays None: every
(post, pre) pair in canonical order (all to all), computed by broadcasting.
The functions return new arrays; nothing is updated in place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

from ribbed.errors import Problem, ScenarioError

__all__ = ["BOUNDS", "PAIRINGS", "RewardParams", "STDPParams", "STDPTraces", "apply_update", "decay_traces",
           "eligibility_step", "increment_traces", "initial_traces", "pair_update", "rstdp_step", "stdp_step"]

#: How a spike sets its neuron's trace: ``all_to_all`` adds 1 (every earlier spike of the partner
#: pairs with this one), ``nearest`` resets it to 1 (only the latest spike pairs).
PAIRINGS = ("all_to_all", "nearest")
#: ``hard``: additive steps, clipped to [w_min, w_max]; ``soft``: multiplicative bounds (potentiation
#: scaled by w_max − w, depression by w − w_min: van Rossum et al. 2000, Gütig et al. 2003 with μ = 1).
BOUNDS = ("hard", "soft")

_SOURCE = "STDP parameters"


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ScenarioError(Problem(_SOURCE, name, f"must be a finite number > 0, got {value!r}",
                                    f"give {name} a positive time (in the unit of dt, e.g. ms)"))


@dataclass(frozen=True)
class STDPParams:
    """Pair-based STDP: trace time constants ``tau_plus`` (presynaptic trace, potentiation window)
    and ``tau_minus`` (postsynaptic trace, depression window), the step ``dt`` in the same unit,
    amplitudes ``a_plus`` (potentiation, post after pre) and ``a_minus`` (depression, pre after
    post; both ≥ 0, the sign is in the rule), weight bounds, the pairing (:data:`PAIRINGS`) and
    the kind of bounds (:data:`BOUNDS`).  Bad values raise :class:`~ribbed.errors.ScenarioError`."""

    tau_plus: float = 20.0
    tau_minus: float = 20.0
    a_plus: float = 0.01
    a_minus: float = 0.0105
    w_min: float = 0.0
    w_max: float = 1.0
    pairing: str = "all_to_all"
    bounds: str = "hard"
    dt: float = 1.0

    def __post_init__(self) -> None:
        for name in ("tau_plus", "tau_minus", "dt"):
            _positive(name, getattr(self, name))
        for name in ("a_plus", "a_minus"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ScenarioError(Problem(_SOURCE, name, f"must be a finite number >= 0, got {value!r}",
                                            "amplitudes are magnitudes: depression is -a_minus by the rule"))
        for name in ("w_min", "w_max"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise ScenarioError(Problem(_SOURCE, name, f"must be a finite number, got {value!r}",
                                            "give finite weight bounds"))
        if not self.w_min < self.w_max:
            raise ScenarioError(Problem(_SOURCE, "w_max", f"must be > w_min ({self.w_min}), got {self.w_max}",
                                        "set w_min < w_max"))
        if self.pairing not in PAIRINGS:
            raise ScenarioError(Problem(_SOURCE, "pairing", f"unknown pairing {self.pairing!r}",
                                        f"use one of {', '.join(PAIRINGS)}"))
        if self.bounds not in BOUNDS:
            raise ScenarioError(Problem(_SOURCE, "bounds", f"unknown bounds {self.bounds!r}",
                                        f"use one of {', '.join(BOUNDS)}"))

    @property
    def decay_plus(self) -> float:
        """d₊ = exp(−dt/τ₊): the presynaptic trace's factor per step."""
        return math.exp(-self.dt / self.tau_plus)

    @property
    def decay_minus(self) -> float:
        """d₋ = exp(−dt/τ₋): the postsynaptic trace's factor per step."""
        return math.exp(-self.dt / self.tau_minus)


@dataclass(frozen=True)
class RewardParams:
    """R-STDP: the eligibility trace's time constant ``tau_e`` (unit of dt) and the learning rate
    ``lr`` that scales reward × eligibility into a weight change."""

    tau_e: float = 1000.0
    lr: float = 1.0

    def __post_init__(self) -> None:
        _positive("tau_e", self.tau_e)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr)):
            raise ScenarioError(Problem(_SOURCE, "lr", f"must be a finite number, got {self.lr!r}",
                                        "give a finite learning rate"))

    def decay(self, dt: float) -> float:
        """d_e = exp(−dt/τ_e): the eligibility's factor per step."""
        return math.exp(-dt / self.tau_e)


class STDPTraces(NamedTuple):
    """The neurons' spike traces: ``pre`` (shape batch + (n_pre,)), ``post`` (batch + (n_post,))."""

    pre: Any
    post: Any


def initial_traces(n_pre: int, n_post: int, like: Any, batch_shape: tuple[int, ...] = ()) -> STDPTraces:
    """Zero traces, with the namespace, dtype and device of the array ``like`` (e.g. the weights)."""
    if isinstance(like, np.ndarray):
        return STDPTraces(np.zeros((*batch_shape, n_pre), like.dtype), np.zeros((*batch_shape, n_post), like.dtype))
    import torch  # noqa: PLC0415  (numpy callers need not pay for it)
    return STDPTraces(torch.zeros((*batch_shape, n_pre), dtype=like.dtype, device=like.device),
                      torch.zeros((*batch_shape, n_post), dtype=like.dtype, device=like.device))


def decay_traces(traces: STDPTraces, params: STDPParams) -> STDPTraces:
    """Step 1: both traces decay by one step of their exponential (exact for any dt)."""
    return STDPTraces(traces.pre * params.decay_plus, traces.post * params.decay_minus)


def _as_float(spikes: Any, like: Any) -> Any:
    """0/1 spikes (bool or numbers) in the dtype of ``like`` (no copy when they already are)."""
    if spikes.dtype == like.dtype:
        return spikes
    if isinstance(spikes, np.ndarray):
        return spikes.astype(like.dtype, copy=False)
    return spikes.to(like.dtype)


def increment_traces(traces: STDPTraces, pre_spikes: Any, post_spikes: Any, params: STDPParams) -> STDPTraces:
    """Step 3: this step's spikes enter the traces: ``x + s`` (all_to_all) or ``x (1 − s) + s``
    (nearest: a spike sets the trace to exactly 1)."""
    pre_spikes, post_spikes = _as_float(pre_spikes, traces.pre), _as_float(post_spikes, traces.post)
    if params.pairing == "all_to_all":
        return STDPTraces(traces.pre + pre_spikes, traces.post + post_spikes)
    return STDPTraces(traces.pre * (1 - pre_spikes) + pre_spikes, traces.post * (1 - post_spikes) + post_spikes)


def pair_update(weights: Any, traces: STDPTraces, pre_spikes: Any, post_spikes: Any, pre_index: Any,
                post_index: Any, params: STDPParams) -> Any:
    """Step 2's Δw per synapse and sample (shape batch + (n_syn,)), from the decayed traces and
    this step's spikes: potentiation A₊ x_pre[pre] s_post[post] minus depression
    A₋ x_post[post] s_pre[pre], each scaled by its distance to the bound for ``soft`` bounds."""
    pre_spikes, post_spikes = _as_float(pre_spikes, traces.pre), _as_float(post_spikes, traces.post)
    potentiation = _pair_products(traces.pre, post_spikes, pre_index, post_index)
    depression = _pair_products(pre_spikes, traces.post, pre_index, post_index)
    if params.bounds == "soft":
        potentiation = potentiation * (params.w_max - weights)
        depression = depression * (weights - params.w_min)
    return params.a_plus * potentiation - params.a_minus * depression


def _pair_products(pre_values: Any, post_values: Any, pre_index: Any, post_index: Any) -> Any:
    """pre_values[pre[k]] · post_values[post[k]] for every synapse k.  ``pre_index`` and
    ``post_index`` None stand for every (post, pre) pair in canonical order (an all-to-all
    projection, k = post · n_pre + pre): the same products by broadcasting, without the gathers."""
    if pre_index is None:
        product = pre_values[..., None, :] * post_values[..., :, None]
        return product.reshape(*product.shape[:-2], -1)
    return pre_values[..., pre_index] * post_values[..., post_index]


def _batch_mean(change: Any, weights: Any) -> Any:
    """``change`` averaged over its leading axes that ``weights`` lacks (the batch)."""
    extra = change.ndim - weights.ndim
    if extra <= 0:
        return change
    if all(n == 1 for n in change.shape[:extra]):  # the mean of one sample is that sample, exactly
        return change.reshape(weights.shape)
    return change.mean(axis=tuple(range(extra)))


def apply_update(weights: Any, change: Any, params: STDPParams, xp: ModuleType) -> Any:
    """w ← clip(w + ⟨change⟩, w_min, w_max), ⟨·⟩ the mean over the batch axes ``weights`` lacks.
    The clip also holds soft bounds exactly (all_to_all traces can exceed 1 and overshoot)."""
    return xp.clip(weights + _batch_mean(change, weights), params.w_min, params.w_max)


def stdp_step(weights: Any, traces: STDPTraces, pre_spikes: Any, post_spikes: Any, pre_index: Any,
              post_index: Any, params: STDPParams, xp: ModuleType) -> tuple[Any, STDPTraces]:
    """One step of pair-based STDP: decay, update the weights, increment; returns (weights, traces).
    ``pre_index``/``post_index``: each synapse's presynaptic and postsynaptic neuron (local indices),
    or both None for every (post, pre) pair in canonical order (all to all)."""
    traces = decay_traces(traces, params)
    change = pair_update(weights, traces, pre_spikes, post_spikes, pre_index, post_index, params)
    weights = apply_update(weights, change, params, xp)
    return weights, increment_traces(traces, pre_spikes, post_spikes, params)


def _per_synapse(reward: Any) -> Any:
    """A reward (a number, or one per sample of shape batch) broadcast against batch + (n_syn,)."""
    return reward[..., None] if getattr(reward, "ndim", 0) > 0 else reward


def eligibility_step(eligibility: Any, change: Any, params: STDPParams, reward_params: RewardParams) -> Any:
    """e ← d_e e + Δw: the eligibility decays one step and takes this step's STDP change."""
    return eligibility * reward_params.decay(params.dt) + change


def rstdp_step(weights: Any, traces: STDPTraces, eligibility: Any, pre_spikes: Any, post_spikes: Any, reward: Any,
               pre_index: Any, post_index: Any, params: STDPParams, reward_params: RewardParams,
               xp: ModuleType) -> tuple[Any, STDPTraces, Any]:
    """One step of reward-modulated STDP; returns (weights, traces, eligibility).

    Order: decay the traces; e ← d_e e + Δw (Δw of :func:`pair_update`, per sample); then
    w ← clip(w + lr ⟨r e⟩, w_min, w_max) with ``reward`` r of this step (a number or one per
    sample; 0 leaves w unchanged, exactly); then increment the traces.  A reward thus credits
    the pairings of its own step too.  ``eligibility`` has shape batch + (n_syn,) (start it at 0)."""
    traces = decay_traces(traces, params)
    change = pair_update(weights, traces, pre_spikes, post_spikes, pre_index, post_index, params)
    eligibility = eligibility_step(eligibility, change, params, reward_params)
    weights = apply_update(weights, reward_params.lr * _per_synapse(reward) * eligibility, params, xp)
    return weights, increment_traces(traces, pre_spikes, post_spikes, params), eligibility
