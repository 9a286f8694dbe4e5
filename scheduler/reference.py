"""The reference executor: per-agent Mesa objects exchanging explicit messages.

It is the oracle the faster executors are tested against, so it favours the plain
statement of the tick over speed: every activation, error and lateral signal is a
:class:`~ribbed.scheduler.messages.Message` that one agent sends and another reads.

A tick: ``sense`` (the task sends each input neuron its value) · ``forward`` (level by
level; messages are delivered after each level) · ``readout`` (output neurons report to
the task, which sends back dL/dy) · ``backward`` (reverse level order) · ``learn``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ribbed.agents.neuron import NeuronAgent, Synapses
from ribbed.environment.losses import LOSSES
from ribbed.scheduler.bus import MessageBus
from ribbed.scheduler.executor import Executor, Prediction, TickResult
from ribbed.scheduler.messages import TASK, Kind, Message, Stage

if TYPE_CHECKING:
    from ribbed.environment.network import Network, PopulationInfo, ProjectionInfo
    from ribbed.model import NetworkModel

__all__ = ["ReferenceExecutor"]


class ReferenceExecutor(Executor):
    """Runs a tick as explicit messages between :class:`NeuronAgent` objects."""

    name = "reference"

    def __init__(self, model: NetworkModel):
        network: Network = model.network
        self.network = network
        self.loss = LOSSES[model.dataset.loss]
        self.inputs, self.targets = model.dataset.X_train, model.targets_train
        self.neurons = [
            NeuronAgent(model, population.start + i, population, i)
            for population in network.populations.values()
            for i in range(population.size)
        ]
        self.bus = MessageBus(self.neurons)
        self._wire(network)
        self._levels = [
            [n for population in level for n in self.neurons[population.start:population.start + population.size]]
            for level in network.levels
        ]
        self._learners = [n for n in self.neurons if n.population.role != "input"]
        self._sanger = set(network.sanger_layout)

    def _wire(self, network: Network) -> None:
        for projection in network.projections:
            post_start, pre_start = projection.post.start, projection.pre.start
            bounds = np.searchsorted(projection.post_idx, np.arange(projection.post.size + 1))
            for j in range(projection.post.size):
                lo, hi = bounds[j], bounds[j + 1]
                if lo == hi:
                    continue
                feedback = None if projection.feedback is None else projection.feedback[lo:hi].copy()
                self.neurons[post_start + j].incoming.append(
                    Synapses(projection, projection.pre_idx[lo:hi], projection.weights[lo:hi].copy(), feedback)
                )
            order = np.argsort(projection.pre_idx, kind="stable")
            pre_sorted, post_sorted = projection.pre_idx[order], projection.post_idx[order]
            bounds = np.searchsorted(pre_sorted, np.arange(projection.pre.size + 1))
            for i in range(projection.pre.size):
                targets = [int(t) for t in post_sorted[bounds[i]:bounds[i + 1]] + post_start]
                if targets:
                    self.neurons[pre_start + i].outgoing.append((projection.delayed, targets))
        output = network.output
        for name, matrix in network.dfa_matrices.items():
            population = network.populations[name]
            for i, agent_id in enumerate(population.ids):
                self.neurons[agent_id].dfa = matrix[i].copy()
                self.neurons[agent_id].output_start = output.start
        receivers = network.broadcast_targets
        for agent_id in output.ids:
            self.neurons[agent_id].broadcast_to = receivers
        for name, layout in network.sanger_layout.items():
            ids = list(network.populations[name].ids)
            offsets = {projection.index: offset for projection, offset in layout}
            width = sum(projection.pre.size for projection, _ in layout)
            for position, agent_id in enumerate(ids):
                neuron = self.neurons[agent_id]
                neuron.later_peers = ids[position + 1:]
                neuron.sanger_offsets, neuron.sanger_width = offsets, width

    # ------------------------------------------------------------------ the tick

    def tick(self, tick: int, index: np.ndarray) -> TickResult:
        inputs, targets = self.inputs[index], self.targets[index]
        bus = self.bus
        batch = inputs.shape[0]
        bus.start_tick(batch)
        network = self.network

        # sense: the task sends each input neuron its column of the batch.
        for i, agent_id in enumerate(network.input.ids):
            bus.send(Message(tick, Stage.SENSE, TASK, agent_id, Kind.ACTIVATION, inputs[:, i]))
        bus.deliver()

        # forward, level by level.
        for level in self._levels:
            for neuron in level:
                neuron.forward(tick, bus)
            bus.deliver()

        # readout: output neurons report; the task judges and answers with dL/dy.
        output = network.output
        for agent_id in output.ids:
            self.neurons[agent_id].readout(tick, bus)
        bus.deliver()
        reports = {m.src: m.payload for m in bus.take_task_inbox()}
        outputs = np.stack([reports[agent_id] for agent_id in output.ids], axis=1)
        loss, grad = self.loss(outputs, targets)
        for k, agent_id in enumerate(output.ids):
            bus.send(Message(tick, Stage.READOUT, TASK, agent_id, Kind.ERROR, grad[:, k]))
        bus.deliver()

        # backward, in reverse level order; Sanger populations also send their lateral signals.
        for level in reversed(self._levels):
            for neuron in level:
                if neuron.population.role == "input":
                    continue
                neuron.backward(tick, bus)
                if neuron.population.name in self._sanger:
                    neuron.send_lateral(tick, bus)
            bus.deliver()

        # learn: every neuron updates its own incoming weights and bias.
        for neuron in self._learners:
            neuron.learn(tick)
        for neuron in self.neurons:
            neuron.inbox.clear()  # errors nobody needed (a neuron without credit) are dropped
        return TickResult(loss=loss, outputs=outputs)

    # ------------------------------------------------------------------ evaluation

    def predict(self, inputs: np.ndarray) -> Prediction:
        batch = inputs.shape[0]
        values: dict[int, np.ndarray] = {}
        for i, agent_id in enumerate(self.network.input.ids):
            values[agent_id] = inputs[:, i]
        activations = np.zeros((len(self.neurons), batch))
        for level in self._levels:
            for neuron in level:
                if neuron.population.role != "input":
                    values[neuron.unique_id] = neuron.compute(values, {}, batch)[1]
                activations[neuron.unique_id] = values[neuron.unique_id]
        output = self.network.output
        return Prediction(outputs=activations[output.start:output.start + output.size].T,
                          activation_mean=activations.mean(axis=1), activation_std=activations.std(axis=1))

    # ------------------------------------------------------------------ state access

    def _blocks(self, projection: ProjectionInfo) -> list[Synapses]:
        post = projection.post
        return [s for n in self.neurons[post.start:post.start + post.size] for s in n.incoming
                if s.projection is projection]

    def get_weights(self, projection: ProjectionInfo) -> np.ndarray:
        return np.concatenate([s.weights for s in self._blocks(projection)])

    def set_weights(self, projection: ProjectionInfo, values: np.ndarray) -> None:
        offset = 0
        for s in self._blocks(projection):
            s.weights = np.array(values[offset:offset + s.weights.size], dtype=np.float64)
            offset += s.weights.size

    def get_feedback(self, projection: ProjectionInfo) -> np.ndarray | None:
        blocks = self._blocks(projection)
        return None if blocks[0].feedback is None else np.concatenate([s.feedback for s in blocks])

    def set_feedback(self, projection: ProjectionInfo, values: np.ndarray) -> None:
        offset = 0
        for s in self._blocks(projection):
            s.feedback = np.array(values[offset:offset + s.weights.size], dtype=np.float64)
            offset += s.weights.size

    def get_biases(self, population: PopulationInfo) -> np.ndarray:
        return np.array([n.bias for n in self.neurons[population.start:population.start + population.size]])

    def set_biases(self, population: PopulationInfo, values: np.ndarray) -> None:
        for n, value in zip(self.neurons[population.start:population.start + population.size], values):
            n.bias = float(value)

    def get_dfa(self, population: PopulationInfo) -> np.ndarray | None:
        rows = [n.dfa for n in self.neurons[population.start:population.start + population.size]]
        return None if rows[0] is None else np.stack(rows)

    def set_dfa(self, population: PopulationInfo, values: np.ndarray) -> None:
        for n, row in zip(self.neurons[population.start:population.start + population.size], values):
            n.dfa = np.array(row, dtype=np.float64)

    @property
    def message_counts(self) -> np.ndarray:
        return self.bus.counts.copy()
