"""A shard's part of a tick with time in it: T steps per sample, firing policies, readouts, and
backprop through the steps (docs/semantics.md, "Time within a tick").

Why a module of its own: an untimed scenario runs the shard's own stages (:mod:`.shard`),
untouched, so that no existing result changes; this module is only reached by a *timed* one.
It writes no arithmetic of its own: every step of a block is the batched executor's
(:mod:`ribbed.scheduler.batched.timed`: ``fire_step``, ``step_delta``, ``learn_over_steps``, the
readout and the spike counts), applied to the block's rows, so the three executors compute one
semantics.  The random policy's and the rate encoding's uniforms come from the shared keyed
function, for the whole population; a block takes its columns (no shard draws on its own).

STDP and R-STDP (docs/semantics.md, "STDP in a tick"): a block's rows of an STDP projection carry
their :class:`~ribbed.scheduler.plasticity.STDPSynapses` and step, after the block fires, with the
presynaptic spikes the shard already assembled for the forward (``stdp_step``, the batched one);
R-STDP's reward, which needs the whole readout, comes from the driver with the first backward call.
With ``run.carry_state`` the blocks' firing states, traces and eligibility stay here from one
training tick to the next (:meth:`TimedStages.carried` gives them to snapshots).

What moves between shards, per step: in ``forward(step, level)``, what each block emitted at the
step (activations or spikes) for the populations other shards read, delayed projections reading
the previous step's; in ``backward(step, level)``, each post block's partial sums of the error it
sends back along carrying projections (:func:`~ribbed.scheduler.message_counts.carries_over_steps`),
which the pre blocks add in partition order at the same step (or at the step before, along a
delayed projection); with DFA populations, the output blocks' δ at the step, from which each DFA
block takes Σ_o D_jo δ_o[step] (the batched ``dfa_gradient``).  Each call takes what the other shards' previous call returned, as the
untimed stages do; the driver chains the calls step by step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ribbed.agents.firing import FiringState, initial_state
from ribbed.scheduler.batched import timed as steps_of
from ribbed.scheduler.batched.learning import learn

if TYPE_CHECKING:
    from ribbed.scheduler.ray.shard import Shard

__all__ = ["TimedStages"]


class TimedStages:
    """The timed stages of one shard (a :class:`~ribbed.scheduler.ray.shard.Shard`), with the
    per-tick state of its blocks: firing states, per-step records and deltas."""

    def __init__(self, shard: Shard, plan: steps_of.TimedPlan, carriers: dict[str, list[int]],
                 delayed: dict[int, bool]):
        """``carriers``: per population, the projections (by index) that carry credit back to it over
        the steps; ``delayed``: per projection, whether it is delayed."""
        self.shard, self.plan = shard, plan
        self.carriers, self.delayed = carriers, delayed
        self._inputs: torch.Tensor | None = None
        self._states: dict[tuple, Any] = {}
        self._draws: dict[tuple, torch.Tensor | None] = {}
        self._records: dict[tuple, list] = {}
        self._deltas: dict[tuple, list] = {}
        self._answers: dict[int, torch.Tensor] = {}
        self._full: dict[tuple, torch.Tensor] = {}

    # ------------------------------------------------------------------ forward

    def begin(self, index: np.ndarray, tick: int) -> None:
        """A new tick: the mini-batch, its encoding over the steps, every block's reset state and draws."""
        shard = self.shard
        shard._begin(index)
        self._full, self._answers = {}, {}
        key = ("", tick)
        x = shard._x
        batch, dtype = x.shape[0], shard.dtype
        self._inputs = steps_of.encoded_inputs(self.plan, x, key)
        device = torch.device("cpu")
        draws: dict[str, torch.Tensor | None] = {}
        for block in shard.blocks:
            name, at = block.name, (block.name, block.start)
            if name not in draws:
                draws[name] = steps_of.population_draws(self.plan, name, block.full_info.size, batch, key, dtype,
                                                        device)
            population = draws[name]
            self._draws[at] = None if population is None else population[:, :, block.start:block.stop]
            policy = self.plan.policies[name]
            previous = self._states.get(at) if self.plan.carry else None  # run.carry_state: last tick's
            self._states[at] = (previous if previous is not None and previous.spike.shape[0] == batch
                                else initial_state((batch, block.stop - block.start), torch, dtype, device, policy))
            for synapses in block.incoming:  # STDP traces start at 0, or continue (carry_state)
                stdp = synapses.stdp
                if stdp is not None and not (self.plan.carry and stdp.ready(batch)):
                    stdp.reset(synapses.weights.numpy(), batch)
            self._records[at] = []
            self._deltas[at] = [None] * self.plan.steps

    def forward(self, step: int, level: int, deliveries: tuple) -> tuple[dict, dict]:
        """The blocks at ``level`` compute their current and fire at ``step``; returns what other
        shards read (what they emitted) and, at the last step, what the driver reads (the output's
        readout, and the MSE's per-sample sums when the shard answers its output neurons)."""
        shard = self.shard
        shard._absorb(deliveries)
        layout, plan = shard.layout, self.plan
        to_shards: dict = {"y": {}}
        to_driver: dict = {"y": {}}
        batch = shard._x.shape[0]
        for block in shard.by_level[level]:
            at = (block.name, block.start)
            u = block.bias.expand(batch, -1).clone()
            arrived = []
            for synapses in block.incoming:
                if synapses.info.delayed:
                    if step == 0:
                        arrived.append(None)
                        continue
                    source = self.emitted(synapses.info.pre.name, step - 1)
                else:
                    source = self.emitted(synapses.info.pre.name, step)
                arrived.append(source)
                synapses.layout.forward(source, u, synapses.weights)
            draws = self._draws[at]
            entry, self._states[at] = steps_of.fire_step(block, plan.policies[block.name], self._states[at], u,
                                                         None if draws is None else draws[step])
            self._records[at].append(entry)
            for synapses, source in zip(block.incoming, arrived):  # STDP: after forward used the weights
                if synapses.stdp is not None:
                    if source is None:  # a delayed projection at step 0: nothing arrived
                        source = torch.zeros(batch, synapses.info.pre.size, dtype=shard.dtype)
                    steps_of.stdp_step(synapses, source, entry.out)
            shard._received["y"][(block.name, block.start, step)] = entry.out
            if block.name in layout.share_y:
                to_shards["y"][(block.name, block.start, step)] = entry.out.numpy()
            if block.name == layout.output and step == plan.steps - 1:
                outputs = steps_of.readout(plan, self._records[at])
                to_driver["y"][at] = outputs.numpy()
                if shard.targets is not None:
                    to_driver.setdefault("loss", {})[block.start] = shard._readout(block, outputs)
        return to_shards, to_driver

    def emitted(self, name: str, step: int) -> torch.Tensor:
        """What the whole population ``name`` emitted at ``step``, assembled from its blocks."""
        if name == self.shard.layout.input:
            return self._inputs[step]
        key = (name, step)
        value = self._full.get(key)
        if value is None:
            received = self.shard._received["y"]
            parts = [received[(name, start, step)] for start, _ in self.shard.layout.blocks[name]]
            value = self._full[key] = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return value

    # ------------------------------------------------------------------ backward and learn

    def backward(self, step: int, level: int, answers: dict[int, np.ndarray] | None, deliveries: tuple,
                 rewards: dict[int, np.ndarray] | None = None) -> dict:
        """The blocks at ``level`` compute δ[step] (docs/semantics.md, "Learning over the steps")
        from the readout (output blocks; ``answers`` by first neuron, given once, at the first
        backward call, unless the shard computed them itself), the partial sums of their carrying
        projections' post blocks, and their own δ at the next step; returns the partial sums they
        send back.  ``rewards`` (at the first call): the task's reward per R-STDP projection (by
        index), one per batch row, which every block's rows of the projection apply first, as
        the batched executor does after the readout ("STDP in a tick")."""
        shard = self.shard
        shard._absorb(deliveries)
        layout, plan = shard.layout, self.plan
        for block in shard.blocks if rewards else ():
            for synapses in block.incoming:
                reward = rewards.get(synapses.info.index)
                if reward is not None and synapses.stdp is not None:
                    steps_of.stdp_reward(synapses, torch.from_numpy(np.array(reward)))
        if answers is not None:
            self._answers = {start: torch.from_numpy(np.array(value)) for start, value in answers.items()}
        partials = shard._received["partial"]
        out: dict = {"partial": {}, "delta": {}}
        for block in shard.by_level[level]:
            info = block.full_info
            if not info.needs_credit:
                continue
            at = (block.name, block.start)
            entry = self._records[at][step]
            grad_out = torch.zeros_like(entry.u)
            membrane_answer = None
            if block.dfa is not None:  # DFA through time: the output's delta of this step
                grad_out = steps_of.dfa_gradient(block.dfa, self.output_delta(step)
                                                 if shard.output_level > info.level else None, entry.u)
            elif block.name == layout.output:
                answer = self._answers[block.start] if block.start in self._answers else block.answer
                to_out, membrane_answer = steps_of.output_gradients(plan, answer, step)
                if to_out is not None:
                    grad_out.add_(to_out)
            for projection in self.carriers.get(block.name, ()) if block.dfa is None else ():
                post = layout.projection_posts[projection]
                t = step + 1 if self.delayed[projection] else step
                if t >= plan.steps or not layout.populations[post].needs_credit or (
                        self.delayed[projection] and not plan.carries(step)):
                    continue
                for post_start, _ in layout.blocks[post]:
                    grad_out += partials[(projection, post_start, t)][:, block.start:block.stop]
            deltas = self._deltas[at]
            later = deltas[step + 1] if step + 1 < plan.steps and plan.carries(step) else None
            deltas[step] = steps_of.step_delta(plan.policies[block.name], block.activation, entry, grad_out,
                                               membrane_answer, later)
            if block.name == layout.output and block.name in layout.share_delta:  # for the DFA blocks
                shard._received["delta"][(block.name, block.start, step)] = deltas[step]
                out["delta"][(block.name, block.start, step)] = deltas[step].numpy()
            for synapses in block.incoming:
                projection = synapses.info
                if projection.index not in self.carriers.get(projection.pre.name, ()):
                    continue
                if projection.delayed and step % plan.window == 0:  # at step 0 nothing came before; at
                    continue  # a multiple of the window (truncated BPTT) credit stops here
                matrix = synapses.weights if synapses.feedback is None else synapses.feedback
                partial = torch.zeros(deltas[step].shape[0], projection.pre.size, dtype=shard.dtype)
                synapses.layout.backward(deltas[step], matrix, partial)
                partials[(projection.index, block.start, step)] = partial
                out["partial"][(projection.index, block.start, step)] = partial.numpy()
        return out

    def output_delta(self, step: int) -> torch.Tensor:
        """The output population's δ at ``step``, assembled from its blocks (DFA through time)."""
        output = self.shard.layout.output
        received = self.shard._received["delta"]
        parts = [received[(output, start, step)] for start, _ in self.shard.layout.blocks[output]]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def learn(self) -> dict:
        """Every block's learn stage on its sums over the steps; the state the last step left kept
        for reads; returns the tick's spikes per neuron of each spiking block (and of the input
        under a spiking encoding), for the driver's message counts."""
        shard, plan = self.shard, self.plan
        batch = shard._x.shape[0]
        steps = plan.steps
        spikes: dict = {}
        names = {s.info.pre.name for block in shard.blocks for s in block.incoming}
        outputs = {name: [self.emitted(name, s) for s in range(steps)] for name in names}
        for block in shard.blocks:
            at = (block.name, block.start)
            records = self._records[at]
            block.u, block.y = records[-1].u, records[-1].out
            per_step = self._deltas[at] if block.full_info.needs_credit else None
            steps_of.learn_over_steps(block, per_step, outputs, batch, steps,
                                      lambda population, rows: learn(population, rows, shard.dtype))
            steps_of.keep_final_state(block, plan.policies[block.name], self._states[at])
            if plan.policies[block.name].spiking:
                spikes[at] = torch.stack([r.out for r in records]).sum(dim=(0, 1)).double().numpy()
        if plan.encoding.kind in steps_of.SPIKING_ENCODINGS:
            spikes[(shard.layout.input, 0)] = self._inputs.sum(dim=(0, 1)).double().numpy()
        return spikes

    def step_values(self) -> dict:
        """What each block emitted, and its δ, at every step of the last training tick, (batch, steps,
        block size) (δ None where the block has no credit), and the input's encoded steps under
        ``(input, 0)``: the log's per-step fields (docs/semantics.md, "The state logged")."""
        values: dict = {}
        for (name, start), records in self._records.items():
            deltas = self._deltas[(name, start)]
            values[(name, start)] = {
                "out": torch.stack([r.out for r in records], dim=1).numpy().copy(),
                "delta": None if any(d is None for d in deltas) else torch.stack(deltas, dim=1).numpy().copy()}
        values[(self.shard.layout.input, 0)] = {"out": self._inputs.transpose(0, 1).numpy().copy(), "delta": None}
        return values

    # ------------------------------------------------------------------ carried state

    def carried(self) -> dict:
        """run.carry_state: per block, the firing state the last training tick left and each
        incoming projection's STDP traces and eligibility (None where there are none), as plain
        arrays for a snapshot (the driver joins the blocks' columns)."""
        result = {}
        for block in self.shard.blocks:
            at = (block.name, block.start)
            state = self._states.get(at)
            firing = None if state is None else [None if v is None else v.numpy().copy() for v in state]
            stdp = [None if s.stdp is None or s.stdp.carried() is None else
                    [None if v is None else np.array(v) for v in s.stdp.carried()] for s in block.incoming]
            result[at] = {"firing": firing, "stdp": stdp}
        return result

    def load_carried(self, values: dict) -> None:
        """Put back what :meth:`carried` returns (a block without a firing state starts the next
        tick from the reset state)."""
        for block in self.shard.blocks:
            at = (block.name, block.start)
            entry = values.get(at) or {}
            firing = entry.get("firing")
            if firing is None:
                self._states.pop(at, None)
            else:
                self._states[at] = FiringState(*[None if v is None else torch.from_numpy(np.array(v)) for v in firing])
            for synapses, part in zip(block.incoming, entry.get("stdp") or [None] * len(block.incoming)):
                if synapses.stdp is not None:
                    synapses.stdp.load(None if part is None else [None if v is None else np.array(v) for v in part])

    def input_values(self) -> dict:
        """The input neurons' output at the tick's last step (what the log and reads show)."""
        last = self._inputs[-1].numpy().copy()
        return {"u": last, "y": last}
