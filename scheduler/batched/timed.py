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
``latency``; readouts ``mean``, ``count``, ``membrane``; rules ``backprop``,
``feedback_alignment`` and ``direct_feedback_alignment`` (the output's delta of each step,
broadcast); message counts, spikes included; STDP and R-STDP projections learn step by
step during forward (:mod:`ribbed.scheduler.plasticity`), and ``run.carry_state`` carries the
neurons' state and the traces from one training tick to the next; the per-step outputs and deltas
the log records (kept by the executor after the tick, docs/semantics.md, "The state logged").

The step-level pieces (:func:`fire_step`, :func:`step_delta`, :func:`learn_over_steps`,
:func:`message_counts`) work on a whole population or on a block of one: a Ray shard runs them on
its blocks (:mod:`ribbed.scheduler.ray.timed`), so the arithmetic is written once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ribbed.agents.activations import TORCH_ACTIVATIONS
from ribbed.agents.firing import (FiringPolicy, fire, initial_state, lif_current_gradient, lif_membrane_carry,
                                  lif_step, policy_of, spike_derivative)
from ribbed.scenarios.timing import SPIKING_ENCODINGS
from ribbed.scheduler.message_counts import carries_over_steps, dfa_targets
from ribbed.scheduler.messages import Kind
from ribbed.seeding import component_uniforms as step_uniforms

if TYPE_CHECKING:
    from ribbed.scenarios.schema import Scenario

__all__ = ["SPIKING_ENCODINGS", "StepRecord", "TimedPlan", "backward_steps", "carriers", "dfa_gradient",
           "encode_inputs",
           "encoded_inputs", "fire_step", "keep_final_state", "learn_over_steps", "message_counts", "output_gradients",
           "population_draws", "readout", "run_steps", "spike_counts", "stacked", "step_delta"]

_SIGMOID = TORCH_ACTIVATIONS["sigmoid"]


def encode_inputs(encoding: Any, x: torch.Tensor, steps: int, uniforms: torch.Tensor | None) -> torch.Tensor:
    """The input neurons' output at every step, (steps, batch, n_inputs), from the standardized
    inputs ``x`` (batch, n_features): direct, rate or latency (n_features = n_inputs), or sequence
    (n_features = steps x n_inputs) (docs/semantics.md)."""
    if encoding.kind == "direct":
        return x.unsqueeze(0).expand(steps, -1, -1)
    if encoding.kind == "sequence":  # chunk s of each sample's features at step s
        return x.reshape(x.shape[0], steps, -1).transpose(0, 1)
    if encoding.kind == "poisson":
        return (uniforms < (encoding.rate_hz * encoding.dt / 1000.0 * x).clamp(0.0, 1.0)).to(x.dtype)
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
    window: int  # bptt_window: credit never crosses from step s to s - 1 where s is a multiple of it
    input: str = ""
    carry: bool = False
    records: dict[str, list[StepRecord]] = field(default_factory=dict)

    @classmethod
    def of(cls, scenario: Scenario) -> "TimedPlan":
        output = next(p for p in scenario.populations if p.role == "output")
        steps = scenario.run.steps_per_sample
        return cls(steps, {p.name: policy_of(p.firing) for p in scenario.populations},
                   scenario.encoding, scenario.population_readout(output), scenario.seed,
                   scenario.run.bptt_window or steps,
                   next(p.name for p in scenario.populations if p.role == "input"), scenario.run.carry_state)

    def carries(self, s: int) -> bool:
        """Whether credit crosses back from step s + 1 to step s (truncated BPTT: not where s + 1
        is a multiple of the window; docs/semantics.md, "Learning over the steps")."""
        return (s + 1) % self.window != 0


def _host(values: torch.Tensor, stdp: Any) -> Any:
    """``values`` as the STDP step's arrays: a numpy view on the CPU (shared memory), else as is."""
    return values.numpy() if stdp.xp is np else values


def _apply(synapses: Any, update: Any) -> None:
    """Runs ``update(canonical weights) -> new weights`` on a projection's weights, in place."""
    layout, stdp = synapses.layout, synapses.stdp
    if stdp.pre_index is None:  # a complete dense matrix: its flat view is the canonical order
        flat = synapses.weights.view(-1)
        new = update(_host(flat, stdp))
        flat.copy_(torch.from_numpy(new) if stdp.xp is np else new)
    elif layout.layout == "dense":
        flat = synapses.weights.view(-1)
        new = update(_host(flat[layout.flat], stdp))
        flat[layout.flat] = torch.from_numpy(new) if stdp.xp is np else new
    else:
        new = update(_host(synapses.weights, stdp))
        synapses.weights.copy_(torch.from_numpy(new) if stdp.xp is np else new)


def stdp_step(synapses: Any, pre_spikes: torch.Tensor, post_spikes: torch.Tensor) -> None:
    """One STDP step of a projection (its weights change in place, in its layout)."""
    stdp = synapses.stdp
    pre, post = _host(pre_spikes, stdp), _host(post_spikes, stdp)
    _apply(synapses, lambda weights: stdp.step(weights, pre, post))


def stdp_reward(synapses: Any, reward: torch.Tensor) -> None:
    """R-STDP's weight change for the task's reward at the sample's last step (in place)."""
    stdp = synapses.stdp
    reward = _host(reward, stdp)
    _apply(synapses, lambda weights: stdp.rewarded(weights, reward))


    def carries(self, s: int) -> bool:
        """Whether credit crosses back from step s + 1 to step s (truncated BPTT: not where s + 1
        is a multiple of the window; docs/semantics.md, "Learning over the steps")."""
        return (s + 1) % self.window != 0


def encoded_inputs(plan: "TimedPlan", x: torch.Tensor, key: tuple) -> torch.Tensor:
    """The input neurons' output at every step, (steps, batch, n_inputs), with the rate encoding's
    uniforms from the shared keyed function (``key`` as in :func:`run_steps`)."""
    suffix, tick = key
    uniforms = None
    if plan.encoding.kind in ("rate", "poisson"):
        uniforms = torch.as_tensor(step_uniforms(plan.seed, ("encoding" + suffix, tick),
                                                 (plan.steps, x.shape[0], x.shape[1])), dtype=x.dtype, device=x.device)
    return encode_inputs(plan.encoding, x, plan.steps, uniforms)


def population_draws(plan: "TimedPlan", name: str, size: int, batch: int, key: tuple, dtype: torch.dtype,
                     device: torch.device) -> torch.Tensor | None:
    """A random-policy population's uniforms for the tick, (steps, batch, size), from the shared
    keyed function (None for the other policies): a shard that holds some of its neurons takes
    their columns of the same array."""
    if plan.policies[name].policy != "random":
        return None
    suffix, tick = key
    return torch.as_tensor(step_uniforms(plan.seed, ("firing" + suffix, name, tick), (plan.steps, batch, size)),
                           dtype=dtype, device=device)


def fire_step(population: Any, policy: FiringPolicy, state: Any, u: torch.Tensor,
              uniforms: torch.Tensor | None) -> tuple[StepRecord, Any]:
    """One population's (or block's) firing at one step from its current ``u``: what it emits, with
    what the backward pass needs, and its new firing state."""
    out, new = fire(policy, state, u, torch, uniforms=uniforms, activation=population.info.activation)
    entry = StepRecord(u, out, uniforms=uniforms)
    if policy.policy == "lif":
        entry.membrane_before, entry.membrane = state.membrane, new.membrane
        entry.before_reset = new.membrane if policy.reset_delay else lif_step(
            state.membrane, u, policy.beta, policy.threshold, policy.reset, True, policy.surrogate,
            policy.strict, torch)[1]
    if policy.spiking and policy.refractory:
        entry.open = (state.refractory == 0).to(u.dtype)
    return entry, new


def keep_final_state(population: Any, policy: FiringPolicy, state: Any) -> None:
    """The firing state the tick's last step left, kept for reads (rows ``membrane``, ``refractory``)."""
    population.membrane = state.membrane if policy.policy == "lif" else None
    population.refractory = state.refractory.to(population.bias.dtype) if policy.spiking else None


def run_steps(executor: Any, plan: TimedPlan, x: torch.Tensor, key: tuple, record: bool) -> dict[str, list]:
    """Forward over the T steps for the batch ``x`` (every state reset first); returns, per
    population, its per-step records (``record``) or outputs.  ``key`` = (namespace suffix, tick)
    picks the draws: ("", tick) for a training tick, ("-eval", ticks run) for evaluation."""
    steps, batch = plan.steps, x.shape[0]
    dtype, device = x.dtype, x.device
    inputs = encoded_inputs(plan, x, key)
    records: dict[str, list] = {executor._input.info.name: [StepRecord(inputs[s], inputs[s]) for s in range(steps)]}
    states, draws = {}, {}
    carried = getattr(executor, "carried", None) if record and plan.carry else None
    learning = [s for s in executor.projections if s.stdp is not None] if record else []
    for synapses in learning:  # traces start at 0, or continue (carry_state)
        if not (plan.carry and synapses.stdp.ready(batch)):
            synapses.stdp.reset(_host(synapses.weights, synapses.stdp), batch)
    for level in executor._levels:
        for population in level:
            name = population.info.name
            previous = None if carried is None else carried.get(name)
            states[name] = (previous if previous is not None and previous.spike.shape[0] == batch
                            else initial_state((batch, population.info.size), torch, dtype, device,
                                               plan.policies[name]))
            records[name] = []
            draws[name] = population_draws(plan, name, population.info.size, batch, key, dtype, device)
    for s in range(steps):
        for level in executor._levels:
            for population in level:
                name = population.info.name
                u = population.bias.expand(batch, -1).clone()
                arrived = []
                for synapses in population.incoming:
                    pre = records[synapses.info.pre.name]
                    if synapses.info.delayed:
                        if s == 0:
                            arrived.append(None)
                            continue
                        source = pre[s - 1].out
                    else:
                        source = pre[s].out
                    arrived.append(source)
                    synapses.layout.forward(source, u, synapses.weights)
                v = draws[name][s] if draws[name] is not None else None
                entry, states[name] = fire_step(population, plan.policies[name], states[name], u, v)
                records[name].append(entry)
                if learning:  # STDP: this step's arriving spikes and this step's own, after forward used w
                    for synapses, source in zip(population.incoming, arrived):
                        if synapses.stdp is not None:
                            if source is None:  # a delayed projection at step 0: nothing arrived
                                source = torch.zeros(batch, synapses.info.pre.size, dtype=dtype, device=device)
                            stdp_step(synapses, source, entry.out)
    if record and plan.carry:
        executor.carried = states
    if record:  # the state the tick leaves, for reads
        for level in executor._levels:
            for population in level:
                keep_final_state(population, plan.policies[population.info.name], states[population.info.name])
    return records


def readout(plan: TimedPlan, records: list[StepRecord]) -> torch.Tensor:
    """The output population's readout over the steps (docs/semantics.md, "Readout")."""
    if plan.readout == "count":
        return torch.stack([r.out for r in records]).sum(0)
    if plan.readout == "membrane":
        return torch.stack([r.membrane for r in records]).sum(0).div_(plan.steps)
    if plan.readout == "last":
        return records[-1].out.clone()
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


def output_gradients(plan: TimedPlan, answer: torch.Tensor,
                     s: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """What the readout sends back to the output population at step ``s`` from the task's answer
    e = B dL/d(readout): to what it emitted, and (``membrane`` readout) to its membrane."""
    if plan.readout == "membrane":
        return None, answer / plan.steps
    if plan.readout == "last":
        return (answer if s == plan.steps - 1 else None), None
    return (answer if plan.readout == "count" else answer / plan.steps), None


def dfa_gradient(dfa: torch.Tensor, output_delta: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """What a DFA population (or block) receives on what it emitted at one step: the output's δ[s]
    through its fixed matrix D, Σ_o D_jo δ_o[s] (zero where the output's delta does not reach it:
    the output acts at or below its level; docs/semantics.md, "Learning over the steps")."""
    if output_delta is None:
        return torch.zeros_like(like)
    return torch.mm(output_delta, dfa.T)


def step_delta(policy: FiringPolicy, activation: Any, entry: StepRecord, grad_out: torch.Tensor,
               membrane_answer: torch.Tensor | None, later: torch.Tensor | None) -> torch.Tensor:
    """δ[s] = dL/du[s] of one population (or block) at one step, from ``grad_out`` = dL/d(out[s])
    (written into); for ``lif`` also from the readout's gradient on the membrane and ``later``, the
    δ of the step after (the membrane carries over), through :mod:`ribbed.agents.firing`."""
    if policy.policy != "lif":
        return grad_out.mul_(_local_derivative(policy, activation, entry))
    grad_membrane = torch.zeros_like(grad_out)
    if membrane_answer is not None:
        grad_membrane.add_(membrane_answer)
    if later is not None:
        grad_membrane.add_(later * lif_membrane_carry(policy, entry.membrane, torch))
    return lif_current_gradient(policy, grad_out, grad_membrane, entry.before_reset, entry.membrane_before,
                                entry.open, torch)


def backward_steps(executor: Any, plan: TimedPlan, records: dict[str, list[StepRecord]],
                   answer: torch.Tensor) -> dict[str, list[torch.Tensor]]:
    """Backprop through the T steps, by hand: per population that needs credit, its
    δ[s] = dL/du[s] for every step, from the task's ``answer`` e = B dL/d(readout)."""
    steps = plan.steps
    output = executor._output
    deltas: dict[str, list] = {}
    for level in executor._levels:
        for population in level:
            if population.info.needs_credit:
                deltas[population.info.name] = [None] * steps
    for s in reversed(range(steps)):
        for level in reversed(executor._levels):
            for population in level:
                name = population.info.name
                if name not in deltas:
                    continue
                entry = records[name][s]
                if population.dfa is not None:  # DFA through time: the output's delta of this step (no carriers)
                    grad_out = dfa_gradient(population.dfa, deltas.get(output.info.name, [None] * steps)[s]
                                            if output.info.level > population.info.level else None, entry.u)
                else:
                    grad_out = torch.zeros_like(entry.u)
                to_out, to_membrane = output_gradients(plan, answer, s) if population is output else (None, None)
                if to_out is not None:
                    grad_out.add_(to_out)
                for synapses in executor._carriers.get(name, ()):
                    post = synapses.info.post.name
                    t = s + 1 if synapses.info.delayed else s
                    if t >= steps or deltas[post][t] is None or (synapses.info.delayed and not plan.carries(s)):
                        continue
                    matrix = synapses.weights if synapses.feedback is None else synapses.feedback
                    synapses.layout.backward(deltas[post][t], matrix, grad_out)
                later = deltas[name][s + 1] if s + 1 < steps and plan.carries(s) else None
                deltas[name][s] = step_delta(plan.policies[name], population.activation, entry, grad_out,
                                             to_membrane, later)
    return deltas


def learn_over_steps(population: Any, per_step: list[torch.Tensor] | None, outputs: dict[str, list[torch.Tensor]],
                     batch: int, steps: int, learn: Any) -> None:
    """The learn stage of a timed tick for one population (or block): its gradients are sums over
    the steps of batch means, so the steps are stacked as rows of one batch of T * B (whose mean,
    times T, is that sum) and ``learn`` runs once.  ``outputs``: what each presynaptic population
    emitted at every step.  Leaves u, y as the last step's, delta as the sum over the steps."""
    population.delta = None if per_step is None else torch.stack(per_step).sum(0)
    population.credit = None if per_step is None else stacked(per_step).mul_(steps)
    for synapses in population.incoming:
        pre = outputs[synapses.info.pre.name]
        sources = [torch.zeros_like(pre[0])] + pre[:-1] if synapses.info.delayed else pre
        synapses.x = stacked(sources)
    learn(population, batch * steps)
    for synapses in population.incoming:  # x as the log and reads know it: the last step's
        synapses.x = synapses.x[-batch:]
    if population.credit is not None:
        population.credit = population.delta


def carriers(executor: Any) -> dict[str, list]:
    """Per presynaptic population, the projections that carry credit back to it over the steps
    (:func:`~ribbed.scheduler.message_counts.carries_over_steps`)."""
    result: dict[str, list] = {}
    for synapses in executor.projections:
        if carries_over_steps(synapses.info):
            result.setdefault(synapses.info.pre.name, []).append(synapses)
    return result


def spike_counts(plan: TimedPlan, records: dict[str, list[StepRecord]]) -> dict[str, np.ndarray]:
    """Per population that emits spikes (a spiking policy, or the input under a spiking encoding),
    its spikes of the tick per neuron (over batch rows and steps), as float64, to count ``spike``
    messages with each neuron's out-degree."""
    spiking_input = plan.encoding.kind in SPIKING_ENCODINGS
    return {name: torch.stack([r.out for r in steps]).sum(dim=(0, 1)).double().cpu().numpy()
            for name, steps in records.items()
            if (name in plan.policies and plan.policies[name].spiking) or (name == plan.input and spiking_input)}


def message_counts(plan: TimedPlan, network: Any, spikes: dict[str, np.ndarray]) -> np.ndarray:
    """The messages of a timed tick, by kind, from each spiking population's spikes per neuron
    (:func:`spike_counts`): activations per synapse and step from rate neurons, a spike message
    per outgoing synapse and actual spike, errors per carrying synapse and step at which credit
    reaches it, a reward per neuron with an R-STDP projection into it (docs/semantics.md, "Time
    within a tick", "STDP in a tick")."""
    counts = np.zeros(len(Kind), dtype=np.int64)
    counts[Kind.ACTIVATION] = network.input.size + network.output.size
    counts[Kind.ERROR] = network.output.size
    for info in network.projections:
        per_neuron = spikes.get(info.pre.name)
        if per_neuron is not None:
            degrees = np.zeros(info.pre.size)
            np.add.at(degrees, info.pre_idx, 1.0)
            counts[Kind.SPIKE] += int(round(float(np.dot(per_neuron, degrees))))
        else:
            counts[Kind.ACTIVATION] += info.n_synapses * plan.steps
        if carries_over_steps(info):  # a delayed projection: at the steps s + 1 whose credit crosses to s
            crossings = sum(map(plan.carries, range(plan.steps - 1))) if info.delayed else plan.steps
            counts[Kind.ERROR] += info.n_synapses * crossings
    if network.output.needs_credit:  # DFA through time: the output's delta of every step, to each DFA neuron
        counts[Kind.ERROR] += network.output.size * len(dfa_targets(network)) * plan.steps
    rewarded = {info.post.name: info.post.size for info in network.projections
                if info.stdp and info.learning.rule == "r_stdp"}
    counts[Kind.REWARD] += sum(rewarded.values())  # R-STDP: one reward message per neuron it rewards
    return counts


def stacked(values: list[torch.Tensor]) -> torch.Tensor:
    """Steps stacked along the batch dimension: (steps * batch, n)."""
    return torch.cat(values, dim=0)
