"""The batched executor's tick with time in it: T steps per sample, firing policies, readouts, and
backprop through the T steps written by hand (docs/semantics.md, "Time within a tick").

Why a module of its own: a scenario without time in its tick (one step, every population ``rate``,
the direct encoding) runs the executor's own tick, untouched, so that no existing result changes;
this module is only reached by a *timed* scenario.  The arithmetic of a step is
:mod:`ribbed.agents.firing`'s (the same the reference executor will call), and the backward pass
follows the executor's: hand-written, level by level in reverse, here also step by step in reverse,
with the firing module's surrogate derivatives (:func:`~ribbed.agents.firing.spike_derivative`).

Wired so far: policies ``rate``, ``threshold``, ``random`` and ``lif`` (any reset and reset
delay, strictness, refractory period, surrogate); encodings ``direct``, ``rate``,
``latency``; readouts ``mean``, ``count``, ``membrane``; rules ``backprop`` and
``feedback_alignment``; message counts of spikes; the per-step outputs and deltas the log
records (kept by the executor after the tick, docs/semantics.md, "The state logged").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ribbed.agents.activations import TORCH_ACTIVATIONS
from ribbed.agents.firing import (FiringPolicy, fire, initial_state, lif_current_gradient, lif_membrane_carry,
                                  lif_step, policy_of, spike_derivative)
from ribbed.scheduler.message_counts import carries_over_steps
from ribbed.seeding import component_uniforms as step_uniforms

if TYPE_CHECKING:
    from ribbed.scenarios.schema import Scenario

__all__ = ["StepRecord", "TimedPlan", "backward_steps", "carriers", "encode_inputs", "readout", "run_steps",
           "spike_counts", "stacked"]

_SIGMOID = TORCH_ACTIVATIONS["sigmoid"]


def encode_inputs(encoding: Any, x: torch.Tensor, steps: int, uniforms: torch.Tensor | None) -> torch.Tensor:
    """The input neurons' output at every step, (steps, batch, n_inputs), from the standardized
    inputs ``x`` (batch, n_inputs): direct, rate or latency (docs/semantics.md)."""
    if encoding.kind == "direct":
        return x.unsqueeze(0).expand(steps, -1, -1)
    p = _SIGMOID.f(encoding.gain * x)
    if encoding.kind == "rate":
        return (uniforms < p).to(x.dtype)
    at = torch.round((1 - p) * (steps - 1))  # torch.round rounds half to even, as numpy's rint
    step = torch.arange(steps, dtype=x.dtype, device=x.device).view(steps, 1, 1)
    return (step == at.unsqueeze(0)).to(x.dtype)


@dataclass
class StepRecord:
    """What one population did at one step, kept for the backward pass."""

    u: torch.Tensor  # the current (pre-activation)
    out: torch.Tensor  # what it emitted: y, or spikes
    membrane_before: torch.Tensor | None = None  # lif: U[s - 1]
    membrane: torch.Tensor | None = None  # lif: U[s]
    before_reset: torch.Tensor | None = None  # lif: U[s] before an immediate reset (reset_delay: false)
    open: torch.Tensor | None = None  # refractory: 1 where the neuron could emit (counter 0)
    uniforms: torch.Tensor | None = None  # random


@dataclass
class TimedPlan:
    """The timed settings of a scenario, resolved once: steps, each population's policy, the
    encoding and the output's readout."""

    steps: int
    policies: dict[str, FiringPolicy]
    encoding: Any
    readout: str
    seed: int
    records: dict[str, list[StepRecord]] = field(default_factory=dict)

    @classmethod
    def of(cls, scenario: Scenario) -> "TimedPlan":
        output = next(p for p in scenario.populations if p.role == "output")
        return cls(scenario.run.steps_per_sample,
                   {p.name: policy_of(p.firing) for p in scenario.populations},
                   scenario.encoding, scenario.population_readout(output), scenario.seed)


def run_steps(executor: Any, plan: TimedPlan, x: torch.Tensor, key: tuple, record: bool) -> dict[str, list]:
    """Forward over the T steps for the batch ``x`` (every state reset first); returns, per
    population, its per-step records (``record``) or outputs.  ``key`` = (namespace suffix, tick)
    picks the draws: ("", tick) for a training tick, ("-eval", ticks run) for evaluation."""
    suffix, tick = key
    steps, batch = plan.steps, x.shape[0]
    dtype, device = x.dtype, x.device
    uniforms = None
    if plan.encoding.kind == "rate":
        uniforms = torch.as_tensor(step_uniforms(plan.seed, ("encoding" + suffix, tick),
                                                 (steps, batch, x.shape[1])), dtype=dtype, device=device)
    inputs = encode_inputs(plan.encoding, x, steps, uniforms)
    records: dict[str, list] = {executor._input.info.name: [StepRecord(inputs[s], inputs[s]) for s in range(steps)]}
    states, draws = {}, {}
    for level in executor._levels:
        for population in level:
            name = population.info.name
            states[name] = initial_state((batch, population.info.size), torch, dtype, device)
            records[name] = []
            if plan.policies[name].policy == "random":
                draws[name] = torch.as_tensor(step_uniforms(plan.seed, ("firing" + suffix, name, tick),
                                                            (steps, batch, population.info.size)),
                                              dtype=dtype, device=device)
    for s in range(steps):
        for level in executor._levels:
            for population in level:
                name = population.info.name
                policy = plan.policies[name]
                u = population.bias.expand(batch, -1).clone()
                for synapses in population.incoming:
                    pre = records[synapses.info.pre.name]
                    if synapses.info.delayed:
                        if s == 0:
                            continue
                        source = pre[s - 1].out
                    else:
                        source = pre[s].out
                    synapses.layout.forward(source, u, synapses.weights)
                state = states[name]
                v = draws[name][s] if name in draws else None
                out, new = fire(policy, state, u, torch, uniforms=v, activation=population.info.activation)
                entry = StepRecord(u, out, uniforms=v)
                if policy.policy == "lif":
                    entry.membrane_before, entry.membrane = state.membrane, new.membrane
                    entry.before_reset = new.membrane if policy.reset_delay else lif_step(
                        state.membrane, u, policy.beta, policy.threshold, policy.reset, True, policy.surrogate,
                        policy.strict, torch)[1]
                if policy.spiking and policy.refractory:
                    entry.open = (state.refractory == 0).to(dtype)
                states[name] = new
                records[name].append(entry)
    if record:  # the state the tick leaves, for reads
        for level in executor._levels:
            for population in level:
                policy, state = plan.policies[population.info.name], states[population.info.name]
                population.membrane = state.membrane if policy.policy == "lif" else None
                population.refractory = state.refractory.to(dtype) if policy.spiking else None
    return records


def readout(plan: TimedPlan, records: list[StepRecord]) -> torch.Tensor:
    """The output population's readout over the steps (docs/semantics.md, "Readout")."""
    if plan.readout == "count":
        return torch.stack([r.out for r in records]).sum(0)
    if plan.readout == "membrane":
        return torch.stack([r.membrane for r in records]).sum(0).div_(plan.steps)
    return torch.stack([r.out for r in records]).sum(0).div_(plan.steps)


def _local_derivative(policy: FiringPolicy, activation: Any, entry: StepRecord) -> torch.Tensor:
    """d(out)/d(u) at one step for the memoryless policies (rate, threshold, random)."""
    if policy.policy == "rate":
        return activation.df(entry.u, entry.out)
    if policy.policy == "threshold":
        d = spike_derivative(entry.u - policy.threshold, policy.surrogate, torch)
    else:  # random: dS/dx at x = p - v, times dp/du
        p = _SIGMOID.f(entry.u / policy.temperature)
        d = spike_derivative(p - entry.uniforms, policy.surrogate, torch) * (p * (1 - p) / policy.temperature)
    return d if entry.open is None else d * entry.open


def backward_steps(executor: Any, plan: TimedPlan, records: dict[str, list[StepRecord]],
                   answer: torch.Tensor) -> dict[str, list[torch.Tensor]]:
    """Backprop through the T steps, by hand: per population that needs credit, its
    δ[s] = dL/du[s] for every step, from the task's ``answer`` e = B dL/d(readout)."""
    steps = plan.steps
    output = executor._output
    deltas: dict[str, list] = {}
    membrane_grad: dict[str, torch.Tensor | None] = {}
    for level in executor._levels:
        for population in level:
            if population.info.needs_credit:
                deltas[population.info.name] = [None] * steps
                membrane_grad[population.info.name] = None
    for s in reversed(range(steps)):
        for level in reversed(executor._levels):
            for population in level:
                name = population.info.name
                if name not in deltas:
                    continue
                policy = plan.policies[name]
                entry = records[name][s]
                grad_out = torch.zeros_like(entry.u)
                if population is output and plan.readout != "membrane":
                    grad_out.add_(answer if plan.readout == "count" else answer / steps)
                for synapses in executor._carriers.get(name, ()):
                    post = synapses.info.post.name
                    t = s + 1 if synapses.info.delayed else s
                    if t >= steps or deltas[post][t] is None:
                        continue
                    matrix = synapses.weights if synapses.feedback is None else synapses.feedback
                    synapses.layout.backward(deltas[post][t], matrix, grad_out)
                if policy.policy != "lif":
                    deltas[name][s] = grad_out.mul_(_local_derivative(policy, population.activation, entry))
                    continue
                # lif: dL/dU[s] (the membrane the step leaves) from the readout and the next step;
                # then dL/dI[s] through the spike and any immediate reset (agents/firing.py).
                grad_membrane = torch.zeros_like(grad_out)
                if population is output and plan.readout == "membrane":
                    grad_membrane.add_(answer / steps)
                later = membrane_grad[name]
                if later is not None:
                    grad_membrane.add_(later * lif_membrane_carry(policy, entry.membrane, torch))
                grad = lif_current_gradient(policy, grad_out, grad_membrane, entry.before_reset,
                                            entry.membrane_before, entry.open, torch)
                membrane_grad[name] = grad
                deltas[name][s] = grad
    return deltas


def carriers(executor: Any) -> dict[str, list]:
    """Per presynaptic population, the projections that carry credit back to it over the steps
    (:func:`~ribbed.scheduler.message_counts.carries_over_steps`)."""
    result: dict[str, list] = {}
    for synapses in executor.projections:
        if carries_over_steps(synapses.info):
            result.setdefault(synapses.info.pre.name, []).append(synapses)
    return result


def spike_counts(plan: TimedPlan, records: dict[str, list[StepRecord]]) -> dict[str, float]:
    """Per spiking population, the spikes of the tick (over batch rows, steps and neurons) per
    neuron, to count ``spike`` messages with each neuron's out-degree."""
    return {name: torch.stack([r.out for r in steps]).sum(dim=(0, 1))
            for name, steps in records.items() if plan.policies.get(name, FiringPolicy()).spiking}


def stacked(values: list[torch.Tensor]) -> torch.Tensor:
    """Steps stacked along the batch dimension: (steps * batch, n)."""
    return torch.cat(values, dim=0)
