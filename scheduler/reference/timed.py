"""The reference executor's tick with time in it: T steps per sample, agent by agent, with explicit
messages (docs/semantics.md, "Time within a tick").

Each neuron agent holds its own firing state (membrane, last spike, refractory counter) and what it
did at every step of the tick; a spiking neuron sends one ``spike`` message per outgoing synapse
and per batch row in which it spiked (the payload is the row), a silent one sends nothing; a rate
neuron (or an input of the direct encoding) sends its ``activation`` every step.  Messages along a
delayed projection wait for the next step.  Credit flows back step by step in reverse, with the
surrogate derivatives of :mod:`ribbed.agents.firing`, the same formulas the batched executor uses.

Why a module of its own: an untimed scenario runs the executor's own tick, untouched.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ribbed.agents.activations import ACTIVATIONS
from ribbed.environment.losses import sample_losses
from ribbed.agents.firing import (fire, initial_state, lif_current_gradient, lif_membrane_carry, lif_step, policy_of,
                                  spike_derivative)
from ribbed.scenarios.timing import SPIKING_ENCODINGS
from ribbed.scheduler.message_counts import carries_over_steps, dfa_targets
from ribbed.scheduler.plasticity import STDPSynapses, stdp_params, task_reward
from ribbed.scheduler.messages import TASK, Kind, Message, Stage
from ribbed.seeding import component_uniforms

__all__ = ["TimedReference", "encode"]

_SIGMOID = ACTIVATIONS["sigmoid"]


def encode(encoding: Any, x: np.ndarray, steps: int, uniforms: np.ndarray | None) -> np.ndarray:
    """The input neurons' output at every step, (steps, batch, n_inputs) (docs/semantics.md)."""
    if encoding.kind == "direct":
        return np.broadcast_to(x, (steps,) + x.shape)
    if encoding.kind == "sequence":  # chunk s of each sample's features at step s
        return x.reshape(x.shape[0], steps, -1).transpose(1, 0, 2)
    if encoding.kind == "poisson":
        return (uniforms < np.clip(encoding.rate_hz * encoding.dt / 1000.0 * x, 0.0, 1.0)).astype(x.dtype)
    p = _SIGMOID.f(encoding.gain * x)
    if encoding.kind == "rate":
        return (uniforms < p).astype(x.dtype)
    at = np.rint((1 - p) * (steps - 1))
    return (np.arange(steps).reshape(steps, 1, 1) == at[None]).astype(x.dtype)


class TimedReference:
    """Runs timed ticks and evaluations on a reference executor's agents and bus."""

    def __init__(self, executor: Any):
        scenario = executor.network.scenario
        self.ex = executor
        self.steps = scenario.run.steps_per_sample
        self.window = scenario.run.bptt_window or self.steps  # truncated BPTT (docs/semantics.md)
        self.encoding = scenario.encoding
        self.seed = scenario.seed
        output = executor.network.output
        self.readout = scenario.population_readout(scenario.population(output.name))
        self.policies = {p.name: policy_of(p.firing) for p in scenario.populations}
        self.carry = scenario.run.carry_state
        # STDP: each neuron holds, per incoming STDP projection, its synapses' traces (its own, and its
        # copy of each presynaptic partner's, kept from the spikes it receives) and eligibility.
        self.rewarded: list[Any] = []  # neurons with an R-STDP projection, which the task rewards
        for neuron in executor.neurons:
            for synapses in neuron.incoming:
                if synapses.projection.stdp:
                    params, reward = stdp_params(synapses.projection.learning)
                    n = len(synapses.pre_ids)
                    synapses.stdp = STDPSynapses(params, reward, np.arange(n), np.zeros(n, dtype=np.int64), n, 1, np)
                    if reward is not None and (not self.rewarded or self.rewarded[-1] is not neuron):
                        self.rewarded.append(neuron)
        #: Per population, the last training tick's per-step outputs and deltas (:meth:`keep_steps`).
        self.step_outs: dict[str, np.ndarray] | None = None
        self.step_deltas: dict[str, np.ndarray | None] = {}

    # ------------------------------------------------------------------ forward

    def _draws(self, suffix: str, tick: int, batch: int, x: np.ndarray) -> tuple[np.ndarray | None, dict]:
        network, steps = self.ex.network, self.steps
        enc = None
        if self.encoding.kind in ("rate", "poisson"):
            enc = component_uniforms(self.seed, ("encoding" + suffix, tick), (steps, batch, x.shape[1]))
        draws = {name: component_uniforms(self.seed, ("firing" + suffix, name, tick), (steps, batch, p.size))
                 for name, p in network.populations.items()
                 if p.role != "input" and self.policies[name].policy == "random"}
        return enc, draws

    def forward(self, tick: int, x: np.ndarray, suffix: str, messages: bool) -> None:
        """Every step of every neuron, from a reset state; with ``messages`` on the bus (a training
        tick), else directly (evaluation)."""
        ex, steps, batch = self.ex, self.steps, x.shape[0]
        bus = ex.bus
        enc_uniforms, draws = self._draws(suffix, tick, batch, x)
        encoded = encode(self.encoding, x, steps, enc_uniforms)
        for neuron in ex.neurons:
            info = neuron.population_info
            neuron.steps = []
            if info.role == "input":
                continue
            state = getattr(neuron, "carried", None) if messages and self.carry else None
            if state is None or state.spike.shape[0] != batch:  # a sample starts from the reset state
                state = initial_state((batch,), np, policy=self.policies[info.name])
            neuron.firing_state = state
            if messages:  # STDP traces start at 0, or continue (carry_state)
                for synapses in neuron.incoming:
                    if synapses.stdp is not None and not (self.carry and synapses.stdp.ready(batch)):
                        synapses.stdp.reset(synapses.weights, batch)
        if messages:  # sense: each input neuron gets its column over the steps
            for i, agent_id in enumerate(ex.network.input.ids):
                bus.send(Message(tick, Stage.SENSE, TASK, agent_id, Kind.ACTIVATION, encoded[:, :, i]))
            bus.deliver()
            for agent_id in ex.network.input.ids:
                ex.neurons[agent_id].take(Kind.ACTIVATION)
        emitted: dict[int, list[np.ndarray]] = {n.unique_id: [] for n in ex.neurons}
        for s in range(steps):
            if messages and s > 0:  # what delayed projections sent at step s - 1
                bus.pending, bus.next_tick = bus.next_tick, []
                bus.deliver()
            for level in ex._levels:
                for neuron in level:
                    info = neuron.population_info
                    if info.role == "input":
                        out = np.ascontiguousarray(encoded[s, :, neuron.index])
                        neuron.steps.append({"u": out, "out": out})
                        spiking = self.encoding.kind in SPIKING_ENCODINGS
                    else:
                        out = self._step(neuron, s, batch, draws, emitted, messages)
                        spiking = self.policies[info.name].spiking
                    emitted[neuron.unique_id].append(out)
                    if messages:
                        self._send(neuron, tick, out, spiking)
                if messages:
                    bus.deliver()
        if messages:
            bus.next_tick = []  # the last step's delayed messages reach nothing: state resets
        if not messages:  # an evaluation leaves the tick's state as it was
            return
        for neuron in ex.neurons:
            if self.carry and neuron.population_info.role != "input":
                neuron.carried = neuron.firing_state  # run.carry_state: the next training tick continues it
            last = neuron.steps[-1]
            neuron.u, neuron.y = last["u"], last["out"]
            if neuron.population_info.role != "input":  # the state the tick leaves, for reads
                policy = self.policies[neuron.population_info.name]
                state = neuron.firing_state
                neuron.membrane = state.membrane if policy.policy == "lif" else None
                neuron.refractory = state.refractory.astype(np.float64) if policy.spiking else None

    def _inputs(self, neuron: Any, s: int, batch: int, emitted: dict, messages: bool) -> list[np.ndarray]:
        """Per incoming projection, its presynaptic values at this step, (n_in, batch)."""
        zero = np.zeros(batch)
        if messages:
            received: dict[int, np.ndarray] = {}
            for m in neuron.take(Kind.ACTIVATION):
                received[m.src] = m.payload
            for m in neuron.take(Kind.SPIKE):
                row = received.setdefault(m.src, np.zeros(batch))
                row[int(m.payload)] = 1.0
        result = []
        for synapses in neuron.incoming:
            delayed = synapses.projection.delayed
            if messages:
                result.append(np.stack([received.get(i, zero) for i in synapses.pre_ids]))
            else:
                t = s - 1 if delayed else s
                result.append(np.stack([emitted[i][t] if t >= 0 else zero for i in synapses.pre_ids]))
        return result

    def _step(self, neuron: Any, s: int, batch: int, draws: dict, emitted: dict, messages: bool) -> np.ndarray:
        info = neuron.population_info
        policy = self.policies[info.name]
        inputs = self._inputs(neuron, s, batch, emitted, messages)
        u = np.full(batch, neuron.bias)
        for synapses, x in zip(neuron.incoming, inputs):
            u = u + synapses.weights @ x
        state = neuron.firing_state
        v = draws[info.name][s][:, neuron.index] if info.name in draws else None
        out, new = fire(policy, state, u, np, uniforms=v, activation=info.activation)
        record = {"u": u, "out": out, "inputs": inputs, "uniforms": v}
        if policy.policy == "lif":
            record["membrane"], record["previous"] = new.membrane, state.membrane
            record["before_reset"] = new.membrane if policy.reset_delay else lif_step(
                state.membrane, u, policy.beta, policy.threshold, policy.reset, True, policy.surrogate, policy.strict,
                np)[1]
        if policy.spiking and policy.refractory:
            record["open"] = (state.refractory == 0).astype(np.float64)
        neuron.firing_state = new
        neuron.steps.append(record)
        if messages:  # STDP: the spikes that arrived this step, and this step's own, after u used the weights
            for synapses, x in zip(neuron.incoming, inputs):
                if synapses.stdp is not None:
                    synapses.weights = synapses.stdp.step(synapses.weights, x.T, out[:, None])
        return out

    def _send(self, neuron: Any, tick: int, out: np.ndarray, spiking: bool) -> None:
        bus = self.ex.bus
        for delayed, targets in neuron.outgoing:
            if not spiking:
                bus.send_each(tick, Stage.FORWARD, neuron.unique_id, targets, Kind.ACTIVATION, out, delayed=delayed)
                continue
            for row in np.flatnonzero(out):  # one message per synapse and actual spike
                bus.send_each(tick, Stage.FORWARD, neuron.unique_id, targets, Kind.SPIKE, np.int64(row),
                              delayed=delayed)

    # ------------------------------------------------------------------ readout and backward

    def readout_value(self, neuron: Any) -> np.ndarray:
        if self.readout == "membrane":
            return np.sum([r["membrane"] for r in neuron.steps], axis=0) / self.steps
        if self.readout == "last":
            return neuron.steps[-1]["out"].copy()
        total = np.sum([r["out"] for r in neuron.steps], axis=0)
        return total if self.readout == "count" else total / self.steps

    def backward(self, tick: int, answers: dict[int, np.ndarray]) -> None:
        """Credit step by step in reverse: each neuron that needs credit turns the error messages
        of a step into its δ[s] and sends credit on (to the same step, or along a delayed
        projection to the step before)."""
        ex, steps = self.ex, self.steps
        bus = ex.bus
        learners = [n for level in reversed(ex._levels) for n in level
                    if n.population_info.role != "input" and n.population_info.needs_credit]
        for neuron in learners:
            neuron.step_deltas = [None] * steps
            neuron.membrane_grad = None
        # DFA through time: each output neuron sends its delta of every step to the DFA neurons below
        # its level (the others could not use it within the step; docs/semantics.md).
        targets = dfa_targets(ex.network)
        for s in reversed(range(steps)):
            if s < steps - 1:
                bus.pending, bus.next_tick = bus.next_tick, []
                bus.deliver()
            for level in reversed(ex._levels):
                for neuron in level:
                    info = neuron.population_info
                    if info.role == "input" or not info.needs_credit:
                        neuron.take(Kind.ERROR)
                        continue
                    errors = neuron.take(Kind.ERROR)
                    if neuron.dfa is not None:  # Σ_o D_jo δ_o[s], from the output's messages of this step
                        broadcast = np.zeros((neuron.dfa.shape[0], bus.batch_size))
                        for m in errors:
                            broadcast[m.src - neuron.output_start] = m.payload
                        grad = neuron.dfa @ broadcast
                    else:
                        grad = np.zeros(bus.batch_size)
                        for m in errors:
                            grad = grad + m.payload
                    delta = self._delta(neuron, s, grad, answers.get(neuron.unique_id))
                    neuron.step_deltas[s] = delta
                    if info.role == "output" and targets:
                        bus.send_each(tick, Stage.BACKWARD, neuron.unique_id, targets, Kind.ERROR, delta)
                    for synapses in neuron.incoming:
                        projection = synapses.projection
                        if not carries_over_steps(projection) or (projection.delayed and s % self.window == 0):
                            continue  # (at s = 0 nothing came before; at a multiple of the window it is cut)
                        matrix = synapses.feedback if synapses.feedback is not None else synapses.weights
                        payloads = np.multiply.outer(matrix, delta)
                        if projection.delayed:
                            bus.next_tick.extend(Message(tick, Stage.BACKWARD, neuron.unique_id, dst, Kind.ERROR, row)
                                                 for dst, row in zip(synapses.pre_ids, payloads))
                            bus.counts[Kind.ERROR] += len(synapses.pre_ids)
                        else:
                            bus.send_rows(tick, Stage.BACKWARD, neuron.unique_id, synapses.pre_ids, Kind.ERROR,
                                          payloads)
                bus.deliver()
        bus.next_tick = []

    def _delta(self, neuron: Any, s: int, grad: np.ndarray, answer: np.ndarray | None) -> np.ndarray:
        policy = self.policies[neuron.population_info.name]
        record = neuron.steps[s]
        if answer is not None and self.readout in ("count", "mean"):
            grad = grad + (answer if self.readout == "count" else answer / self.steps)
        elif answer is not None and self.readout == "last" and s == self.steps - 1:
            grad = grad + answer
        if policy.policy == "rate":
            return grad * neuron.activation.df(record["u"], record["out"])
        if policy.policy == "threshold":
            d = spike_derivative(record["u"] - policy.threshold, policy.surrogate, np)
        elif policy.policy == "random":
            p = _SIGMOID.f(record["u"] / policy.temperature)
            d = spike_derivative(p - record["uniforms"], policy.surrogate, np) * (p * (1 - p) / policy.temperature)
        else:  # lif: dL/dU[s] from the readout and the next step, then through the spike and reset
            grad_membrane = np.zeros_like(grad)
            if answer is not None and self.readout == "membrane":
                grad_membrane = grad_membrane + answer / self.steps
            if neuron.membrane_grad is not None and (s + 1) % self.window != 0:
                carry = lif_membrane_carry(policy, record["membrane"], np)
                grad_membrane = grad_membrane + neuron.membrane_grad * carry
            neuron.membrane_grad = lif_current_gradient(policy, grad, grad_membrane, record["before_reset"],
                                                        record["previous"], record.get("open"), np)
            return neuron.membrane_grad
        if "open" in record:
            d = d * record["open"]
        return grad * d

    # ------------------------------------------------------------------ a tick, and evaluation

    def tick(self, tick: int, inputs: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
        """sense, forward over the steps, readout, backward over the steps; prepares each learner's
        credit and inputs for its learn stage (sums over the steps as one batch of T * B rows)."""
        ex, steps = self.ex, self.steps
        bus = ex.bus
        self.forward(tick, inputs, "", messages=True)
        output = ex.network.output
        for agent_id in output.ids:
            neuron = ex.neurons[agent_id]
            bus.send(Message(tick, Stage.READOUT, agent_id, TASK, Kind.ACTIVATION, self.readout_value(neuron)))
        bus.deliver()
        reports = {m.src: m.payload for m in bus.take_task_inbox()}
        outputs = np.stack([reports[agent_id] for agent_id in output.ids], axis=1)
        loss, grad = ex.loss(outputs, targets)
        ex._answer = grad
        if self.rewarded:  # R-STDP: the task rewards each sample at its last step
            losses = sample_losses(ex.loss_name, outputs, targets)
            for neuron in self.rewarded:
                kind = next(s.projection.learning.stdp.reward for s in neuron.incoming
                            if s.stdp is not None and s.stdp.reward_params is not None)
                bus.send(Message(tick, Stage.READOUT, TASK, neuron.unique_id, Kind.REWARD,
                                 task_reward(kind, outputs, targets, losses, np, self.seed, tick)))
            bus.deliver()
            for neuron in self.rewarded:
                (message,) = neuron.take(Kind.REWARD)
                for synapses in neuron.incoming:
                    if synapses.stdp is not None and synapses.stdp.reward_params is not None:
                        synapses.weights = synapses.stdp.rewarded(synapses.weights, message.payload)
        answers = {}
        for k, agent_id in enumerate(output.ids):
            bus.send(Message(tick, Stage.READOUT, TASK, agent_id, Kind.ERROR, grad[:, k]))
        bus.deliver()
        for agent_id in output.ids:
            (message,) = ex.neurons[agent_id].take(Kind.ERROR)
            answers[agent_id] = message.payload
        self.backward(tick, answers)
        for neuron in ex._learners:
            deltas = getattr(neuron, "step_deltas", None) if neuron.population_info.needs_credit else None
            neuron.delta = None if deltas is None else np.sum(deltas, axis=0)
            neuron.step_credit = None if deltas is None else np.concatenate(deltas) * steps
            for k, synapses in enumerate(neuron.incoming):
                synapses.inputs = np.concatenate([r["inputs"][k] for r in neuron.steps], axis=1)
        self.keep_steps()
        return loss, outputs

    def keep_steps(self) -> None:
        """Keep, per population, what each neuron emitted at every step and (where it has credit)
        its delta at every step, (batch, steps, size), for the log (docs/semantics.md, "The state
        logged"): evaluation runs the neurons' steps again, so they are copied out now."""
        ex = self.ex
        self.step_outs, self.step_deltas = {}, {}
        for name, population in ex.network.populations.items():
            neurons = ex.neurons[population.start:population.start + population.size]
            self.step_outs[name] = np.stack([np.stack([r["out"] for r in n.steps], axis=1) for n in neurons], axis=2)
            deltas = [getattr(n, "step_deltas", None) if population.needs_credit else None for n in neurons]
            self.step_deltas[name] = (None if any(d is None for d in deltas)
                                      else np.stack([np.stack(d, axis=1) for d in deltas], axis=2))

    def predict(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Outputs (samples, n_outputs) and per neuron what it emitted per step on average
        (neurons, samples), over the steps, without messages."""
        ex = self.ex
        self.forward(ex._ticks_run, inputs, "-eval", messages=False)
        output = ex.network.output
        outputs = np.stack([self.readout_value(ex.neurons[i]) for i in output.ids], axis=1)
        emitted = np.stack([np.mean([r["out"] for r in n.steps], axis=0) for n in ex.neurons])
        return outputs, emitted
