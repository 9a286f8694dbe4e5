"""Firing policies and surrogate gradients: the neuron-level arithmetic of spiking populations.

A population's *firing policy* turns a neuron's pre-activation u (its input current) into what it
sends, one step at a time: ``rate`` (y = f(u), today's neuron), ``threshold`` (a spike where
u - theta crosses zero), ``lif`` (a leaky integrate-and-fire membrane, with snnTorch's ``Leaky``
conventions, so that its users feel at home and a test can hold it to snnTorch spike for spike)
and ``random`` (a Bernoulli spike with probability sigmoid(u / temperature), from uniforms the
caller draws).  Any spiking policy may add a refractory period of r steps.  docs/semantics.md
("Spiking neurons") is the exact statement; this module is its one implementation.

Why one module over ``xp``: the reference executor (numpy, float64, one neuron's agent at a
time) and the tensor executors (torch, whole populations) must compute the same membrane and the
same spikes, so each formula is written once over an array namespace (``xp`` = numpy or torch,
see :mod:`ribbed.agents.xp`) and works elementwise on any shape (a neuron's ``(batch,)``, a
population's ``(batch, n)``).  Nothing here draws random numbers: the random policy's uniforms
come from the caller, who derives them from the scenario seed in shared code.

Spikes and gradients.  A spike is the Heaviside step of an argument x (u - theta, U - theta, or
p - v); its derivative is replaced in the backward pass by a *surrogate* (``atan``, default,
alpha = 2; ``fast_sigmoid``, slope 25; ``sigmoid``, slope 25), with snnTorch's formulas.  On
torch the step is a :class:`torch.autograd.Function` per surrogate (forward Heaviside, backward
the surrogate derivative), so autograd trains through time; on numpy the reference executor
computes its backward by hand from :func:`spike_derivative`, the same formula the torch
Functions' backward calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np
import torch

from ribbed.agents.activations import activation_table
from ribbed.agents.xp import astype
from ribbed.errors import Problem, RibbedError

__all__ = ["POLICIES", "RESETS", "SURROGATES", "ATanSpike", "Conductance", "FastSigmoidSpike", "FiringPolicy",
           "FiringState", "conductance_step",
           "SigmoidSpike", "Surrogate", "atan_derivative", "fast_sigmoid_derivative", "fire", "heaviside",
           "initial_state", "lif_current_gradient", "lif_membrane_carry", "lif_step", "policy_of", "random_spike",
           "refractory_step", "sigmoid_derivative", "spike",
           "spike_derivative", "spike_probability", "threshold_spike"]

POLICIES = ("rate", "threshold", "lif", "random", "conductance")
RESETS = ("subtract", "zero", "none")
#: Each surrogate's parameter and its default (snnTorch's: ``atan(alpha=2.0)``,
#: ``fast_sigmoid(slope=25)``, ``sigmoid(slope=25)`` in snntorch/surrogate.py).
SURROGATES: dict[str, tuple[str, float]] = {"atan": ("alpha", 2.0), "fast_sigmoid": ("slope", 25.0),
                                            "sigmoid": ("slope", 25.0)}

_SOURCE = "firing policy"


def _refuse(field: str, message: str, fix: str) -> RibbedError:
    return RibbedError(Problem(_SOURCE, field, message, fix))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ---------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Surrogate:
    """The surrogate derivative that stands in for the spike's in the backward pass.

    ``parameter`` is atan's alpha or the sigmoids' slope; None takes snnTorch's default
    (:data:`SURROGATES`)."""

    kind: str = "atan"
    parameter: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in SURROGATES:
            raise _refuse("surrogate.kind", f"unknown surrogate {self.kind!r}",
                          f"use one of {', '.join(SURROGATES)}")
        if self.parameter is None:
            object.__setattr__(self, "parameter", SURROGATES[self.kind][1])
        elif not _is_number(self.parameter) or self.parameter <= 0:
            name = SURROGATES[self.kind][0]
            raise _refuse(f"surrogate.{name}", f"{name} must be a finite number > 0, not {self.parameter!r}",
                          f"leave it out for the default {SURROGATES[self.kind][1]:g}")


@dataclass(frozen=True)
class Conductance:
    """The conductance-based integrate-and-fire neuron of Brian2's STDP example (Song, Miller &
    Abbott 2000), mV and ms: dv/dt = (g (E_e - v) + E_l - v) / tau_m, dg/dt = -g / tau_e; defaults
    are the example's.  See :func:`conductance_step` for how a step of ``dt`` is integrated."""

    tau_m: float = 10.0
    tau_e: float = 5.0
    e_e: float = 0.0
    e_l: float = -74.0
    v_t: float = -54.0
    v_r: float = -60.0
    dt: float = 1.0

    def __post_init__(self) -> None:
        for name in ("tau_m", "tau_e", "dt"):
            if not _is_number(getattr(self, name)) or getattr(self, name) <= 0:
                raise _refuse(f"conductance.{name}", f"{name} must be a finite number > 0, not {getattr(self, name)!r}",
                              "give a positive time in ms")
        for name in ("e_e", "e_l", "v_t", "v_r"):
            if not _is_number(getattr(self, name)):
                raise _refuse(f"conductance.{name}", f"{name} must be a finite number, not {getattr(self, name)!r}",
                              "give a potential in mV")


@dataclass(frozen=True)
class FiringPolicy:
    """One population's firing policy, validated.

    ``beta`` (lif's membrane decay, required for lif: snnTorch has no default either),
    ``threshold`` theta, ``reset`` (``subtract``, ``zero``, ``none``), ``reset_delay`` (snnTorch's
    default True: the reset for a spike is applied on the next step), ``strict`` (a spike when
    x > 0, snnTorch's comparison; False: x >= 0), ``temperature`` (random), ``refractory``
    (steps during which a neuron that spiked emits no spike), ``surrogate``."""

    policy: str = "rate"
    threshold: float = 1.0
    beta: float | None = None
    reset: str = "subtract"
    reset_delay: bool = True
    strict: bool = True
    temperature: float = 1.0
    refractory: int = 0
    surrogate: Surrogate = Surrogate()
    conductance: Conductance = Conductance()

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise _refuse("policy", f"unknown firing policy {self.policy!r}", f"use one of {', '.join(POLICIES)}")
        if self.reset not in RESETS:
            raise _refuse("reset", f"unknown reset {self.reset!r}", f"use one of {', '.join(RESETS)}")
        if not _is_number(self.threshold):
            raise _refuse("threshold", f"threshold must be a finite number, not {self.threshold!r}",
                          "use e.g. threshold: 1.0 (snnTorch's default)")
        if self.policy == "lif" and self.beta is None:
            raise _refuse("beta", "a lif policy needs its membrane decay beta",
                          "give beta in [0, 1], e.g. beta: 0.9 (U[t+1] = beta U[t] + I[t+1] - reset)")
        if self.beta is not None and (not _is_number(self.beta) or not 0.0 <= self.beta <= 1.0):
            raise _refuse("beta", f"beta must be a number in [0, 1], not {self.beta!r}",
                          "snnTorch clamps beta to [0, 1] silently; ribbed asks for a value in range")
        if not _is_number(self.temperature) or self.temperature <= 0:
            raise _refuse("temperature", f"temperature must be a finite number > 0, not {self.temperature!r}",
                          "use e.g. temperature: 1.0 (spike probability sigmoid(u / temperature))")
        if isinstance(self.refractory, bool) or not isinstance(self.refractory, int) or self.refractory < 0:
            raise _refuse("refractory", f"refractory must be a whole number of steps >= 0, not {self.refractory!r}",
                          "use 0 (no refractory period) or a number of steps such as 2")
        if self.policy == "rate" and self.refractory:
            raise _refuse("refractory", "a rate neuron emits no spikes, so it has no refractory period",
                          "remove refractory, or choose a spiking policy (threshold, lif, random)")
        if not isinstance(self.surrogate, Surrogate):
            raise _refuse("surrogate", f"surrogate must be a Surrogate, not {type(self.surrogate).__name__}",
                          "use Surrogate('atan'), Surrogate('fast_sigmoid', 25.0), ...")

    @property
    def spiking(self) -> bool:
        """Whether the policy emits spikes (every policy but ``rate``)."""
        return self.policy != "rate"


class FiringState(NamedTuple):
    """A population's (or a neuron's) state between steps, one entry per batch row and neuron:
    the membrane U (lif; zeros otherwise), the spike S it emitted at the last step (0/1 in the
    membrane's dtype) and its refractory counter (integer steps still silent)."""

    membrane: Any
    spike: Any
    refractory: Any
    conductance: Any = None  # the conductance policy's g (None for the others)


def initial_state(shape: tuple[int, ...], xp: ModuleType, dtype: Any = None, device: Any = None,
                  policy: FiringPolicy | None = None) -> FiringState:
    """The state at the start of a sample: membrane 0 (the conductance policy's: its reset
    potential v_r, conductance 0), no spike, not refractory.  ``dtype``: the membrane's (default
    float64); ``device``: torch only."""
    if xp is np:
        dtype = np.float64 if dtype is None else dtype
        state = FiringState(np.zeros(shape, dtype), np.zeros(shape, dtype), np.zeros(shape, np.int64))
    else:
        dtype = torch.float64 if dtype is None else dtype
        state = FiringState(torch.zeros(shape, dtype=dtype, device=device),
                            torch.zeros(shape, dtype=dtype, device=device),
                            torch.zeros(shape, dtype=torch.int64, device=device))
    if policy is not None and policy.policy == "conductance":
        state = state._replace(membrane=state.membrane + policy.conductance.v_r,
                               conductance=xp.zeros_like(state.membrane))
    return state


# ---------------------------------------------------------------------- the spike and its surrogates


def heaviside(x: Any, strict: bool, xp: ModuleType) -> Any:
    """Theta(x): 1 where x > 0 (``strict``, snnTorch's ``(input_ > 0)``) or x >= 0, else 0, in
    x's dtype."""
    return astype(x > 0 if strict else x >= 0, x.dtype, xp)


def atan_derivative(x: Any, alpha: float, xp: ModuleType) -> Any:
    """snnTorch's ``surrogate.atan``: d/dx of (1/pi) arctan(pi alpha x / 2), that is
    (alpha / 2) / (1 + (pi alpha x / 2)^2)."""
    return alpha / 2 / (1 + (math.pi / 2 * alpha * x) ** 2)


def fast_sigmoid_derivative(x: Any, slope: float, xp: ModuleType) -> Any:
    """snnTorch's ``surrogate.fast_sigmoid`` (SuperSpike): 1 / (slope |x| + 1)^2."""
    return 1.0 / (slope * xp.abs(x) + 1.0) ** 2


def sigmoid_derivative(x: Any, slope: float, xp: ModuleType) -> Any:
    """snnTorch's ``surrogate.sigmoid``: d/dx sigmoid(slope x) = slope e / (e + 1)^2 with
    e = exp(-slope |x|).  snnTorch writes e = exp(-slope x), which overflows to inf/inf = nan
    for slope x below about -88 (float32) or -709 (float64); the derivative is even in x, so
    |x| gives the same value without the overflow."""
    e = xp.exp(-slope * xp.abs(x))
    return slope * e / (e + 1) ** 2


_DERIVATIVES = {"atan": atan_derivative, "fast_sigmoid": fast_sigmoid_derivative, "sigmoid": sigmoid_derivative}


def spike_derivative(x: Any, surrogate: Surrogate, xp: ModuleType) -> Any:
    """The surrogate derivative dS/dx at x, for a backward pass computed by hand (the reference
    executor); the torch Functions' backward calls this same formula."""
    return _DERIVATIVES[surrogate.kind](x, surrogate.parameter, xp)


class _SurrogateSpike(torch.autograd.Function):
    """Forward Theta(x), backward ``grad * derivative(x)``; one subclass per surrogate."""

    @staticmethod
    def _forward(ctx: Any, x: torch.Tensor, parameter: float, strict: bool) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.parameter = parameter
        return heaviside(x, strict, torch)

    @staticmethod
    def _backward(ctx: Any, grad: torch.Tensor, kind: str) -> tuple[torch.Tensor, None, None]:
        (x,) = ctx.saved_tensors
        return grad * _DERIVATIVES[kind](x, ctx.parameter, torch), None, None


class ATanSpike(_SurrogateSpike):
    """Theta(x) with the atan surrogate: ``ATanSpike.apply(x, alpha, strict)``."""

    @staticmethod
    def forward(ctx, x, alpha, strict):  # noqa: D102 (torch's signature)
        return _SurrogateSpike._forward(ctx, x, alpha, strict)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        return _SurrogateSpike._backward(ctx, grad, "atan")


class FastSigmoidSpike(_SurrogateSpike):
    """Theta(x) with the fast-sigmoid surrogate: ``FastSigmoidSpike.apply(x, slope, strict)``."""

    @staticmethod
    def forward(ctx, x, slope, strict):  # noqa: D102
        return _SurrogateSpike._forward(ctx, x, slope, strict)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        return _SurrogateSpike._backward(ctx, grad, "fast_sigmoid")


class SigmoidSpike(_SurrogateSpike):
    """Theta(x) with the sigmoid surrogate: ``SigmoidSpike.apply(x, slope, strict)``."""

    @staticmethod
    def forward(ctx, x, slope, strict):  # noqa: D102
        return _SurrogateSpike._forward(ctx, x, slope, strict)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        return _SurrogateSpike._backward(ctx, grad, "sigmoid")


_FUNCTIONS: dict[str, type[torch.autograd.Function]] = {"atan": ATanSpike, "fast_sigmoid": FastSigmoidSpike,
                                                       "sigmoid": SigmoidSpike}


def spike(x: Any, surrogate: Surrogate, strict: bool, xp: ModuleType) -> Any:
    """Theta(x) in x's dtype; on torch through the surrogate's autograd Function, so gradients
    flow with the surrogate derivative."""
    if xp is np:
        return heaviside(x, strict, np)
    return _FUNCTIONS[surrogate.kind].apply(x, surrogate.parameter, strict)


# ---------------------------------------------------------------------- the policies


def threshold_spike(u: Any, threshold: float, surrogate: Surrogate, strict: bool, xp: ModuleType) -> Any:
    """``threshold``: S = Theta(u - theta)."""
    return spike(u - threshold, surrogate, strict, xp)


def lif_step(membrane: Any, current: Any, beta: Any, threshold: float, reset: str, reset_delay: bool,
             surrogate: Surrogate, strict: bool, xp: ModuleType) -> tuple[Any, Any]:
    """``lif``, one step of snnTorch's ``Leaky.forward`` (snntorch 1.0.0,
    snntorch/_neurons/leaky.py): returns (S[t+1], U[t+1]) from U[t] and I[t+1].

    R = Theta(U[t] - theta), from the previous membrane and without gradient (``mem_reset``);
    subtract: U[t+1] = beta U[t] + I[t+1] - R theta; zero: U[t+1] = beta (1 - R) U[t] + I[t+1];
    none: U[t+1] = beta U[t] + I[t+1]; S[t+1] = Theta(U[t+1] - theta) with the surrogate.  Without
    ``reset_delay`` the new spike's reset is applied at once, as snnTorch does it:
    U[t+1] -= (S[t+1] - R) theta (subtract) or (S[t+1] - R) U[t+1] (zero).  The operations are
    snnTorch's, in its order, so the results agree bit for bit."""
    pending = heaviside(membrane - threshold, strict, xp)  # a comparison: no gradient flows through it
    if reset == "zero":
        membrane = (1 - pending) * membrane
    new = beta * membrane + current
    if reset == "subtract":
        new = new - pending * threshold
    emitted = spike(new - threshold, surrogate, strict, xp)
    if not reset_delay:
        do_reset = emitted - pending
        if reset == "subtract":
            new = new - do_reset * threshold
        elif reset == "zero":
            new = new - do_reset * new
    return emitted, new


def spike_probability(u: Any, temperature: float, xp: ModuleType) -> Any:
    """The random policy's p = sigmoid(u / temperature), with ribbed's sigmoid
    (0.5 (1 + tanh(x / 2)), :mod:`ribbed.agents.activations`).  Written out of place, the same
    operations in the same order (so the same values): the activation's in-place form would break
    autograd through the random policy."""
    return (xp.tanh(0.5 * (u / temperature)) + 1.0) * 0.5


def random_spike(u: Any, uniforms: Any, temperature: float, surrogate: Surrogate, strict: bool,
                 xp: ModuleType) -> Any:
    """``random``: S = Theta(p - v), p = sigmoid(u / temperature), v the caller's uniform draw on
    [0, 1) (one per batch row and neuron), so P(S = 1) = p; the surrogate acts on p - v."""
    if tuple(uniforms.shape) != tuple(u.shape):
        raise _refuse("uniforms", f"the random policy got uniforms of shape {tuple(uniforms.shape)} for "
                      f"pre-activations of shape {tuple(u.shape)}", "draw one uniform per batch row and neuron")
    return spike(spike_probability(u, temperature, xp) - uniforms, surrogate, strict, xp)


def refractory_step(raw: Any, counter: Any, period: int, xp: ModuleType) -> tuple[Any, Any]:
    """Silences a neuron for ``period`` steps after each spike it emits: returns (emitted spike,
    new counter).  Emitted = raw where the counter is 0, else 0; the counter becomes ``period``
    where a spike was emitted and counts down by one elsewhere (never below 0).  So after a spike
    at step t the neuron emits nothing at steps t+1 .. t+period.  The mask is a constant for
    autograd: no gradient reaches a silenced spike."""
    if period == 0:
        return raw, counter
    emitted = raw * astype(counter == 0, raw.dtype, xp)
    counter = xp.where(emitted > 0, period, xp.where(counter > 0, counter - 1, counter))
    return emitted, counter


def conductance_step(membrane: Any, conductance: Any, current: Any, params: Conductance, strict: bool,
                     xp: ModuleType) -> tuple[Any, Any, Any]:
    """One step of the conductance neuron in Brian2's order: the state advances by ``dt`` from the
    previous step's conductance, the threshold (v > v_t), this step's input ``current`` joins the
    conductance, and a neuron that spiked is reset to v_r.  Returns (spike, membrane, conductance).

    The integration is exact for g (it decays by exp(-dt/tau_e)) and, given g's exact mean
    g_bar = g tau_e/dt (1 - exp(-dt/tau_e)) over the step, for v: it relaxes towards
    (g_bar E_e + E_l)/(1 + g_bar) at the rate (1 + g_bar)/tau_m.  At dt = 1 ms this fires as
    Brian2's Euler neuron at 0.1 ms does (tests/song_abbott.py, whose arithmetic this is, operation
    for operation)."""
    if xp is torch and current.device.type == "cpu" and not (current.requires_grad or membrane.requires_grad):
        # The same arithmetic on numpy views: torch's per-call overhead dominates a step of a small
        # population, and the policy has no gradient to keep.
        spiked, membrane, conductance = conductance_step(membrane.numpy(), conductance.numpy(), current.numpy(),
                                                         params, strict, np)
        return torch.from_numpy(spiked), torch.from_numpy(membrane), torch.from_numpy(conductance)
    c = params
    decay = math.exp(-c.dt / c.tau_e)
    mean_g = conductance * c.tau_e / c.dt * (1.0 - decay)
    total = 1.0 + mean_g
    v_inf = (mean_g * c.e_e + c.e_l) / total
    membrane = v_inf + (membrane - v_inf) * xp.exp(-c.dt * total / c.tau_m)
    conductance = conductance * decay
    spiked = heaviside(membrane - c.v_t, strict, xp)
    conductance = conductance + current
    membrane = xp.where(spiked > 0, c.v_r, membrane) if xp is np else torch.where(spiked > 0, c.v_r, membrane)
    return spiked, membrane, conductance


def fire(policy: FiringPolicy, state: FiringState, u: Any, xp: ModuleType, uniforms: Any = None,
         activation: str = "identity") -> tuple[Any, FiringState]:
    """One step of ``policy`` for pre-activations ``u`` (the input current I of lif): returns
    (output, new state).  The output is y = f(u) for ``rate`` (``activation`` names f; the state
    is passed through) and the emitted spike for the spiking policies.  ``uniforms``: the random
    policy's draws (same shape, namespace and dtype as u), which the caller derives from the
    scenario seed."""
    if policy.policy == "rate":
        return activation_table(xp)[activation].f(u), state
    membrane, conductance = state.membrane, state.conductance
    if policy.policy == "threshold":
        raw = threshold_spike(u, policy.threshold, policy.surrogate, policy.strict, xp)
    elif policy.policy == "conductance":
        raw, membrane, conductance = conductance_step(state.membrane, state.conductance, u, policy.conductance,
                                                      policy.strict, xp)
    elif policy.policy == "lif":
        raw, membrane = lif_step(state.membrane, u, policy.beta, policy.threshold, policy.reset,
                                 policy.reset_delay, policy.surrogate, policy.strict, xp)
    else:
        if uniforms is None:
            raise _refuse("uniforms", "the random policy needs its uniform draws",
                          "pass uniforms drawn from the scenario seed by shared code (never by an executor)")
        raw = random_spike(u, uniforms, policy.temperature, policy.surrogate, policy.strict, xp)
    emitted, counter = refractory_step(raw, state.refractory, policy.refractory, xp)
    return emitted, FiringState(membrane, emitted, counter, conductance)


def policy_of(spec: Any) -> FiringPolicy:
    """The :class:`FiringPolicy` of a scenario's ``firing`` section (a
    :class:`ribbed.scenarios.timing.FiringSpec`, or None for rate), taken field by field so that
    the scenario layer, which sits below this one, need not be imported."""
    if spec is None:
        return FiringPolicy()
    surrogate = Surrogate(spec.surrogate.kind, spec.surrogate.parameter)
    section = getattr(spec, "conductance", None)
    conductance = Conductance() if section is None else Conductance(
        tau_m=section.tau_m, tau_e=section.tau_e, e_e=section.e_e, e_l=section.e_l, v_t=section.v_t, v_r=section.v_r,
        dt=section.dt)
    return FiringPolicy(policy=spec.policy, threshold=spec.threshold, beta=spec.beta, reset=spec.reset,
                        reset_delay=spec.reset_delay, strict=spec.strict, temperature=spec.temperature,
                        refractory=spec.refractory, surrogate=surrogate, conductance=conductance)


# ---------------------------------------------------------------------- backprop through lif, by hand


def lif_membrane_carry(policy: FiringPolicy, membrane: Any, xp: ModuleType) -> Any:
    """dU[t+1]/dU[t] through the update of step t+1 (the reset R carries no gradient): beta, or
    beta (1 - R) for ``reset: zero``, with R = Theta(U[t] - theta) from the membrane ``membrane``
    = U[t] that step t left (docs/semantics.md, "Time within a tick", "Learning over the steps")."""
    if policy.reset == "zero":
        return policy.beta * (1 - heaviside(membrane - policy.threshold, policy.strict, xp))
    return policy.beta + xp.zeros_like(membrane)


def lif_current_gradient(policy: FiringPolicy, grad_spike: Any, grad_membrane: Any, before_reset: Any,
                         previous: Any, open_mask: Any, xp: ModuleType) -> Any:
    """dL/dI[t+1] (= dL/dU before any immediate reset: the current enters with coefficient 1) for
    the executors' hand-written backprop, from ``grad_spike`` dL/dE (E the emitted spike, S masked
    by the refractory ``open_mask``, None without one) and ``grad_membrane`` dL/dU[t+1] (the
    membrane the step leaves: readout and later steps).  ``before_reset`` is U[t+1] before the
    immediate reset of ``reset_delay: false`` (the membrane itself otherwise), ``previous`` U[t].

    With ``reset_delay: false`` the spike also resets at once, D = S - R: subtract U - D theta
    (dU/dU' = 1 - theta dS/dU'), zero U' (1 - D) (dU/dU' = 1 - D - U' dS/dU'), as autograd
    through :func:`lif_step` computes it."""
    d = spike_derivative(before_reset - policy.threshold, policy.surrogate, xp)
    from_spike = grad_spike * d if open_mask is None else grad_spike * (d * open_mask)
    if policy.reset_delay or policy.reset == "none":
        return from_spike + grad_membrane
    if policy.reset == "subtract":
        return from_spike + grad_membrane * (1 - policy.threshold * d)
    spiked = heaviside(before_reset - policy.threshold, policy.strict, xp)
    pending = heaviside(previous - policy.threshold, policy.strict, xp)
    return from_spike + grad_membrane * ((1 - (spiked - pending)) - before_reset * d)
