"""The Ray executor: the batched executor's tick, sharded over Ray actors.

The neurons are laid out in virtual partitions (:mod:`ribbed.scheduler.ray.partitioning`), the
partitions dealt to shards, each shard a Ray actor (:mod:`ribbed.scheduler.ray.shard`) with its own
CPUs and torch threads, placed on nodes by a placement group.  The driver (this object, in the
run's process) runs each tick as a chain of calls: every shard's ``forward`` for each level,
then the readout (the loss and the task's answer need the whole output population), every
shard's ``backward`` for each level in reverse, the guide stage of guided populations (a guide
serves neurons on any shard, so guides live with the driver), and ``learn``.  Each call takes
what the other shards' previous call returned, straight from Ray's object store: the driver
only waits where it needs a result (the outputs, guided populations' credit, the end of the tick).

Everything off the hot path (evaluation, agent views, snapshots, setting weights) goes through a
batched executor on the driver that mirrors the shards' state: it is brought up to date from
the shards when read, and its changes are sent to them before the next tick.  A population too
large for the driver's memory can therefore be trained, but not evaluated, on this version.

A scenario with time in its tick (T steps per sample, spiking policies) runs ``_timed_tick``: the
same chain, one call per step and level forward and one per step and level in reverse
(:mod:`ribbed.scheduler.ray.timed`), the last of which learns and returns the tick's spikes, from
which the driver counts the spike messages.  STDP projections learn on the shards during forward;
R-STDP's reward is computed here from the readout and sent with the first backward call; the
carried state of ``run.carry_state`` stays with the shards and is joined into the mirror for
snapshots (and cut back into blocks on a resume).

Results do not depend on the number of shards (every sum is taken partition by partition, in
partition order), and agree with the batched executor's to floating-point tolerance.
"""

from __future__ import annotations

import logging
import math
import os
import time
import weakref
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from ribbed.agents.firing import FiringState
from ribbed.agents.guides import task_context
from ribbed.determinism import configure_torch
from ribbed.environment.losses import per_sample_loss
from ribbed.errors import Problem, RibbedError
from ribbed.agents.view import make_views
from ribbed.resources import available_cores
from ribbed.scheduler.base import Executor, ExecutorInputs, Prediction, TickResult
from ribbed.scheduler.batched.executor import EVALUATION_FIELDS, BatchedExecutor
from ribbed.scheduler.device import resolve_dtype
from ribbed.scheduler.message_counts import messages_per_tick
from ribbed.scheduler.ray.partitioning import Partitioning, partition_network
from ribbed.scheduler.batched.projection_tensors import choose_layout
from ribbed.scheduler.batched import timed
from ribbed.scheduler.message_counts import carries_over_steps
from ribbed.scheduler.plasticity import task_reward
from ribbed.scheduler.ray.shard import (BlockData, Shard, ShardLayout, block_population, block_projection,
                                    collect_optimizer, restore_optimizer, row_slice)

if TYPE_CHECKING:
    from ribbed.environment.network import Network

__all__ = ["RayExecutor", "ShardError", "default_shards"]


class ShardError(RibbedError):
    """A shard that died, failed or did not answer in time; ``shard`` and ``tick`` say which and when."""

    def __init__(self, problem: Problem, shard: int, tick: int):
        self.shard, self.tick = shard, tick
        super().__init__(problem)


class ShardActor:
    """The Ray actor around a :class:`~ribbed.scheduler.ray.shard.Shard` (made remote at run time, so
    that importing ribbed does not import Ray)."""

    def __init__(self, layout: ShardLayout, blocks: list[BlockData], inputs: np.ndarray, targets: np.ndarray | None,
                 threads: int):
        configure_torch(threads, 1)
        self.shard = Shard(layout, blocks, inputs, targets)

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def forward(self, level: int, index, *deliveries) -> tuple[dict, dict]:
        return self.shard.forward(level, index, deliveries)

    def backward(self, level: int, answers: dict, backward: bool, learns: bool, *deliveries) -> dict:
        result = self.shard.backward(level, answers, backward, deliveries)
        if learns:
            self.shard.learn({})
        return result

    def timed_forward(self, step: int, level: int, begin, *deliveries) -> tuple[dict, dict]:
        """A timed tick's forward at one step and level; ``begin`` = (index, tick) at its first call."""
        if begin is not None:
            self.shard.timed.begin(*begin)
        return self.shard.timed.forward(step, level, deliveries)

    def timed_backward(self, step: int, level: int, answers, rewards, learns: bool, *deliveries) -> dict:
        """A timed tick's backward at one step and level (``rewards``: R-STDP's, at its first call);
        its last call also learns and returns the tick's spikes per neuron (under ``"spikes"``)."""
        result = self.shard.timed.backward(step, level, answers, deliveries, rewards)
        if learns:
            result["spikes"] = self.shard.timed.learn()
        return result

    def learn(self, credits: dict, context=None) -> float:
        self.shard.learn(credits, context)
        return self.shard.seconds

    def values(self) -> dict:
        return self.shard.values()

    def step_values(self) -> dict:
        return self.shard.step_values()

    def get_state(self) -> dict:
        return self.shard.get_state()

    def set_state(self, state: dict) -> bool:
        self.shard.set_state(state)
        return True

    def seconds(self) -> float:
        return self.shard.seconds


def default_shards(partitions: int) -> int:
    """As many shards as Ray has CPUs (the cores this process can use when Ray is not running), at most
    ``partitions``."""
    import ray

    cpus = ray.cluster_resources().get("CPU", 1) if ray.is_initialized() else available_cores()
    return max(1, min(partitions, int(cpus)))


class RayExecutor(Executor):
    """Runs the tick on shards hosted by Ray actors (see the module docstring)."""

    name = "ray"

    def __init__(self, inputs: ExecutorInputs):
        import ray

        network: Network = inputs.network
        scenario = network.scenario
        backend = scenario.backend
        self.network, self.scenario, self._inputs = network, scenario, inputs
        self.device, self.dtype = torch.device("cpu"), resolve_dtype(scenario)
        self.device_name, self.dtype_name = "cpu", str(self.dtype).removeprefix("torch.")
        self.targets = torch.as_tensor(inputs.train_targets, dtype=self.dtype)
        self.inputs = inputs.train_inputs
        self.loss_name = inputs.loss
        self._timeout = backend.timeout_s
        # The shards, their placement group and a Ray started here go when the executor does,
        # closed or not (held apart from it, so that the finalizer does not keep it alive).
        self._held = {"actors": [], "group": None, "owns_ray": _connect(backend)}
        self._actors: list = self._held["actors"]
        self._release = weakref.finalize(self, _release, self._held)
        self.n_shards = backend.shards or default_shards(backend.partitions)
        self.partitioning: Partitioning = partition_network(network, backend.partitions, backend.split_above,
                                                            self.n_shards)
        self._per_tick = {backward: messages_per_tick(network, backward) for backward in (True, False)}
        self._counts = np.zeros_like(self._per_tick[True])
        self._backward_every = scenario.schedule.backward_every
        self._levels = [level for level, names in enumerate(_level_names(network)) if names]
        self._guided = list(network.guided)
        self._broadcast = bool(network.broadcast_matrices)
        self._shard_readout = self.loss_name == "mse"
        self._mirror_executor: BatchedExecutor | None = None
        self._stale_state = self._stale_values = False  # the mirror lags the shards
        self._dirty = False  # the mirror holds changes the shards have not got
        self._tick_no = 0
        # Time within a tick (docs/semantics.md): a timed scenario runs _timed_tick, step by step.
        self._plan = timed.TimedPlan.of(scenario) if scenario.timed else None
        self._ticks_run = 0  # keys evaluation's draws, as on the batched executor
        self._x: np.ndarray | None = None
        self._answer: torch.Tensor | None = None
        self._outputs: torch.Tensor | None = None
        self._targets: torch.Tensor | None = None
        self.seconds = 0.0  # the driver's wall time in ticks
        self.ticks = 0
        self.neurons, self.clusters = make_views(inputs.host, self, network)
        self.shard_nodes: list[str] = []
        try:
            self._start_shards(ray)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ shards

    def _start_shards(self, ray) -> None:
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        backend = self.scenario.backend
        layout = _shard_layout(self.network, self.partitioning, self.dtype_name, self._plan)
        resources = backend.shard_resources or [{}] * self.n_shards
        bundles = [{"CPU": backend.cpus_per_shard, **extra} for extra in resources]
        group = self._held["group"] = placement_group(bundles, strategy=backend.placement.upper())
        ready, _ = ray.wait([group.ready()], timeout=self._timeout)
        if not ready:
            raise RibbedError(Problem(
                self.scenario.source, "backend.placement",
                f"Ray could not place {self.n_shards} shards ({bundles}) with strategy '{backend.placement}' "
                f"within {self._timeout:g} s: the cluster lacks the CPUs, resources or nodes",
                "use fewer shards, a smaller cpus_per_shard, 'placement: spread', or add nodes"))
        remote = ray.remote(ShardActor)
        inputs = ray.put(np.ascontiguousarray(self.inputs, dtype=self.dtype_name))
        # A loss that sums over output neurons (MSE) is computed by the shards, each for its own
        # output neurons: the driver then never waits between forward and backward.
        targets = ray.put(self.targets.numpy()) if self._shard_readout else None
        for shard in range(self.n_shards):
            blocks = _block_data(self.network, self.partitioning, shard, self.scenario)
            strategy = PlacementGroupSchedulingStrategy(placement_group=group,
                                                        placement_group_bundle_index=shard)
            actor = remote.options(num_cpus=backend.cpus_per_shard, scheduling_strategy=strategy,
                                   max_restarts=0, max_task_retries=0, name=None).remote(
                layout, blocks, inputs, targets, backend.threads_per_shard)
            self._actors.append(actor)
        self._forward_calls = [actor.forward.options(num_returns=2) for actor in self._actors]
        self._timed_forward_calls = [actor.timed_forward.options(num_returns=2) for actor in self._actors]
        #: Per shard, the output population's blocks it computes (it is sent their part of the answer).
        self._output_blocks = [[(b.start, b.stop) for b in self.partitioning.blocks[self.network.output.name]
                                if self.partitioning.shard_of(b) == shard] for shard in range(self.n_shards)]
        #: The Ray node each shard runs on.
        self.shard_nodes = self._get([a.node.remote() for a in self._actors], "start", -1)

    def _get(self, refs: list, stage: str, tick: int) -> list:
        """``ray.get`` with the backend's timeout; a failure names the shard and the tick."""
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

        try:
            return ray.get(refs, timeout=self._timeout)
        except GetTimeoutError:
            _, pending = ray.wait(refs, num_returns=len(refs), timeout=0)
            shard = refs.index(pending[0]) if pending else 0
            raise self._shard_error(shard, tick, f"did not answer within {self._timeout:g} s ({stage})",
                                    "raise backend.timeout_s, or look for a stuck or overloaded node") from None
        except (RayActorError, RayTaskError) as exc:
            shard = self._dead_shard()
            if shard is not None:
                raise self._shard_error(shard, tick, f"stopped ({stage}): its actor died",
                                        "the message log holds every tick before it: continue with "
                                        "'ribbed run --resume RUN_DIR'") from None
            shard = next((i for i, ref in enumerate(refs) if _failed(ref)), 0)
            raise self._shard_error(shard, tick, f"failed ({stage}): {exc}", "") from exc

    def _dead_shard(self) -> int | None:
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        for shard, actor in enumerate(self._actors):
            try:
                ray.get(actor.seconds.remote(), timeout=min(10.0, self._timeout))
            except RayActorError:
                return shard
            except GetTimeoutError:  # busy, not dead
                continue
        return None

    def _shard_error(self, shard: int, tick: int, what: str, fix: str) -> ShardError:
        when = "while starting" if tick < 0 else f"at tick {tick}"
        return ShardError(Problem(self.scenario.source, "backend", f"shard {shard} of {self.n_shards} {what} {when}",
                                  fix), shard, tick)

    def describe(self) -> dict:
        return {"shards": self.n_shards, "shard_nodes": list(self.shard_nodes),
                "partitioning": self.partitioning.report(self.network)}

    def close(self) -> None:
        """Stop the shards (and Ray, when the run started it), after bringing the mirror up to
        date: the executor's state stays readable, and it runs no more ticks."""
        import ray

        if not ray.is_initialized():
            return
        if self._actors:
            try:
                self._sync_state()
            except RibbedError:  # a shard is gone: the mirror keeps what it last had
                pass
        self._release()
        self._stale_state = self._stale_values = self._dirty = False  # nothing left to read from or send to

    def shard_seconds(self) -> list[float]:
        """Each shard's time spent computing so far (the rest of a tick is exchange and waiting)."""
        return self._get([a.seconds.remote() for a in self._actors], "timing", self._tick_no)

    # ------------------------------------------------------------------ the tick

    def tick(self, tick: int, index: np.ndarray) -> TickResult:
        import ray

        began = time.perf_counter()
        if not self._actors:
            raise RibbedError(Problem(self.scenario.source, "backend", "this ray executor was closed",
                                      "build a new model to run more ticks"))
        if self._dirty:
            self._push()
        self._tick_no = tick
        index = np.ascontiguousarray(index, dtype=np.int64)
        self._x = index
        if self._plan is not None:
            return self._timed_tick(tick, index, began)
        actors, network = self._actors, self.network
        forward: dict[int, list] = {}  # per level, the results each shard returns to the driver
        previous: list = []
        for n, level in enumerate(self._levels):
            calls = [forward_call.remote(level, index if n == 0 else None, *_others(previous, i))
                     for i, forward_call in enumerate(self._forward_calls)]
            previous = [to_shards for to_shards, _ in calls]
            forward[level] = [to_driver for _, to_driver in calls]
        output = network.output
        targets = self.targets.index_select(0, torch.from_numpy(index))
        backward = tick % self._backward_every == 0
        if self._shard_readout:
            answers: list = [None] * len(actors)
        else:
            results = self._get(forward[output.level], "forward", tick)
            outputs = _assemble(results, "y", output.name, self.partitioning)
            losses, error = per_sample_loss(self.loss_name, outputs, targets, torch)
            answers = [{start: error[:, start:stop].numpy() for start, stop in blocks} for blocks in self._output_blocks]
            self._answer = error
        backwards: dict[int, list] = {}
        lowest = self._levels[0]
        # Broadcast credit, on a tick without propagated error, needs the task's context.
        broadcast = self._broadcast and not backward
        separate_learn = bool(self._guided) or broadcast
        for level in reversed(self._levels):
            # Without guides or broadcast, a shard learns right after its last backward stage (one call fewer).
            learns = level == lowest and not separate_learn
            previous = backwards[level] = [actor.backward.remote(level, answers[i], backward, learns,
                                                                 *_others(previous, i))
                                           for i, actor in enumerate(actors)]
        if self._shard_readout:
            results = self._get(forward[output.level], "forward", tick)
            outputs = _assemble(results, "y", output.name, self.partitioning)
            losses = _sum_blocks(results, output.name, self.partitioning) / output.size
            self._answer = None  # computed from the outputs when read (tick_values)
        self._outputs, self._targets = outputs, targets
        loss = losses.mean()
        if separate_learn:
            credits = self._guide_stage(tick, forward, backwards, targets, losses) if self._guided else {}
            credit_ref = ray.put(credits)
            context = ray.put(task_context(targets, losses).numpy()) if broadcast else None
            self._get([actor.learn.remote(credit_ref, context) for actor in actors], "learn", tick)
        else:
            self._get(backwards[lowest], "learn", tick)
        for name in self._guided:
            self._mirror.populations[name].guidance.meta_stage(loss)
        self._counts += self._per_tick[backward]
        self._stale_state = self._stale_values = True
        self.changed()
        self.seconds += time.perf_counter() - began
        self.ticks += 1
        return TickResult(loss=loss, outputs=outputs)

    def _timed_tick(self, tick: int, index: np.ndarray, began: float) -> TickResult:
        """A tick over T steps (docs/semantics.md, "Time within a tick"; scheduler/ray/timed.py): every
        shard's forward for each step and level, the readout, every shard's backward for each step
        and level in reverse, the last of which learns.  A timed scenario has no guides, broadcast
        credit or skipped backward (validation refuses them), so nothing else runs on the driver."""
        actors, network, steps = self._actors, self.network, self._plan.steps
        output = network.output
        previous: list = []
        readout: list = []
        for step in range(steps):
            for n, level in enumerate(self._levels):
                begin = (index, tick) if step == 0 and n == 0 else None
                calls = [forward_call.remote(step, level, begin, *_others(previous, i))
                         for i, forward_call in enumerate(self._timed_forward_calls)]
                previous = [to_shards for to_shards, _ in calls]
                if step == steps - 1 and level == output.level:
                    readout = [to_driver for _, to_driver in calls]
        targets = self.targets.index_select(0, torch.from_numpy(index))
        results = self._get(readout, "forward", tick)
        outputs = _assemble(results, "y", output.name, self.partitioning)
        if self._shard_readout:
            answers: list = [None] * len(actors)
            losses = _sum_blocks(results, output.name, self.partitioning) / output.size
            self._answer = None  # computed from the outputs when read (tick_values)
        else:
            losses, error = per_sample_loss(self.loss_name, outputs, targets, torch)
            answers = [{start: error[:, start:stop].numpy() for start, stop in blocks}
                       for blocks in self._output_blocks]
            self._answer = error
        rewards = self._rewards(tick, outputs, targets, losses)
        lowest = self._levels[0]
        for step in reversed(range(steps)):
            for level in reversed(self._levels):
                first = step == steps - 1 and level == self._levels[-1]
                learns = step == 0 and level == lowest
                previous = [actor.timed_backward.remote(step, level, answers[i] if first else None,
                                                        rewards if first else None, learns, *_others(previous, i))
                            for i, actor in enumerate(actors)]
        spikes: dict = {}
        for result in self._get(previous, "learn", tick):
            spikes.update(result["spikes"])
        self._counts += timed.message_counts(self._plan, network, _spikes_by_population(spikes, network,
                                                                                        self.partitioning))
        self._outputs, self._targets = outputs, targets
        self._ticks_run = tick + 1
        self._stale_state = self._stale_values = True
        self.changed()
        self.seconds += time.perf_counter() - began
        self.ticks += 1
        return TickResult(loss=losses.mean(), outputs=outputs)

    def _rewards(self, tick: int, outputs: torch.Tensor, targets: torch.Tensor,
                 losses: torch.Tensor) -> dict[int, np.ndarray]:
        """R-STDP: the task's reward of each sample at its last step, per R-STDP projection (by
        index), computed here as the batched executor does after the readout (it needs the whole
        output); the shards apply it to their rows of the projection ("STDP in a tick")."""
        return {info.index: task_reward(info.learning.stdp.reward, outputs, targets, losses, torch, self._plan.seed,
                                        tick).numpy()
                for info in self.network.projections if info.stdp and info.learning.rule == "r_stdp"}

    def _guide_stage(self, tick: int, forward: dict, backwards: dict, targets: torch.Tensor,
                     losses: torch.Tensor) -> dict[str, np.ndarray | None]:
        """Guided populations consult and train their guides on the driver (a guide serves its
        members wherever they are computed), and say what each neuron learns from."""
        context = task_context(targets, losses)
        credits = {}
        for name in self._guided:
            level = self.network.populations[name].level
            ahead = self._get(forward[level], "forward", tick)
            behind = self._get(backwards[level], "backward", tick)
            population = self._mirror.populations[name]
            population.y = _assemble(ahead, "y", name, self.partitioning)
            population.u = _assemble(ahead, "u", name, self.partitioning)
            population.delta = _assemble(behind, "delta", name, self.partitioning)
            df = population.activation.df(population.u, population.y)
            if population.guidance.guided.identity:
                # Identity features read the outgoing weights as they are before this tick's learn:
                # the shards' weights, brought into the mirror.
                self._sync_state()
                population.guidance.see_weights(self._mirror._weights_of)
            population.guidance.guide_stage(tick, population.u, population.y, df, context, population.delta)
            credit = population.guidance.credit(population.delta)
            credits[name] = None if credit is None else credit.numpy()
        return credits

    # ------------------------------------------------------------------ the mirror on the driver

    @property
    def _mirror(self) -> BatchedExecutor:
        if self._mirror_executor is None:
            self._mirror_executor = BatchedExecutor(self._inputs, device=self.device, views=False)
        return self._mirror_executor

    def _sync_values(self) -> None:
        """The last tick's u, y, delta and credit of every population, into the mirror."""
        if not self._stale_values:
            return
        mirror = self._mirror
        values: dict = {}
        for part in self._get([a.values.remote() for a in self._actors], "values", self._tick_no):
            values.update(part)
        last: dict[str, dict] = {}
        for name, blocks in self.partitioning.blocks.items():
            last[name] = {}
            for key in ("u", "y", "delta", "credit", "membrane", "refractory"):
                parts = [values[(name, b.start)][key] for b in blocks]
                last[name][key] = None if any(p is None for p in parts) else torch.from_numpy(np.concatenate(parts, axis=1))
        entry = values.get((self.network.input.name, 0))  # a timed tick's input: its last step
        if entry is not None:
            last[self.network.input.name] = {key: torch.from_numpy(np.array(value)) for key, value in entry.items()}
        else:
            x = torch.as_tensor(self.inputs[self._x], dtype=self.dtype)
            last[self.network.input.name] = {"u": x, "y": x}
        if self._answer is None and self._outputs is not None:
            self._answer = per_sample_loss(self.loss_name, self._outputs, self._targets, torch)[1]
        mirror.set_tick_values(last, self._answer)
        self._stale_values = False

    def _sync_state(self) -> None:
        """The shards' weights, biases and optimizer state (and the last tick's values), into the mirror."""
        if not self._stale_state:
            return
        self._sync_values()
        mirror = self._mirror
        blocks: dict = {}
        carried: dict = {}
        for part in self._get([a.get_state.remote() for a in self._actors], "state", self._tick_no):
            blocks.update(part["blocks"])
            carried.update(part.get("carried", {}))
        for name, population_blocks in self.partitioning.blocks.items():
            population = mirror.populations[name]
            parts = [blocks[(name, b.start)] for b in population_blocks]
            population.bias.copy_(torch.from_numpy(np.concatenate([p["bias"] for p in parts])))
            restore_optimizer(population.bias_optimizer, _concatenate([p["bias_optimizer"] for p in parts]))
            if population.dfa is not None:
                population.dfa.copy_(torch.from_numpy(np.concatenate([p["dfa"] for p in parts])))
            for k, synapses in enumerate(population.incoming):
                pieces = [p["synapses"][k] for p in parts]
                synapses.weights.copy_(torch.from_numpy(np.concatenate([s["weights"] for s in pieces])))
                if synapses.feedback is not None:
                    synapses.feedback.copy_(torch.from_numpy(np.concatenate([s["feedback"] for s in pieces])))
                restore_optimizer(synapses.optimizer, _concatenate([s["optimizer"] for s in pieces]))
        if self._plan is not None and self._plan.carry:
            _join_carried(mirror, carried, self.partitioning)
        mirror.set_message_counts(self._counts)
        mirror.changed()
        self._stale_state = False

    def _push(self) -> None:
        """The mirror's state (changed on the driver) to the shards."""
        mirror = self._mirror
        states = [{"blocks": {}, "last": {}} for _ in self._actors]
        for name, population_blocks in self.partitioning.blocks.items():
            population = mirror.populations[name]
            bias_state = collect_optimizer(population.bias_optimizer)
            synapse_states = [(s, collect_optimizer(s.optimizer)) for s in population.incoming]
            for block in population_blocks:
                rows = slice(block.start, block.stop)
                entry = {
                    "bias": population.bias[rows].numpy().copy(),
                    "bias_optimizer": _slice(bias_state, rows),
                    "dfa": None if population.dfa is None else population.dfa[rows].numpy().copy(),
                    "synapses": [],
                }
                for synapses, state in synapse_states:
                    part = row_slice(synapses.layout.layout, synapses.layout.row_bounds, block.start, block.stop)
                    entry["synapses"].append({
                        "weights": synapses.weights[part].numpy().copy(),
                        "feedback": None if synapses.feedback is None else synapses.feedback[part].numpy().copy(),
                        "optimizer": _slice(state, part),
                    })
                states[self.partitioning.shard_of(block)]["blocks"][(name, block.start)] = entry
        if self._plan is not None and self._plan.carry:
            _split_carried(mirror, self.partitioning, states)
        for name in mirror.delayed_sources:
            y = mirror.populations[name].y
            if y is not None:
                for state in states:
                    state["last"][name] = y.numpy().copy()
        self._get([a.set_state.remote(state) for a, state in zip(self._actors, states)], "state", self._tick_no)
        self._dirty = False

    # ------------------------------------------------------------------ evaluation and state access

    def predict(self, inputs: np.ndarray, keep: Sequence[str] = ()) -> Prediction:
        self._sync_state()
        self._mirror._ticks_run = self._ticks_run  # a timed evaluation's draws are keyed by the ticks run
        return self._mirror.predict(inputs, keep)

    def held_out_credit(self, inputs: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
        self._sync_state()
        return self._mirror.held_out_credit(inputs, targets)

    def read(self, name: str, where: str):
        if name in _TICK_VALUES:
            self._sync_values()
        elif name not in EVALUATION_FIELDS:
            self._sync_state()
        return self._mirror.read(name, where)

    def write(self, name: str, where: str, values) -> None:
        self._sync_state()
        self._mirror.write(name, where, values)
        if name not in EVALUATION_FIELDS:
            self._dirty = True
        self.changed()

    @property
    def message_counts(self) -> np.ndarray:
        return self._counts.copy()

    def tick_values(self, activity: bool, messages: bool) -> dict:
        if not (activity or messages):
            return {}
        self._sync_values()
        if self._plan is not None:
            self._sync_steps()
        return self._mirror.tick_values(activity, messages)

    def _sync_steps(self) -> None:
        """A timed tick's per-step outputs and deltas of every population (the shards' blocks side
        by side), into the mirror, for the log (docs/semantics.md, "The state logged")."""
        values: dict = {}
        for part in self._get([a.step_values.remote() for a in self._actors], "step values", self._tick_no):
            values.update(part)
        if not values:
            return
        outs: dict[str, list] = {}
        deltas: dict[str, list | None] = {}
        for name in self._mirror.populations:
            starts = [0] if name == self.network.input.name else [b.start for b in self.partitioning.blocks[name]]
            parts = [values[(name, start)] for start in starts]
            out = np.concatenate([p["out"] for p in parts], axis=2)
            outs[name] = [torch.from_numpy(out[:, s]) for s in range(out.shape[1])]
            if any(p["delta"] is None for p in parts):
                deltas[name] = None
            else:
                delta = np.concatenate([p["delta"] for p in parts], axis=2)
                deltas[name] = [torch.from_numpy(delta[:, s]) for s in range(delta.shape[1])]
        self._mirror._step_outs, self._mirror._step_deltas = outs, deltas

    def state(self) -> tuple[dict, dict]:
        self._sync_state()
        return self._mirror.state()

    def load_state(self, values: dict, kinds: dict) -> None:
        self._sync_state()
        self._mirror.load_state(values, kinds)
        self._counts = self._mirror.message_counts
        self._dirty = True
        self.changed()


_LOGGER = logging.getLogger(__name__)

#: Rows of the state table that the last tick computed (read from the shards' last values).
_TICK_VALUES = frozenset({"u", "y", "membrane", "refractory", "delta", "credit", "guidance", "alpha", "cluster",
                          "guide_paths", "guide_alpha", "lineage", "genomes", "meta_group", "group_alpha",
                          "hierarchy"})


# ---------------------------------------------------------------------- helpers


def _connect(backend) -> bool:
    """Connect to the backend's Ray cluster, or start a quiet local instance; True when started here."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR,
             "configure_logging": True}
    if backend.address:
        ray.init(address=backend.address, **quiet)
        _quiet_raylet_messages()
        return True
    shards = backend.shards or max(1, min(backend.partitions, available_cores()))
    cpus = max(available_cores(), math.ceil(shards * backend.cpus_per_shard))
    store = None if backend.object_store_mb is None else backend.object_store_mb * 2**20
    ray.init(num_cpus=cpus, object_store_memory=store, **quiet)
    _quiet_raylet_messages()
    return True


def _quiet_raylet_messages() -> None:
    """Send the messages Ray's raylet pushes to the driver (such as "A worker died or was killed
    ...", with the worker's address) to the ``ribbed.scheduler.ray`` logger instead of stdout.

    Ray prints them from a thread of its own, whatever ``log_to_driver`` says, as coloured raw
    text after the run has already reported the failure as a :class:`ShardError` naming the
    shard and the tick.  They stay available at INFO level for whoever turns that logger on."""
    from ray._private import worker

    original = getattr(worker, "print_to_stdstream", None)
    if original is None or getattr(original, "ribbed_quiet", False):
        return

    def print_to_stdstream(data, ignore_prefix: bool):
        if isinstance(data, dict) and data.get("pid") == "raylet":
            for line in data.get("lines", ()):
                _LOGGER.info("raylet: %s", line)
            return
        original(data, ignore_prefix)

    print_to_stdstream.ribbed_quiet = True
    worker.print_to_stdstream = print_to_stdstream


def _release(held: dict) -> None:
    """Kill the shards, remove their placement group, and stop Ray if the run started it."""
    import ray

    if not ray.is_initialized():
        return
    for actor in held["actors"]:
        try:
            ray.kill(actor)
        except Exception:  # already gone
            pass
    held["actors"].clear()
    if held["group"] is not None:
        from ray.util.placement_group import remove_placement_group

        try:
            remove_placement_group(held["group"])
        except Exception:  # the cluster is gone
            pass
        held["group"] = None
    if held["owns_ray"]:
        ray.shutdown()
        held["owns_ray"] = False


def _level_names(network: Network) -> list[list[str]]:
    return [[p.name for p in level if p.role != "input"] for level in network.levels]


def _shard_layout(network: Network, partitioning: Partitioning, dtype: str,
                  plan: timed.TimedPlan | None = None) -> ShardLayout:
    sends_error: dict[str, list[int]] = {name: [] for name in network.populations}
    for projection in network.projections:
        if projection.sends_error:
            sends_error[projection.pre.name].append(projection.index)
    guided = list(network.guided)
    presynaptic = {p.pre.name for p in network.projections if p.pre.role != "input"}
    carriers: dict[str, list[int]] = {}
    for projection in network.projections:
        if carries_over_steps(projection):
            carriers.setdefault(projection.pre.name, []).append(projection.index)
    return ShardLayout(
        dtype=dtype, populations=dict(network.populations), levels=_level_names(network),
        blocks={name: [(b.start, b.stop) for b in blocks] for name, blocks in partitioning.blocks.items()},
        sends_error=sends_error, projection_posts={p.index: p.post.name for p in network.projections},
        delayed_sources=sorted({p.pre.name for p in network.projections if p.delayed}), guided=guided,
        share_y=sorted(presynaptic), report_y=[network.output.name, *guided], share_u=guided,
        share_delta=guided + ([network.output.name] if network.dfa_matrices else []),
        timed=plan, carriers=carriers, delayed={p.index: p.delayed for p in network.projections})


def _block_data(network: Network, partitioning: Partitioning, shard: int, scenario) -> list[BlockData]:
    """Each of the shard's blocks with its rows of every incoming projection, DFA matrix and
    broadcast-credit matrix."""
    threshold = scenario.backend.sparse_threshold
    data = []
    for block in partitioning.shard_blocks(shard):
        info = network.populations[block.population]
        post = block_population(info, block.start, block.stop)
        incoming = [(block_projection(p, block.start, block.stop, post),
                     choose_layout(p, scenario.projections[p.index].storage, threshold))
                    for p in network.projections if p.post.name == block.population]
        dfa = network.dfa_matrices.get(block.population)
        broadcast = network.broadcast_matrices.get(block.population)
        data.append(BlockData(block, incoming, None if dfa is None else dfa[block.start:block.stop],
                              None if broadcast is None else broadcast[block.start:block.stop]))
    return data


def _others(refs: list, i: int) -> list:
    return [ref for j, ref in enumerate(refs) if j != i]


def _failed(ref) -> bool:
    import ray

    try:
        ray.get(ref, timeout=0)
    except Exception:
        return True
    return False


def _assemble(results: list[dict], kind: str, name: str, partitioning: Partitioning) -> torch.Tensor | None:
    """A whole population's values of ``kind`` from the shards' results (None if any block has none)."""
    found = {}
    for result in results:
        found.update(result.get(kind, {}))
    parts = [found.get((name, block.start)) for block in partitioning.blocks[name]]
    if any(p is None for p in parts):
        return None
    return torch.from_numpy(np.concatenate(parts, axis=1))


def _spikes_by_population(spikes: dict, network: Network, partitioning: Partitioning) -> dict[str, np.ndarray]:
    """Each spiking population's spikes per neuron, from the shards' per-block counts (the input's,
    under a spiking encoding, as every shard counts it)."""
    whole = {}
    name = network.input.name
    if (name, 0) in spikes:
        whole[name] = spikes[(name, 0)]
    for name, blocks in partitioning.blocks.items():
        if (name, blocks[0].start) in spikes:
            whole[name] = np.concatenate([spikes[(name, b.start)] for b in blocks])
    return whole


def _sum_blocks(results: list[dict], name: str, partitioning: Partitioning) -> torch.Tensor:
    """Each sample's sum over the blocks' partial sums of the loss, added in partition order."""
    found = {}
    for result in results:
        found.update(result.get("loss", {}))
    total = None
    for block in partitioning.blocks[name]:
        part = torch.from_numpy(np.array(found[block.start]))
        total = part if total is None else total.add_(part)
    return total


def _join_carried(mirror: BatchedExecutor, carried: dict, partitioning: Partitioning) -> None:
    """run.carry_state: the shards' carried state (per block, :meth:`TimedStages.carried`) as the
    mirror's, so that a snapshot holds it as the batched executor's does: firing states and
    postsynaptic traces joined along the neurons, eligibility along the synapses (a block's rows
    are a run of the canonical order), the presynaptic traces (every block keeps the same copy)
    taken from the first block."""
    firing: dict | None = {}
    for name, blocks in partitioning.blocks.items():
        parts = [carried[(name, b.start)] for b in blocks]
        states = [p["firing"] for p in parts]
        if firing is not None and all(s is not None for s in states):
            firing[name] = FiringState(*[None if states[0][k] is None else
                                         torch.from_numpy(np.concatenate([s[k] for s in states], axis=1))
                                         for k in range(len(states[0]))])
        else:
            firing = None
        for k, synapses in enumerate(mirror.populations[name].incoming):
            if synapses.stdp is None:
                continue
            pieces = [p["stdp"][k] for p in parts]
            if any(piece is None for piece in pieces):
                synapses.stdp.load(None)
                continue
            eligibility = None if pieces[0][2] is None else np.concatenate([p[2] for p in pieces], axis=1)
            synapses.stdp.load([pieces[0][0], np.concatenate([p[1] for p in pieces], axis=1), eligibility])
    mirror.carried = firing


def _split_carried(mirror: BatchedExecutor, partitioning: Partitioning, states: list[dict]) -> None:
    """The mirror's carried state (loaded from a snapshot, or as the shards left it) cut into each
    shard's blocks, under ``"carried"`` of the state :meth:`Shard.set_state` takes."""
    for state in states:
        state["carried"] = {}
    for name, blocks in partitioning.blocks.items():
        population = mirror.populations[name]
        whole = None if mirror.carried is None else mirror.carried.get(name)
        for block in blocks:
            columns = slice(block.start, block.stop)
            firing = None if whole is None else [None if v is None else v[:, columns].numpy().copy() for v in whole]
            stdp = []
            for synapses in population.incoming:
                values = None if synapses.stdp is None else synapses.stdp.carried()
                if values is None:
                    stdp.append(None)
                    continue
                lo, hi = (int(i) for i in np.searchsorted(synapses.info.post_idx, [block.start, block.stop]))
                stdp.append([np.array(values[0]), np.array(values[1][:, columns]),
                             None if values[2] is None else np.array(values[2][:, lo:hi])])
            states[partitioning.shard_of(block)]["carried"][(name, block.start)] = {"firing": firing, "stdp": stdp}


def _concatenate(states: list) -> tuple[dict, dict] | None:
    """Blocks' optimizer states as one: tensors joined along their first axis (rows or synapses),
    counters taken from the first block (every block steps together)."""
    if not states or states[0] is None:
        return None
    values, kinds = {}, states[0][1]
    for key, kind in kinds.items():
        parts = [s[0][key] for s in states]
        values[key] = np.concatenate(parts) if kind == "tensor" else parts[0]
    return values, kinds


def _slice(state: tuple[dict, dict] | None, part: slice) -> tuple[dict, dict] | None:
    if state is None:
        return None
    values, kinds = state
    return {key: value[part].copy() if kinds[key] == "tensor" else value for key, value in values.items()}, kinds
