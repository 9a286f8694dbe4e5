"""The batched executor: the reference executor's tick as tensor operations in torch.

Populations are (batch, size) tensors, projections dense or sparse matrices
(:mod:`ribbed.scheduler.batched.projection_tensors`), optimizer state one tensor per projection.  A
stage that the reference executor runs neuron by neuron runs here population by population,
with the same arithmetic: the messages of a stage become the matrix products that sum them.
Nothing in a tick loops over neurons or synapses in Python, and the training data stays on
the device.  Messages are not built one by one; the executor counts the ones the tick implies
(:func:`~ribbed.scheduler.messages.messages_per_tick`).

See docs/semantics.md for the tick, and how closely the executors agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from ribbed.agents.activations import TORCH_ACTIVATIONS
from ribbed.agents.guides import task_context
from ribbed.agents.optimizers import Optimizer, make_optimizer
from ribbed.agents.view import ClusterView, NeuronView
from ribbed.environment.losses import per_sample_loss
from ribbed.environment.network import Network, PopulationInfo, ProjectionInfo
from ribbed.scheduler.batched.guidance import BatchedGuidance
from ribbed.scheduler.device import resolve_device, resolve_dtype
from ribbed.scheduler.base import Executor, Prediction, TickResult
from ribbed.scheduler.batched.learning import learn
from ribbed.scheduler.messages import messages_per_tick
from ribbed.scheduler.batched.projection_tensors import ProjectionTensors, make_projection_tensors

if TYPE_CHECKING:
    from ribbed.model import NetworkModel

__all__ = ["BatchedExecutor", "make_views"]

#: Evaluation runs the held-out set in chunks of at most this many neuron activations.
PREDICT_CHUNK = 2**24


class _Synapses:
    """One projection's tensors: layout, weights, fixed feedback weights, optimizer."""

    _state_attrs = ("optimizer",)  # and the weights, saved in canonical order

    def __init__(self, info: ProjectionInfo, layout: ProjectionTensors):
        self.info = info
        self.layout = layout
        self.weights = layout.tensor(info.weights)
        self.feedback = None if info.feedback is None else layout.tensor(info.feedback)
        self.optimizer: Optimizer | None = (
            None if info.frozen else make_optimizer(info.learning, self.weights)
        )
        self.kappa = info.learning.kappa
        self.x: torch.Tensor | None = None  # the presynaptic activity of this tick


class _Population:
    """One population's tensors and the projections that concern it."""

    _state_attrs = ("bias_optimizer", "y", "guidance")  # and the bias; y feeds cycle-closing edges

    def __init__(self, info: PopulationInfo, device: torch.device, dtype: torch.dtype):
        self.info = info
        self.activation = TORCH_ACTIVATIONS[info.activation]
        self.bias = torch.zeros(info.size, dtype=dtype, device=device)
        self.bias_optimizer = make_optimizer(info.learning, self.bias) if info.learns_bias else None
        self.incoming: list[_Synapses] = []
        self.sends_error: list[_Synapses] = []  # outgoing projections that carry errors back to it
        self.plastic: list[_Synapses] = []
        self.dfa: torch.Tensor | None = None  # (size, n_outputs)
        self.sanger: list[_Synapses] = []
        self.plastic_counts: torch.Tensor | None = None  # plastic synapses per neuron (chiral shares)
        self.u: torch.Tensor | None = None
        self.y: torch.Tensor | None = None
        self.delta: torch.Tensor | None = None
        self.credit: torch.Tensor | None = None  # what it learns from: delta, or delta blended with guidance
        self.guidance: BatchedGuidance | None = None
        self.previous: torch.Tensor | None = None  # last tick's y, for cycle-closing projections


class BatchedExecutor(Executor):
    """Runs the tick as tensor operations, on the CPU or a GPU (see the module docstring)."""

    name = "batched"
    _state_attrs = ("projections", "populations", "_counts")

    def __init__(self, model: NetworkModel, device: torch.device | None = None, views: bool = True):
        """``device`` overrides the scenario's; without ``views`` no agent views are made (for an
        executor that holds state on another executor's behalf, whose views those are)."""
        network: Network = model.network
        scenario = network.scenario
        self.network = network
        self.device, self.dtype = device or resolve_device(scenario), resolve_dtype(scenario)
        self.device_name, self.dtype_name = str(self.device), str(self.dtype).removeprefix("torch.")
        self.inputs = torch.as_tensor(model.dataset.X_train, dtype=self.dtype, device=self.device)
        self.targets = torch.as_tensor(model.targets_train, dtype=self.dtype, device=self.device)
        self.loss_name = model.dataset.loss
        backend = scenario.backend
        self.populations = {name: _Population(info, self.device, self.dtype) for name, info in network.populations.items()}
        self.projections: list[_Synapses] = []
        for info, spec in zip(network.projections, scenario.projections):
            layout = make_projection_tensors(info, spec.storage, backend.sparse_threshold, self.device, self.dtype)
            synapses = _Synapses(info, layout)
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
        self._delayed_sources = sorted({p.info.pre.name for p in self.projections if p.info.delayed})
        self._levels = [[self.populations[p.name] for p in level if p.role != "input"] for level in network.levels]
        self._output = self.populations[network.output.name]
        self._input = self.populations[network.input.name]
        self._per_tick = {backward: messages_per_tick(network, backward) for backward in (True, False)}
        self._counts = np.zeros_like(self._per_tick[True])
        self._backward_every = scenario.schedule.backward_every
        for name, guided in network.guided.items():
            self.populations[name].guidance = BatchedGuidance(guided, model.guide_estimators.get(name),
                                                              self.device, self.dtype)
        self._guided = [self.populations[name] for name in network.guided]
        self._activation_stats: np.ndarray | None = None
        self._agent_cache: dict | None = None  # per-neuron values the agent views read
        for population in self.populations.values():
            counts = sum(s.layout.row_counts for s in population.plastic)
            population.plastic_counts = torch.as_tensor(counts, dtype=self.dtype, device=self.device)
        self.neurons, self.clusters = make_views(model, self, network) if views else ([], [])

    # ------------------------------------------------------------------ the tick

    def tick(self, tick: int, index: np.ndarray) -> TickResult:
        index = torch.from_numpy(np.ascontiguousarray(index))
        if self.device.type == "cuda":  # from pinned memory, so the copy does not wait for the GPU
            index = index.pin_memory().to(self.device, non_blocking=True)
        with torch.no_grad():
            result = self._tick(tick, index)
        self._agent_cache = None
        return result

    def _tick(self, tick: int, index: torch.Tensor) -> TickResult:
        x = self.inputs.index_select(0, index)
        targets = self.targets.index_select(0, index)
        batch = x.shape[0]
        for name in self._delayed_sources:
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

        # guide: guided populations consult and train their guides.
        if self._guided:
            context = task_context(targets, losses)
        for population in self._guided:
            population.guidance.guide_stage(tick, population.u, population.y,
                                            population.activation.df(population.u, population.y), context,
                                            population.delta)

        # learn.
        for level in self._levels:
            for population in level:
                population.credit = (population.delta if population.guidance is None
                                     else population.guidance.credit(population.delta))
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

    def _learn(self, population: _Population, batch: int) -> None:
        learn(population, batch, self.dtype)

    # ------------------------------------------------------------------ evaluation

    def predict(self, inputs: np.ndarray, keep: Sequence[str] = ()) -> Prediction:
        samples = inputs.shape[0]
        chunk = max(1, min(samples, PREDICT_CHUNK // max(1, self.network.n_neurons)))
        outputs, count = [], 0
        kept: dict[str, list[np.ndarray]] = {}
        mean = m2 = None
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
        return Prediction(outputs=np.concatenate(outputs).astype(np.float64), activation_mean=mean.cpu().numpy(),
                          activation_std=torch.sqrt(m2 / count).cpu().numpy(),
                          activations={name: np.concatenate(parts) for name, parts in kept.items()})

    def held_out_credit(self, inputs: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
        """For each guided population, sums over neurons and samples of (guidance - credit)^2,
        credit and credit^2, and the count, for ``inputs`` (the true credit of a tick with
        propagated error and no learning; cycle-closing inputs read as 0).  The tick's state is
        left as it was."""
        if not self._guided:
            return {}
        saved = {name: (p.u, p.y, p.delta, p.previous, [s.x for s in p.incoming])
                 for name, p in self.populations.items()}
        samples = inputs.shape[0]
        chunk = max(1, min(samples, PREDICT_CHUNK // max(1, self.network.n_neurons)))
        sums = {p.info.name: torch.zeros(4, dtype=torch.float64, device=self.device) for p in self._guided}
        with torch.no_grad():
            for start in range(0, samples, chunk):
                x = torch.as_tensor(inputs[start:start + chunk], dtype=self.dtype, device=self.device)
                t = torch.as_tensor(targets[start:start + chunk], dtype=self.dtype, device=self.device)
                for name in self._delayed_sources:
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
                    sums[population.info.name] += torch.stack([((guidance.to(torch.float64) - credit) ** 2).sum(),
                                                               credit.sum(), (credit * credit).sum(),
                                                               torch.tensor(float(credit.numel()), dtype=torch.float64,
                                                                            device=self.device)])
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

    def store_activation_stats(self, mean: np.ndarray, std: np.ndarray) -> None:
        self._activation_stats = np.stack([mean, std])

    def activation_stat(self, which: int, agent_id: int) -> float:
        return float("nan") if self._activation_stats is None else float(self._activation_stats[which, agent_id])

    # ------------------------------------------------------------------ state access

    def _synapses(self, projection: ProjectionInfo) -> _Synapses:
        return self.projections[projection.index]

    def _as_layout(self, synapses: _Synapses, values: np.ndarray) -> torch.Tensor:
        return synapses.layout.tensor(np.asarray(values, dtype=np.float64))

    def get_weights(self, projection: ProjectionInfo) -> np.ndarray:
        synapses = self._synapses(projection)
        return synapses.layout.canonical(synapses.weights)

    def set_weights(self, projection: ProjectionInfo, values: np.ndarray) -> None:
        synapses = self._synapses(projection)
        synapses.weights.copy_(self._as_layout(synapses, values))  # in place: views and optimizers stay valid
        self._agent_cache = None

    def get_feedback(self, projection: ProjectionInfo) -> np.ndarray | None:
        synapses = self._synapses(projection)
        return None if synapses.feedback is None else synapses.layout.canonical(synapses.feedback)

    def set_feedback(self, projection: ProjectionInfo, values: np.ndarray) -> None:
        synapses = self._synapses(projection)
        synapses.feedback.copy_(self._as_layout(synapses, values))

    def get_biases(self, population: PopulationInfo) -> np.ndarray:
        return self.populations[population.name].bias.cpu().numpy().astype(np.float64)

    def set_biases(self, population: PopulationInfo, values: np.ndarray) -> None:
        self.populations[population.name].bias.copy_(torch.as_tensor(values, dtype=self.dtype))
        self._agent_cache = None

    def get_dfa(self, population: PopulationInfo) -> np.ndarray | None:
        dfa = self.populations[population.name].dfa
        return None if dfa is None else dfa.cpu().numpy().astype(np.float64)

    def set_dfa(self, population: PopulationInfo, values: np.ndarray) -> None:
        self.populations[population.name].dfa.copy_(torch.as_tensor(values, dtype=self.dtype))

    @property
    def message_counts(self) -> np.ndarray:
        return self._counts.copy()

    def tick_values(self, activity: bool, messages: bool) -> dict:
        values: dict = {}
        if activity:
            values["activation"] = [p.y for p in self.populations.values()]
        if messages:
            values["delta"] = [p.delta for p in self.populations.values()]
            values["answer"] = self._answer
        return values

    def load_state_arrays(self, values: dict, kinds: dict) -> None:
        super().load_state_arrays(values, kinds)
        self._agent_cache = None

    def guidance_state(self, name: str) -> dict[str, np.ndarray]:
        return self.populations[name].guidance.state()

    def neuron_guidance_value(self, population: PopulationInfo, key: str, index: int):
        guidance = self.populations[population.name].guidance
        if guidance is None:
            return float("nan") if key == "alpha" else None
        if key == "alpha":
            return float(guidance.alpha[index])
        return None if guidance.guidance is None else guidance.guidance[:, index].cpu().numpy().astype(np.float64)

    # ------------------------------------------------------------------ per-neuron reads (agent views)

    def state_of(self, population: PopulationInfo, name: str) -> torch.Tensor | None:
        return getattr(self.populations[population.name], name)

    def _agent_values(self) -> dict:
        """Every neuron's bias and weight norm, computed once per state (a view reading one
        neuron at a time would otherwise copy from the device once per neuron)."""
        if self._agent_cache is None:
            biases, norms = {}, {}
            for name, population in self.populations.items():
                biases[name] = population.bias.cpu().numpy().astype(np.float64)
                squares = torch.zeros(population.info.size, dtype=torch.float64, device=self.device)
                for synapses in population.incoming:
                    squares += synapses.layout.row_sum(synapses.weights.to(torch.float64) ** 2)
                norms[name] = torch.sqrt(squares).cpu().numpy()
            self._agent_cache = {"bias": biases, "weight_norm": norms}
        return self._agent_cache

    def neuron_bias(self, population: PopulationInfo, index: int) -> float:
        return float(self._agent_values()["bias"][population.name][index])

    def neuron_weight_norm(self, population: PopulationInfo, index: int) -> float:
        return float(self._agent_values()["weight_norm"][population.name][index])

    def neuron_in_degree(self, population: PopulationInfo, index: int) -> int:
        return int(sum(s.layout.row_counts[index] for s in self.populations[population.name].incoming))

    def neuron_weights(self, population: PopulationInfo, index: int) -> np.ndarray:
        parts = [s.layout.neuron_values(s.weights, index) for s in self.populations[population.name].incoming]
        return np.concatenate(parts) if parts else np.zeros(0)

    def neuron_optimizer_state(self, population: PopulationInfo, index: int) -> dict[str, dict]:
        state_of = self.populations[population.name]
        result = {}
        for synapses in state_of.plastic:
            result[synapses.info.name] = {
                key: value if isinstance(value, int) else synapses.layout.neuron_values(value, index)
                for key, value in synapses.optimizer.state().items()
            }
        if state_of.bias_optimizer is not None:
            result["bias"] = {key: value if isinstance(value, int) else float(value[index])
                              for key, value in state_of.bias_optimizer.state().items()}
        return result


def make_views(model: NetworkModel, executor: Executor, network: Network) -> tuple[list[NeuronView], list[ClusterView]]:
    """One agent view per neuron and per guide cluster (ids after the neurons'), reading
    ``executor``."""
    neurons = [NeuronView(model, executor, population, i)
               for population in network.populations.values() for i in range(population.size)]
    clusters: list[ClusterView] = []
    for guided in network.guided.values():
        clusters += [ClusterView(model, executor, network.n_neurons + len(clusters) + g, guided.population, g)
                     for g in range(guided.coupling.n_guides)]
    return neurons, clusters

