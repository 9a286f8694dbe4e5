"""The batched executor: the reference executor's tick as tensor operations in torch.

Populations are (batch, size) tensors, projections dense or sparse matrices
(:mod:`ribbed.scheduler.batched.projection_tensors`), optimizer state one tensor per projection.  A
stage that the reference executor runs neuron by neuron runs here population by population,
with the same arithmetic: the messages of a stage become the matrix products that sum them.
Nothing in a tick loops over neurons or synapses in Python, and the training data stays on
the device.  Messages are not built one by one; the executor counts the ones the tick implies
(:func:`~ribbed.scheduler.message_counts.messages_per_tick`).

See docs/semantics.md for the tick, and how closely the executors agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from ribbed.agents.firing import FiringState
from ribbed.agents.guides import task_context
from ribbed.agents.rules import broadcast_credit
from ribbed.agents.state import state_field
from ribbed.agents.view import make_views
from ribbed.environment.losses import per_sample_loss
from ribbed.scheduler.base import STEP_SAMPLES, Executor, ExecutorInputs, Prediction, TickResult
from ribbed.scheduler.batched.guidance import BatchedGuidance
from ribbed.scheduler.batched.learning import learn
from ribbed.scheduler.batched.populations import PopulationTensors, SynapseTensors
from ribbed.scheduler.batched.projection_tensors import make_projection_tensors
from ribbed.scheduler.batched import timed
from ribbed.scheduler.plasticity import projection_stdp, task_reward
from ribbed.scheduler.device import resolve_device, resolve_dtype
from ribbed.scheduler.state import collect_state, restore_state
from ribbed.scheduler.message_counts import messages_per_tick

if TYPE_CHECKING:
    from ribbed.environment.network import Network

__all__ = ["BatchedExecutor", "EVALUATION_FIELDS"]

#: Per-neuron values of the last evaluation, kept for reads (by agent id).
EVALUATION_FIELDS = ("activation_mean", "activation_std", "firing_rate")

#: Evaluation runs the held-out set in chunks of at most this many neuron activations.
PREDICT_CHUNK = 2**24


class BatchedExecutor(Executor):
    """Runs the tick as tensor operations, on the CPU or a GPU (see the module docstring)."""

    name = "batched"
    snapshot_attrs = ("projections", "populations", "_counts")

    def __init__(self, inputs: ExecutorInputs, device: torch.device | None = None, views: bool = True):
        """``device`` overrides the scenario's; without ``views`` no agent views are made (for an
        executor that holds state on another executor's behalf, whose views those are)."""
        network: Network = inputs.network
        scenario = network.scenario
        self.network = network
        self.device, self.dtype = device or resolve_device(scenario), resolve_dtype(scenario)
        self.device_name, self.dtype_name = str(self.device), str(self.dtype).removeprefix("torch.")
        self.inputs = torch.as_tensor(inputs.train_inputs, dtype=self.dtype, device=self.device)
        self.targets = torch.as_tensor(inputs.train_targets, dtype=self.dtype, device=self.device)
        self.loss_name = inputs.loss
        backend = scenario.backend
        self.populations = {name: PopulationTensors(info, self.device, self.dtype) for name, info in network.populations.items()}
        self.projections: list[SynapseTensors] = []
        for info, spec in zip(network.projections, scenario.projections):
            layout = make_projection_tensors(info, spec.storage, backend.sparse_threshold, self.device, self.dtype)
            synapses = SynapseTensors(info, layout)
            if info.stdp:  # a complete dense matrix is its synapses in canonical order
                synapses.stdp = projection_stdp(info, layout.layout == "dense" and layout.mask is None, self.device)
            self.projections.append(synapses)
            post = self.populations[info.post.name]
            post.incoming.append(synapses)
            if synapses.optimizer is not None:
                post.plastic.append(synapses)
            if info.sends_error:
                self.populations[info.pre.name].sends_error.append(synapses)
            if info.sanger:
                post.sanger.append(synapses)
        for name, matrix in network.dfa_matrices.items():
            self.populations[name].dfa = torch.as_tensor(matrix, dtype=self.dtype, device=self.device)
        for name, matrix in network.broadcast_matrices.items():
            self.populations[name].broadcast = torch.as_tensor(matrix, dtype=self.dtype, device=self.device)
        self.delayed_sources = sorted({p.info.pre.name for p in self.projections if p.info.delayed})
        self._levels = [[self.populations[p.name] for p in level if p.role != "input"] for level in network.levels]
        self._output = self.populations[network.output.name]
        self._input = self.populations[network.input.name]
        self._per_tick = {backward: messages_per_tick(network, backward) for backward in (True, False)}
        self._counts = np.zeros_like(self._per_tick[True])
        self._backward_every = scenario.schedule.backward_every
        for name, guided in network.guided.items():
            self.populations[name].guidance = BatchedGuidance(guided, inputs.guide_estimators.get(name),
                                                              self.device, self.dtype)
        self._guided = [self.populations[name] for name in network.guided]
        self.evaluation = {key: np.full(network.n_neurons, np.nan) for key in EVALUATION_FIELDS}
        self._answer: torch.Tensor | None = None
        for population in self.populations.values():
            counts = sum(s.layout.row_counts for s in population.plastic)
            population.plastic_counts = torch.as_tensor(counts, dtype=self.dtype, device=self.device)
        # Time within a tick (docs/semantics.md): a timed scenario runs scheduler/batched/timed.py's
        # tick; an untimed one (one step, rate everywhere) the tick below, unchanged.
        self._plan = timed.TimedPlan.of(scenario) if scenario.timed else None
        self._carriers = timed.carriers(self)
        self.carried = None  # run.carry_state: the firing state the last training tick left, per population
        if scenario.run.carry_state:  # ... which a snapshot must then hold, with the STDP traces
            self.snapshot_attrs = type(self).snapshot_attrs + ("carried_state",)
        self._ticks_run = 0
        self._step_outs: dict | None = None
        self._step_deltas: dict = {}
        self.neurons, self.clusters = make_views(inputs.host, self, network) if views else ([], [])

    @property
    def carried_state(self) -> dict:
        """run.carry_state: the firing state and STDP traces the next training tick continues from,
        as plain values for a snapshot (population and projection names behind a '_')."""
        firing = None if self.carried is None else {f"_{k}": list(v) for k, v in self.carried.items()}
        return {"firing": firing, "stdp": {f"_{s.info.name}": s.stdp.carried() for s in self.projections
                                           if s.stdp is not None}}

    @carried_state.setter
    def carried_state(self, values: dict) -> None:
        firing = values.get("firing")
        self.carried = None if firing is None else {k[1:]: FiringState(*v) for k, v in firing.items()}
        for synapses in self.projections:
            if synapses.stdp is not None:
                synapses.stdp.load((values.get("stdp") or {}).get(f"_{synapses.info.name}"))

    # ------------------------------------------------------------------ the tick

    def tick(self, tick: int, index: np.ndarray) -> TickResult:
        index = torch.from_numpy(np.ascontiguousarray(index))
        if self.device.type == "cuda":  # from pinned memory, so the copy does not wait for the GPU
            index = index.pin_memory().to(self.device, non_blocking=True)
        with torch.no_grad():
            result = self._tick(tick, index) if self._plan is None else self._timed_tick(tick, index)
        self._ticks_run = tick + 1
        self.changed()
        return result

    def _timed_tick(self, tick: int, index: torch.Tensor) -> TickResult:
        """A tick over T steps (docs/semantics.md, "Time within a tick"): forward step by step,
        the readout, backprop through the steps by hand, one learn step on the sums over steps."""
        plan = self._plan
        x = self.inputs.index_select(0, index)
        targets = self.targets.index_select(0, index)
        batch, steps = x.shape[0], plan.steps
        records = timed.run_steps(self, plan, x, ("", tick), record=True)
        outputs = timed.readout(plan, records[self._output.info.name])
        losses, error = per_sample_loss(self.loss_name, outputs, targets, torch)
        self._answer = error
        loss = losses.mean()
        for synapses in self.projections:  # R-STDP: the task's reward at the sample's last step
            if synapses.stdp is not None and synapses.stdp.reward_params is not None:
                kind = synapses.info.learning.stdp.reward
                timed.stdp_reward(synapses, task_reward(kind, outputs, targets, losses, torch, plan.seed, tick))
        deltas = timed.backward_steps(self, plan, records, error)
        self._input.u = self._input.y = records[self._input.info.name][-1].out
        outputs_by_step = {name: [r.out for r in steps] for name, steps in records.items()}
        for level in self._levels:
            for population in level:
                last = records[population.info.name][-1]
                population.u, population.y = last.u, last.out
                timed.learn_over_steps(population, deltas.get(population.info.name), outputs_by_step, batch, steps,
                                       self._learn)
        self._counts += timed.message_counts(plan, self.network, timed.spike_counts(plan, records))
        # For the log (docs/semantics.md, "The state logged"): what each population emitted, and its
        # delta, at every step (batch, steps, size); references, stacked only when the log asks.
        self._step_outs = {name: [r.out for r in per_step] for name, per_step in records.items()}
        self._step_deltas = {name: deltas.get(name) for name in self.populations}
        return TickResult(loss=loss, outputs=outputs)

    def _tick(self, tick: int, index: torch.Tensor) -> TickResult:
        x = self.inputs.index_select(0, index)
        targets = self.targets.index_select(0, index)
        batch = x.shape[0]
        for name in self.delayed_sources:
            population = self.populations[name]
            y = population.y
            population.previous = (
                y if y is not None and y.shape[0] == batch
                else torch.zeros(batch, population.info.size, dtype=self.dtype, device=self.device)
            )

        self._forward(x)

        # readout: the task's loss and its answer e = B dL/dy.
        outputs = self._output.y
        losses, error = per_sample_loss(self.loss_name, outputs, targets, torch)
        self._answer = error
        loss = losses.mean()
        backward = tick % self._backward_every == 0
        self._backward(error, backward)

        # guide: guided populations consult and train their guides; without propagated error,
        # populations with broadcast credit get the task's context.
        broadcast = not backward and bool(self.network.broadcast_matrices)
        if self._guided or broadcast:
            context = task_context(targets, losses)
        for population in self._guided:
            population.guidance.see_weights(self._weights_of)
            population.guidance.guide_stage(tick, population.u, population.y,
                                            population.activation.df(population.u, population.y), context,
                                            population.delta)

        # learn.
        for level in self._levels:
            for population in level:
                population.credit = (population.delta if population.guidance is None
                                     else population.guidance.credit(population.delta))
                if broadcast and population.broadcast is not None:
                    population.credit = broadcast_credit(population.activation.df(population.u, population.y),
                                                         context, population.broadcast)
                self._learn(population, batch)

        # meta: alpha for the next tick.
        for population in self._guided:
            population.guidance.meta_stage(loss)
        self._counts += self._per_tick[backward]
        return TickResult(loss=loss, outputs=outputs)

    def _forward(self, x: torch.Tensor) -> None:
        """sense and forward, level by level (cycle-closing inputs from ``previous``)."""
        batch = x.shape[0]
        self._input.u = self._input.y = x
        for level in self._levels:
            for population in level:
                u = population.bias.expand(batch, -1).clone()
                for synapses in population.incoming:
                    pre = self.populations[synapses.info.pre.name]
                    synapses.x = pre.previous if synapses.info.delayed else pre.y
                    synapses.layout.forward(synapses.x, u, synapses.weights)
                population.u, population.y = u, population.activation.f(u)

    def _backward(self, error: torch.Tensor, backward: bool) -> None:
        """backward, in reverse level order; on a tick without propagated error
        (schedule.backward_every) only the output population takes the task's answer."""
        output_level = self.network.output.level
        for level in reversed(self._levels):
            for population in level:
                population.delta = None
                info = population.info
                if not info.needs_credit or not (backward or population is self._output):
                    continue
                if population.dfa is not None:
                    # The output's delta reaches a DFA population only if the output acted at a
                    # higher level (messages of a level are delivered after it).
                    source = self._output.delta if output_level > info.level else None
                    total = (torch.zeros_like(population.u) if source is None
                             else torch.mm(source, population.dfa.T))
                else:
                    total = error.clone() if population is self._output else torch.zeros_like(population.u)
                    for synapses in population.sends_error if backward else ():
                        matrix = synapses.weights if synapses.feedback is None else synapses.feedback
                        post = self.populations[synapses.info.post.name]
                        synapses.layout.backward(post.delta, matrix, total)
                population.delta = total.mul_(population.activation.df(population.u, population.y))

    def _learn(self, population: PopulationTensors, batch: int) -> None:
        learn(population, batch, self.dtype)

    # ------------------------------------------------------------------ evaluation

    def predict(self, inputs: np.ndarray, keep: Sequence[str] = ()) -> Prediction:
        if self._plan is not None:
            return self._timed_predict(inputs, keep)
        samples = inputs.shape[0]
        chunk = max(1, min(samples, PREDICT_CHUNK // max(1, self.network.n_neurons)))
        outputs, count = [], 0
        kept: dict[str, list[np.ndarray]] = {}
        mean = m2 = None
        for population in self._guided:
            population.guidance.see_weights(self._weights_of)
        with torch.no_grad():
            for start in range(0, samples, chunk):
                x = torch.as_tensor(inputs[start:start + chunk], dtype=self.dtype, device=self.device)
                activations = self._forward_only(x)
                outputs.append(activations[self._output.info.name].cpu().numpy())
                for name in keep:
                    kept.setdefault(name, []).append(activations[name].cpu().numpy().astype(np.float64))
                values = torch.cat([activations[name] for name in self.populations], dim=1).to(torch.float64)
                n = values.shape[0]
                part_var, part_mean = torch.var_mean(values, dim=0, correction=0)
                if mean is None:
                    mean, m2 = part_mean, part_var * n
                else:  # Chan et al.'s pairwise combination of means and sums of squares
                    diff = part_mean - mean
                    mean = mean + diff * (n / (count + n))
                    m2 = m2 + part_var * n + diff * diff * (count * n / (count + n))
                count += n
        mean = mean.cpu().numpy()
        # Every neuron follows the rate policy: what it emits is its activation.
        return Prediction(outputs=np.concatenate(outputs).astype(np.float64), activation_mean=mean,
                          activation_std=torch.sqrt(m2 / count).cpu().numpy(),
                          activations={name: np.concatenate(parts) for name, parts in kept.items()},
                          firing_rate=mean.copy())

    def _timed_predict(self, inputs: np.ndarray, keep: Sequence[str]) -> Prediction:
        """Evaluation over T steps, the held-out set in one batch (its draws are keyed by the ticks
        run, one array for the whole set); a neuron's activation is what it emitted per step on
        average, its firing rate too (spikes per step for spiking policies)."""
        plan = self._plan
        with torch.no_grad():
            x = torch.as_tensor(inputs, dtype=self.dtype, device=self.device)
            records = timed.run_steps(self, plan, x, ("-eval", self._ticks_run), record=False)
            outputs = timed.readout(plan, records[self._output.info.name])
            per_step = {name: torch.stack([r.out for r in records[name]]).mean(0).to(torch.float64)
                        for name in self.populations}
            steps = {name: torch.stack([r.out[:STEP_SAMPLES] for r in records[name]], dim=1).cpu().numpy()
                     .astype(np.float64) for name in keep}
            values = torch.cat([per_step[name] for name in self.populations], dim=1)
            var, mean = torch.var_mean(values, dim=0, correction=0)
        mean = mean.cpu().numpy()
        return Prediction(outputs=outputs.cpu().numpy().astype(np.float64), activation_mean=mean,
                          activation_std=torch.sqrt(var).cpu().numpy(),
                          activations={name: per_step[name].cpu().numpy() for name in keep},
                          firing_rate=mean.copy(), steps=steps)

    def _weights_of(self, projection) -> np.ndarray:
        """A projection's weights in canonical order (what identity features read)."""
        return self.read("weights", projection.name)

    def held_out_credit(self, inputs: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
        """For each guided population, per neuron, sums over the samples of (guidance - credit)^2,
        credit and credit^2, and the count (shape ``(4, size)``), for ``inputs`` (the true credit of a tick with
        propagated error and no learning; cycle-closing inputs read as 0).  The tick's state is
        left as it was."""
        if not self._guided:
            return {}
        saved = {name: (p.u, p.y, p.delta, p.previous, [s.x for s in p.incoming])
                 for name, p in self.populations.items()}
        samples = inputs.shape[0]
        chunk = max(1, min(samples, PREDICT_CHUNK // max(1, self.network.n_neurons)))
        sums = {p.info.name: torch.zeros(4, p.info.size, dtype=torch.float64, device=self.device)
                for p in self._guided}
        for population in self._guided:
            population.guidance.see_weights(self._weights_of)
        with torch.no_grad():
            for start in range(0, samples, chunk):
                x = torch.as_tensor(inputs[start:start + chunk], dtype=self.dtype, device=self.device)
                t = torch.as_tensor(targets[start:start + chunk], dtype=self.dtype, device=self.device)
                for name in self.delayed_sources:
                    population = self.populations[name]
                    population.previous = torch.zeros(x.shape[0], population.info.size, dtype=self.dtype,
                                                      device=self.device)
                self._forward(x)
                losses, error = per_sample_loss(self.loss_name, self._output.y, t, torch)
                self._backward(error, True)
                context = task_context(t, losses)
                for population in self._guided:
                    credit = population.delta.to(torch.float64)
                    guidance = population.guidance.predict(population.u, population.y,
                                                           population.activation.df(population.u, population.y), context)
                    rows = torch.full_like(credit[0], float(credit.shape[0]))
                    sums[population.info.name] += torch.stack([((guidance.to(torch.float64) - credit) ** 2).sum(0),
                                                               credit.sum(0), (credit * credit).sum(0), rows])
        for name, (u, y, delta, previous, xs) in saved.items():
            population = self.populations[name]
            population.u, population.y, population.delta, population.previous = u, y, delta, previous
            for synapses, x in zip(population.incoming, xs):
                synapses.x = x
        return {name: values.cpu().numpy() for name, values in sums.items()}

    def _forward_only(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Activations of every population for ``x``, cycle-closing inputs read as zero."""
        batch = x.shape[0]
        values = {self._input.info.name: x}
        for level in self._levels:
            for population in level:
                u = population.bias.expand(batch, -1).clone()
                for synapses in population.incoming:
                    if not synapses.info.delayed:
                        synapses.layout.forward(values[synapses.info.pre.name], u, synapses.weights)
                values[population.info.name] = population.activation.f(u)
        return values

    # ------------------------------------------------------------------ state access

    def read(self, name: str, where: str):
        field = state_field(name)
        if field.where == "projection":
            synapses = self._projection(where)
            if name == "optimizer":
                return None if synapses.optimizer is None else {
                    key: value if isinstance(value, int) else synapses.layout.canonical(value)
                    for key, value in synapses.optimizer.state().items()}
            values = getattr(synapses, name)
            return None if values is None else synapses.layout.canonical(values)
        population = self.populations[where]
        info = population.info
        if name in EVALUATION_FIELDS:
            return self.evaluation[name][info.start:info.start + info.size].copy()
        if name == "bias_optimizer":
            optimizer = population.bias_optimizer
            return None if optimizer is None else {key: value if isinstance(value, int) else _numpy(value)
                                                   for key, value in optimizer.state().items()}
        if name == "in_degree":
            return np.asarray(sum((s.layout.row_counts for s in population.incoming), np.zeros(info.size, np.int64)),
                              dtype=np.int64)
        if name == "weight_norm":
            squares = torch.zeros(info.size, dtype=torch.float64, device=self.device)
            for synapses in population.incoming:
                squares += synapses.layout.row_sum(synapses.weights.to(torch.float64) ** 2)
            return torch.sqrt(squares).cpu().numpy()
        if name in ("alpha", "cluster", "guidance", "guide_paths", "guide_alpha", "lineage", "genomes", "meta_group",
                    "group_alpha", "hierarchy"):
            guidance = population.guidance
            if guidance is None:
                return np.full(info.size, np.nan) if name == "alpha" else None
            if name in ("meta_group", "group_alpha", "hierarchy"):
                reads = guidance.hierarchy_reads()
                return None if reads is None else reads[name]
            if name == "lineage":
                return guidance.lineage()
            if name == "genomes":
                return None if guidance.guided.evolution is None else guidance.guides.state.genomes()
            if name == "guide_paths":
                return np.array(guidance.paths)
            if name == "guide_alpha":
                units = guidance.coupling.unit_guides()
                values = np.full(guidance.coupling.n_guides, np.nan)
                values[units] = np.asarray(guidance.unit_alpha, dtype=np.float64)
                return values
            value = guidance.state()[name]  # numpy already
            return None if value is None else np.array(value)
        values = getattr(population, name)
        return None if values is None else _numpy(values)

    def write(self, name: str, where: str, values) -> None:
        field = state_field(name)
        if not field.writable:
            raise ValueError(f"state {name!r} cannot be written")
        if field.where == "projection":
            synapses = self._projection(where)
            target = getattr(synapses, name)
            if target is None:
                raise ValueError(f"projection {where!r} has no {name}")
            # in place: views and optimizers keep seeing the same tensor
            target.copy_(synapses.layout.tensor(np.asarray(values, dtype=np.float64)))
        else:
            population = self.populations[where]
            info = population.info
            if name in EVALUATION_FIELDS:
                self.evaluation[name][info.start:info.start + info.size] = values
            elif name == "alpha":
                if population.guidance is None:
                    raise ValueError(f"population {where!r} has no guide, so no alpha")
                population.guidance.alpha.copy_(torch.as_tensor(np.asarray(values, dtype=np.float64), dtype=self.dtype))
            else:
                target = getattr(population, name)
                if target is None:
                    raise ValueError(f"population {where!r} has no {name}")
                target.copy_(torch.as_tensor(np.asarray(values), dtype=self.dtype))
        self.changed()

    def _projection(self, name: str) -> SynapseTensors:
        for synapses in self.projections:
            if synapses.info.name == name:
                return synapses
        raise KeyError(f"no projection called {name!r}")

    @property
    def message_counts(self) -> np.ndarray:
        return self._counts.copy()

    def set_message_counts(self, counts: np.ndarray) -> None:
        """Replace the message counts (an executor that mirrors another's state keeps its counts)."""
        self._counts = np.array(counts, dtype=self._counts.dtype)

    def tick_values(self, activity: bool, messages: bool) -> dict:
        values: dict = {}
        timed = self._plan is not None and self._step_outs is not None
        if activity:
            values["activation"] = [p.y for p in self.populations.values()]
            if timed:
                values["step_activity"] = {name: torch.stack(outs, dim=1) for name, outs in self._step_outs.items()}
        if messages:
            values["delta"] = [p.delta for p in self.populations.values()]
            values["answer"] = self._answer
            if timed:
                values["step_delta"] = [None if d is None else torch.stack(d, dim=1)
                                        for d in self._step_deltas.values()]
        return values

    def set_tick_values(self, values: dict[str, dict[str, torch.Tensor | None]], answer: torch.Tensor | None) -> None:
        """Make the last tick's values those computed elsewhere (per population: u, y, delta,
        credit; and the task's answer), for an executor that mirrors another's state."""
        for name, population_values in values.items():
            population = self.populations[name]
            for key, value in population_values.items():
                setattr(population, key, value)
        self._answer = answer
        self.changed()

    def state(self) -> tuple[dict, dict]:
        return collect_state(self)

    def load_state(self, values: dict, kinds: dict) -> None:
        restore_state(self, values, kinds, self.device)
        self.changed()


def _numpy(values) -> np.ndarray:
    return values.detach().cpu().numpy().astype(np.float64)

