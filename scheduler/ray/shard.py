"""One shard of the Ray executor: the blocks of neurons it computes, and its part of each stage.

A shard holds, for each of its blocks (:mod:`ribbed.scheduler.ray.partitioning`), the block's rows
of every incoming projection (in the layout the batched executor would choose for the whole
projection), their optimizer state, the block's biases and DFA rows.  It runs the batched
executor's stages on them, block by block in partition order:

- ``forward(level)``: the pre-activations and activations of its blocks at ``level``, from the
  full activity of their presynaptic populations (assembled from every shard's blocks);
- ``backward(level)``: the blocks' deltas, from the task's answer or from the error messages of
  the posts (each post block sends its partial sums, which the pre block adds in partition
  order, so the sum does not depend on the shards), and the partial sums the blocks send back;
- ``learn``: the learn stage of every block (:func:`ribbed.scheduler.batched.learning.learn`).

Each call returns what other shards and the driver need from it (activations, deltas, partial
sums, as numpy arrays for Ray's object store) and takes what the other shards returned from
their previous call: the driver chains the calls, so data moves shard to shard in bulk through
Ray's object store, once per stage, never message by message.

With time in the tick, the shard's :class:`~ribbed.scheduler.ray.timed.TimedStages` run the
stages step by step on the same blocks and exchange.

This module knows nothing of Ray: a shard is a plain object, which the executor wraps in an actor.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from ribbed.agents.rules import broadcast_credit
from ribbed.environment.losses import mse_answer
from ribbed.environment.network import PopulationInfo, ProjectionInfo
from ribbed.scheduler.batched.populations import PopulationTensors, SynapseTensors
from ribbed.scheduler.batched.learning import learn
from ribbed.scheduler.ray.partitioning import Block
from ribbed.scheduler.batched.projection_tensors import make_projection_tensors
from ribbed.scheduler.plasticity import projection_stdp
from ribbed.scheduler.state import collect_state, restore_state

__all__ = ["BlockData", "Shard", "ShardLayout", "block_population", "block_projection", "collect_optimizer",
           "restore_optimizer", "row_slice"]


@dataclass
class ShardLayout:
    """What every shard knows of the whole network (small: no synapses)."""

    dtype: str
    populations: dict[str, PopulationInfo]
    levels: list[list[str]]  # computed populations by level (index = level)
    blocks: dict[str, list[tuple[int, int]]]  # every computed population's blocks, in neuron order
    sends_error: dict[str, list[int]]  # projections that carry errors back to a population, in order
    projection_posts: dict[int, str]  # projection index -> postsynaptic population
    delayed_sources: list[str]
    guided: list[str]
    #: What a block's results carry: activations other shards read (of presynaptic populations),
    #: activations, pre-activations and deltas the driver reads (output, guided populations), and
    #: deltas other shards read (the output's, for DFA populations).
    share_y: list[str] = field(default_factory=list)
    report_y: list[str] = field(default_factory=list)
    share_u: list[str] = field(default_factory=list)
    share_delta: list[str] = field(default_factory=list)
    #: A timed scenario's plan (None for today's tick), and what its stages need of the network:
    #: per population, the projections that carry credit back to it over the steps; per projection,
    #: whether it is delayed (:mod:`ribbed.scheduler.ray.timed`).
    timed: Any = None
    carriers: dict[str, list[int]] = field(default_factory=dict)
    delayed: dict[int, bool] = field(default_factory=dict)

    @property
    def input(self) -> str:
        return next(name for name, p in self.populations.items() if p.role == "input")

    @property
    def output(self) -> str:
        return next(name for name, p in self.populations.items() if p.role == "output")


@dataclass
class BlockData:
    """One block's part of the network: its rows of each incoming projection, with the layout
    (dense or sparse) chosen for the whole projection, and its rows of a DFA matrix and of a
    broadcast-credit matrix."""

    block: Block
    incoming: list[tuple[ProjectionInfo, str]]
    dfa: np.ndarray | None
    broadcast: np.ndarray | None = None  # its rows of the broadcast-credit matrix B


def row_slice(layout: str, row_bounds: np.ndarray, start: int, stop: int) -> slice:
    """The part of a projection tensor (weights, optimizer state) that holds rows ``start:stop``:
    synapses ``row_bounds[start]:row_bounds[stop]`` of a sparse one, rows of a dense one."""
    return slice(int(row_bounds[start]), int(row_bounds[stop])) if layout == "sparse" else slice(start, stop)


def block_projection(info: ProjectionInfo, start: int, stop: int, post: PopulationInfo) -> ProjectionInfo:
    """Rows ``start:stop`` of a projection, as a projection onto ``post`` (the block)."""
    bounds = np.searchsorted(info.post_idx, [start, stop])
    part = slice(int(bounds[0]), int(bounds[1]))
    return replace(info, post=post, pre_idx=info.pre_idx[part], post_idx=info.post_idx[part] - start,
                   weights=info.weights[part], feedback=None if info.feedback is None else info.feedback[part])


def block_population(info: PopulationInfo, start: int, stop: int) -> PopulationInfo:
    """Neurons ``start:stop`` of a population, as a population of their own (same rule and activation)."""
    return replace(info, size=stop - start, start=info.start + start)


class _BlockState(PopulationTensors):
    """A block's tensors: the batched executor's population state for rows ``start:stop``."""

    def __init__(self, data: BlockData, info: PopulationInfo, dtype: torch.dtype):
        block = data.block
        super().__init__(block_population(info, block.start, block.stop), torch.device("cpu"), dtype)
        self.name, self.start, self.stop = block.population, block.start, block.stop
        self.full_info = info
        for projection, layout in data.incoming:
            synapses = SynapseTensors(projection, make_projection_tensors(projection, layout, 0.0, torch.device("cpu"), dtype))
            if projection.stdp:  # the block's rows of an STDP projection learn here, as batched's whole one does
                tensors = synapses.layout
                synapses.stdp = projection_stdp(projection, tensors.layout == "dense" and tensors.mask is None,
                                                torch.device("cpu"))
            self.incoming.append(synapses)
            if synapses.optimizer is not None:
                self.plastic.append(synapses)
            if projection.sanger:
                self.sanger.append(synapses)
        counts = sum(s.layout.row_counts for s in self.plastic)
        self.plastic_counts = torch.as_tensor(counts, dtype=dtype)
        self.dfa = None if data.dfa is None else torch.as_tensor(data.dfa, dtype=dtype)
        self.broadcast = None if data.broadcast is None else torch.as_tensor(data.broadcast, dtype=dtype)


class Shard:
    """The blocks one shard computes, and its stages (see the module docstring)."""

    def __init__(self, layout: ShardLayout, blocks: list[BlockData], inputs: np.ndarray,
                 targets: np.ndarray | None = None):
        """``targets``: the training targets, when the loss is a sum over output neurons (MSE):
        the shard then answers its own output neurons (see :meth:`forward`)."""
        self.layout = layout
        self.dtype = getattr(torch, layout.dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # read-only when it lies in Ray's object store: shared, never written
            self.inputs = torch.as_tensor(inputs, dtype=self.dtype)
            self.targets = None if targets is None else torch.as_tensor(targets, dtype=self.dtype)
        self._index: torch.Tensor | None = None
        self._batch_targets: torch.Tensor | None = None
        self.blocks = [_BlockState(data, layout.populations[data.block.population], self.dtype) for data in blocks]
        self.by_level = [[b for b in self.blocks if b.name in level] for level in layout.levels]
        self.output_level = layout.populations[layout.output].level
        self.seconds = 0.0  # time spent computing (for the share of tick time spent exchanging)
        self._received: dict[str, dict] = {"y": {}, "delta": {}, "partial": {}}
        self._full: dict[str, torch.Tensor] = {}
        self._last: dict[str, torch.Tensor] = {}  # last tick's activity of cycle-closing sources
        self._previous: dict[str, torch.Tensor] = {}
        self._x: torch.Tensor | None = None
        #: The timed stages (a scenario with time in its tick), which reuse this shard's blocks and exchange.
        self.timed = None
        if layout.timed is not None:
            from ribbed.scheduler.ray.timed import TimedStages

            self.timed = TimedStages(self, layout.timed, layout.carriers, layout.delayed)

    # ------------------------------------------------------------------ stages

    def forward(self, level: int, index: np.ndarray | None, deliveries: tuple) -> tuple[dict, dict]:
        """Returns what the other shards read (activations of presynaptic populations) and what
        the driver reads (the output's activations, guided populations' u and y), apart, so that
        neither travels where it is not read."""
        began = time.perf_counter()
        if index is not None:
            self._begin(index)
        self._absorb(deliveries)
        to_shards: dict = {"y": {}}
        to_driver: dict = {"y": {}, "u": {}}
        layout = self.layout
        batch = self._x.shape[0]
        for block in self.by_level[level]:
            u = block.bias.expand(batch, -1).clone()
            for synapses in block.incoming:
                pre = synapses.info.pre.name
                synapses.x = self._previous[pre] if synapses.info.delayed else self.full_y(pre)
                synapses.layout.forward(synapses.x, u, synapses.weights)
            block.u, block.y = u, block.activation.f(u)
            key = (block.name, block.start)
            self._received["y"][key] = block.y
            if block.name in layout.share_y:
                to_shards["y"][key] = block.y.numpy()
            if block.name in layout.report_y:
                to_driver["y"][key] = block.y.numpy()
            if block.name in layout.share_u:
                to_driver["u"][key] = block.u.numpy()
            if block.name == layout.output and self.targets is not None:
                to_driver.setdefault("loss", {})[block.start] = self._readout(block, block.y)
        self.seconds += time.perf_counter() - began
        return to_shards, to_driver

    def _readout(self, block: _BlockState, y: torch.Tensor) -> np.ndarray:
        """The MSE readout of an output block whose output is ``y`` (its activation, or with time in
        the tick its readout over the steps), as the batched executor computes it for these
        columns (:func:`~ribbed.environment.losses.mse_samples`): its answer 2 (y - t) / n_outputs
        (kept for ``backward``) and each sample's sum of squared differences (the driver adds the
        blocks' sums in partition order)."""
        if self._batch_targets is None:
            self._batch_targets = self.targets.index_select(0, self._index)
        diff = y - self._batch_targets[:, block.start:block.stop]
        block.answer = mse_answer(diff, self.layout.populations[block.name].size)
        return (diff * diff).sum(dim=1).numpy()

    def backward(self, level: int, answers: dict[int, np.ndarray] | None, backward: bool, deliveries: tuple) -> dict:
        """``answers``: the task's answer for each of the shard's output blocks, by first neuron
        (None when the shard computed them itself, in :meth:`forward`)."""
        began = time.perf_counter()
        self._absorb(deliveries)
        layout = self.layout
        out: dict = {"delta": {}, "partial": {}}
        partials = self._received["partial"]
        for block in self.by_level[level]:
            block.delta = None
            info = block.full_info
            if not info.needs_credit or not (backward or block.name == layout.output):
                continue
            if block.dfa is not None:
                source = self.full("delta", layout.output) if self.output_level > info.level else None
                total = torch.zeros_like(block.u) if source is None else torch.mm(source, block.dfa.T)
            else:
                if block.name != layout.output:
                    total = torch.zeros_like(block.u)
                elif answers is None:
                    total = block.answer
                else:
                    total = torch.from_numpy(np.array(answers[block.start]))
                for projection in layout.sends_error[block.name] if backward else ():
                    for post_start, _ in layout.blocks[layout.projection_posts[projection]]:
                        total += partials[(projection, post_start)][:, block.start:block.stop]
            block.delta = total.mul_(block.activation.df(block.u, block.y))
            key = (block.name, block.start)
            self._received["delta"][key] = block.delta
            if block.name in layout.share_delta:
                out["delta"][key] = block.delta.numpy()
            for synapses in block.incoming if backward else ():
                if not synapses.info.sends_error:
                    continue
                matrix = synapses.weights if synapses.feedback is None else synapses.feedback
                partial = torch.zeros(block.delta.shape[0], synapses.info.pre.size, dtype=self.dtype)
                synapses.layout.backward(block.delta, matrix, partial)
                partials[(synapses.info.index, block.start)] = partial
                out["partial"][(synapses.info.index, block.start)] = partial.numpy()
        self.seconds += time.perf_counter() - began
        return out

    def learn(self, credits: dict[str, np.ndarray], context: np.ndarray | None = None) -> None:
        """The learn stage; ``credits`` holds the credit of guided populations (the driver blends
        their guidance in); ``context``, the task's context on a tick without propagated error,
        from which blocks with broadcast credit make theirs; every other block learns from its delta."""
        began = time.perf_counter()
        batch = self._x.shape[0]
        for block in self.blocks:
            credit = credits.get(block.name, block.delta) if block.name in self.layout.guided else block.delta
            block.credit = (torch.from_numpy(np.array(credit[:, block.start:block.stop]))
                            if isinstance(credit, np.ndarray) else credit)
            if context is not None and block.broadcast is not None:
                block.credit = broadcast_credit(block.activation.df(block.u, block.y),
                                                torch.from_numpy(np.array(context)), block.broadcast)
            learn(block, batch, self.dtype)
        for name in self.layout.delayed_sources:
            self._last[name] = self.full_y(name)
        self.seconds += time.perf_counter() - began

    # ------------------------------------------------------------------ data from other shards

    def _begin(self, index: np.ndarray) -> None:
        """A new tick: the mini-batch, and last tick's activity for cycle-closing projections."""
        for received in self._received.values():
            received.clear()
        self._full = {}
        self._index = torch.from_numpy(np.array(index, dtype=np.int64))
        self._batch_targets = None  # the batch's targets, gathered at the first output block
        self._x = self.inputs.index_select(0, self._index)
        batch = self._x.shape[0]
        for name in self.layout.delayed_sources:
            last = self._last.get(name)
            size = self.layout.populations[name].size
            self._previous[name] = (last if last is not None and last.shape[0] == batch
                                    else torch.zeros(batch, size, dtype=self.dtype))

    def _absorb(self, deliveries: tuple) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # arrays from Ray's object store are read-only; we only read them
            for result in deliveries:
                for kind, values in result.items():
                    if kind in self._received:
                        self._received[kind].update((key, torch.from_numpy(v)) for key, v in values.items())

    def full_y(self, name: str) -> torch.Tensor:
        """This tick's activity of a whole population, assembled from its blocks."""
        if name == self.layout.input:
            return self._x
        return self.full("y", name)

    def full(self, kind: str, name: str) -> torch.Tensor:
        key = (kind, name)
        value = self._full.get(key)
        if value is None:
            received = self._received[kind]
            parts = [received[(name, start)] for start, _ in self.layout.blocks[name]]
            value = self._full[key] = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return value

    # ------------------------------------------------------------------ state

    def values(self) -> dict:
        """The last tick's u, y, delta and credit of each block, and the firing state its last step
        left (for agent views and the log); with time in the tick, the input's last step too."""
        def plain(t):
            return None if t is None else t.numpy().copy()

        values = {(b.name, b.start): {"u": plain(b.u), "y": plain(b.y), "delta": plain(b.delta),
                                      "credit": plain(b.credit), "membrane": plain(b.membrane),
                                      "refractory": plain(b.refractory)} for b in self.blocks}
        if self.timed is not None and self._x is not None:
            values[(self.layout.input, 0)] = self.timed.input_values()
        return values

    def step_values(self) -> dict:
        """With time in the tick, every block's per-step outputs and deltas of the last training
        tick (:meth:`TimedStages.step_values`), for the log."""
        return self.timed.step_values() if self.timed is not None and self._x is not None else {}

    def get_state(self) -> dict:
        """Each block's weights, feedback weights, optimizer state, biases and DFA rows, the
        cycle-closing activity of the last tick, and (run.carry_state) the blocks' carried state."""
        blocks = {}
        for block in self.blocks:
            blocks[(block.name, block.start)] = {
                "bias": block.bias.numpy().copy(),
                "bias_optimizer": collect_optimizer(block.bias_optimizer),
                "dfa": None if block.dfa is None else block.dfa.numpy().copy(),
                "synapses": [{"weights": s.weights.numpy().copy(),
                              "feedback": None if s.feedback is None else s.feedback.numpy().copy(),
                              "optimizer": collect_optimizer(s.optimizer)} for s in block.incoming],
            }
        state = {"blocks": blocks, "last": {name: t.numpy().copy() for name, t in self._last.items()}}
        if self.timed is not None and self.timed.plan.carry:
            state["carried"] = self.timed.carried()
        return state

    def set_state(self, state: dict) -> None:
        """Put back state shaped as :meth:`get_state` returns it."""
        for block in self.blocks:
            values = state["blocks"][(block.name, block.start)]
            block.bias.copy_(torch.as_tensor(values["bias"]))
            restore_optimizer(block.bias_optimizer, values["bias_optimizer"])
            if block.dfa is not None:
                block.dfa.copy_(torch.as_tensor(values["dfa"]))
            for synapses, part in zip(block.incoming, values["synapses"]):
                synapses.weights.copy_(torch.as_tensor(part["weights"]))
                if synapses.feedback is not None:
                    synapses.feedback.copy_(torch.as_tensor(part["feedback"]))
                restore_optimizer(synapses.optimizer, part["optimizer"])
        self._last = {name: torch.as_tensor(np.array(value)) for name, value in state["last"].items()}
        if self.timed is not None and "carried" in state:
            self.timed.load_carried(state["carried"])


def collect_optimizer(optimizer) -> tuple[dict, dict] | None:
    """An optimizer's state as ``(values, kinds)`` (scheduler/state.py), or None for no optimizer."""
    return None if optimizer is None else collect_state(optimizer)


def restore_optimizer(optimizer, state: tuple[dict, dict] | None) -> None:
    """Put back what :func:`collect_optimizer` returned (nothing for no optimizer)."""
    if optimizer is not None and state is not None:
        restore_state(optimizer, *state)
