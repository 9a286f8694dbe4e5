"""NeuronAgent: one neuron as an autonomous Mesa agent.

A neuron owns its incoming synapses (one :class:`Synapses` block per projection), its bias,
its optimizer state and its inbox.  It never reads another agent's state: everything it
knows arrives as messages, and everything it tells arrives at others as messages.  The
reference executor calls its stage methods in the order DESIGN.md fixes; this file is the
readable statement of the semantics that faster executors reproduce.

The learning rules (gradient rules, Oja, Sanger, chiral modulation) are stated, and their
arithmetic written, in :mod:`ribbed.agents.rules`, shared with the tensor executors; a neuron
forms its batch means from its own messages.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import mesa
import numpy as np

from ribbed.agents.activations import ACTIVATIONS
from ribbed.agents.guides import guide_features
from ribbed.agents.mesa_idioms import MeasuredNeuron, TickedWhole
from ribbed.agents.optimizers import Optimizer, make_optimizer
from ribbed.agents.rules import bias_gradient, broadcast_credit, chiral_scale, guided_credit, hebbian_gradient
from ribbed.agents.state import NeuronState
from ribbed.scheduler.messages import TASK, Kind, Message, Stage

if TYPE_CHECKING:
    from ribbed.environment.network import PopulationInfo, ProjectionInfo
    from ribbed.scheduler.reference.bus import MessageBus

__all__ = ["NeuronAgent", "Synapses"]


class Synapses:
    """A neuron's incoming synapses from one projection."""

    __slots__ = ("projection", "pre_ids", "pre_local", "weights", "feedback", "optimizer", "inputs", "stdp")
    #: What a snapshot saves besides the weights (scheduler/state.py).
    snapshot_attrs = ("optimizer",)

    def __init__(self, projection: ProjectionInfo, pre_local: np.ndarray, weights: np.ndarray,
                 feedback: np.ndarray | None):
        self.projection = projection
        self.pre_local = pre_local
        self.pre_ids = [int(i) for i in pre_local + projection.pre.start]
        self.weights = weights
        self.feedback = feedback
        self.optimizer: Optimizer | None = None if projection.frozen or projection.stdp else make_optimizer(
            projection.learning, weights)
        self.inputs: np.ndarray | None = None  # presynaptic activity of this tick, (n_in, batch)
        #: STDP projections: this neuron's traces of them (set by the executor that runs the steps).
        self.stdp = None


class NeuronAgent(TickedWhole, MeasuredNeuron, NeuronState, mesa.Agent):
    """A neuron: state (u, y, delta), incoming synapses, bias, optimizer state, inbox."""

    agent_kind = "neuron"
    #: What a snapshot saves besides the bias (scheduler/state.py); y feeds cycle-closing edges.
    snapshot_attrs = ("bias_optimizer", "incoming", "y", "alpha", "signature")

    def __init__(self, model: mesa.Model, agent_id: int, population: PopulationInfo, index: int):
        super().__init__(model)
        self.unique_id = agent_id
        self.population_info = population
        self.index = index
        self.activation = ACTIVATIONS[population.activation]
        self.incoming: list[Synapses] = []
        self.outgoing: list[tuple[bool, list[int]]] = []  # (delayed, postsynaptic ids) per projection
        self.bias = 0.0
        self.bias_optimizer: Optimizer | None = (
            make_optimizer(population.learning, np.zeros(())) if population.learns_bias else None
        )
        self.dfa: np.ndarray | None = None  # this neuron's fixed random projection of the output error
        self.output_start = 0  # id of the first output neuron (to place broadcast errors)
        self.broadcast_to: list[int] = []  # output neurons: the neurons their error is broadcast to (DFA)
        # Broadcast credit (``broadcast: dfa``): this neuron's fixed random row B_j, and the credit it
        # made from the task's context on this tick (None on a tick with propagated error).
        self.broadcast_row: np.ndarray | None = None
        self.broadcast_delta: np.ndarray | None = None
        self.later_peers: list[int] = []  # Sanger: neurons of the population after this one
        self.sanger_offsets: dict[int, int] = {}  # Sanger: projection index -> column offset
        self.sanger_width = 0  # Sanger: length of the reconstruction vector
        self.u: np.ndarray | None = None
        self.y: np.ndarray | None = None
        self.delta: np.ndarray | None = None
        # Time within a tick: the firing state the last step of the last tick left (lif, spiking).
        self.membrane: np.ndarray | None = None
        self.refractory: np.ndarray | None = None
        self.inbox: list[Message] = []
        # Guided learning (populations with a guide): the clusters on this neuron's guide path (root
        # first), this tick's context, features and guidance, and the trust alpha set by its meta unit.
        self.guided = False
        self.guide_path: list[int] = []
        self.alpha = float("nan")
        self.context: np.ndarray | None = None
        self.features: np.ndarray | None = None
        self.guidance: np.ndarray | None = None  # the sum of the path's predictions, over the batch
        self.guidance_parts: np.ndarray | None = None  # (depth, batch): each guide's prediction
        self.signature: np.ndarray | None = None  # running activity signature (regrouping couplings)
        self.credit: np.ndarray | None = None  # what the neuron learned from this tick
        # Held-out activation statistics, set by each evaluation.
        self.activation_mean = float("nan")
        self.activation_std = float("nan")

    @functools.cached_property
    def _plastic(self) -> list[Synapses]:
        return [s for s in self.incoming if s.optimizer is not None]

    @functools.cached_property
    def _kappa(self) -> np.ndarray:
        """Each plastic synapse's chiral kappa (from its projection), in learning order."""
        return np.concatenate([np.full(len(s.pre_ids), s.projection.learning.kappa) for s in self._plastic])

    @functools.cached_property
    def _splits(self) -> np.ndarray:
        return np.cumsum([len(s.pre_ids) for s in self._plastic])[:-1]

    # ------------------------------------------------------------------ messaging

    def take(self, kind: Kind) -> list[Message]:
        """Remove and return the inbox messages of one kind, in delivery order."""
        taken = [m for m in self.inbox if m.kind == kind]
        if taken:
            self.inbox = [m for m in self.inbox if m.kind != kind]
        return taken

    @property
    def in_degree(self) -> int:
        return sum(len(s.pre_ids) for s in self.incoming)

    # ------------------------------------------------------------------ stages

    def forward(self, tick: int, bus: MessageBus) -> None:
        """Read activations, compute u and y, send y along every outgoing synapse."""
        activations = self.take(Kind.ACTIVATION)
        if self.population_info.role == "input":
            (message,) = activations
            self.u = self.y = message.payload
        else:
            values = {m.src: m.payload for m in activations}
            self.u, self.y = self.compute(values, values, bus.batch_size, keep_inputs=True)
        for delayed, targets in self.outgoing:
            bus.send_each(tick, Stage.FORWARD, self.unique_id, targets, Kind.ACTIVATION, self.y, delayed=delayed)

    def compute(self, values: dict[int, np.ndarray], delayed_values: dict[int, np.ndarray], batch: int,
                keep_inputs: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """u and y from presynaptic activations by id: ``values`` for this tick's inputs,
        ``delayed_values`` for cycle-closing ones (an input not received reads as 0)."""
        u = np.full(batch, self.bias)
        for synapses in self.incoming:
            if synapses.projection.delayed:
                zero = np.zeros(batch)
                inputs = np.stack([delayed_values.get(i, zero) for i in synapses.pre_ids])
            else:
                inputs = np.stack([values[i] for i in synapses.pre_ids])
            if keep_inputs:
                synapses.inputs = inputs
            u = u + synapses.weights @ inputs
        return u, self.activation.f(u)

    def readout(self, tick: int, bus: MessageBus) -> None:
        """An output neuron reports its activation to the task."""
        bus.send(Message(tick, Stage.READOUT, self.unique_id, TASK, Kind.ACTIVATION, self.y))

    def backward(self, tick: int, bus: MessageBus, send: bool = True) -> None:
        """Turn the error messages into this neuron's credit delta and send credit on (unless
        ``send`` is false: an output neuron on a tick without propagated error keeps its delta)."""
        errors = self.take(Kind.ERROR)
        if not self.population_info.needs_credit:
            return
        derivative = self.activation.df(self.u, self.y)
        if self.dfa is not None:
            broadcast = np.zeros((self.dfa.shape[0], bus.batch_size))
            for m in errors:
                broadcast[m.src - self.output_start] = m.payload
            self.delta = derivative * (self.dfa @ broadcast)
        else:
            total = np.zeros(bus.batch_size)
            for m in errors:
                total = total + m.payload
            self.delta = derivative * total
        if not send:
            return
        for synapses in self.incoming:
            if synapses.projection.sends_error:
                matrix = synapses.feedback if synapses.feedback is not None else synapses.weights
                payloads = np.multiply.outer(matrix, self.delta)
                bus.send_rows(tick, Stage.BACKWARD, self.unique_id, synapses.pre_ids, Kind.ERROR, payloads)
        if self.broadcast_to:
            bus.send_each(tick, Stage.BACKWARD, self.unique_id, self.broadcast_to, Kind.ERROR, self.delta)

    def send_lateral(self, tick: int, bus: MessageBus) -> None:
        """Sanger's rule: tell the later neurons of the population what this one reconstructs,
        y_k W_k over the presynaptic neurons of all the population's Sanger projections."""
        if not self.later_peers:
            return
        weights = np.zeros(self.sanger_width)
        for synapses in self.incoming:
            if synapses.projection.sanger:
                weights[self.sanger_offsets[synapses.projection.index] + synapses.pre_local] = synapses.weights
        bus.send_each(tick, Stage.BACKWARD, self.unique_id, self.later_peers, Kind.FEEDBACK,
                      np.multiply.outer(self.y, weights))

    # ------------------------------------------------------------------ guided learning

    def read_context(self, signature_decay: float | None) -> None:
        """Guide stage: take the task's context, form the features, and update the signature."""
        (message,) = self.take(Kind.TARGET)
        self.context = message.payload
        derivative = self.activation.df(self.u, self.y)
        self.features = guide_features(self.u, self.y, derivative, self.context)
        if signature_decay is not None:
            batch = self.y.shape[0]
            now = np.concatenate([[self.y.mean()], self.y @ self.context / batch])
            previous = np.zeros_like(now) if self.signature is None else self.signature
            self.signature = previous + signature_decay * (now - previous)

    def ask_guides(self, tick: int, bus: MessageBus) -> None:
        """Send the features to every guide on the path."""
        bus.send_each(tick, Stage.GUIDE, self.unique_id, self.guide_path, Kind.GUIDANCE, self.features)

    def read_guidance(self) -> None:
        """Sum the path's predictions, root first (answers are matched to the path by sender)."""
        answers = {m.src: m.payload for m in self.take(Kind.GUIDANCE)}
        self.guidance_parts = np.stack([answers[c] for c in self.guide_path])
        self.guidance = self.guidance_parts.sum(axis=0)

    def send_feedback(self, tick: int, bus: MessageBus) -> None:
        """When the true credit arrived: send each guide on the path its training rows, the target
        being the credit minus what the guides above it predicted."""
        if self.delta is None:
            return
        above = np.cumsum(self.guidance_parts, axis=0) - self.guidance_parts
        tail = np.column_stack([self.guidance, self.delta])
        payloads = [np.column_stack([self.features, self.delta - above[level], tail])
                    for level in range(len(self.guide_path))]
        bus.send_rows(tick, Stage.GUIDE, self.unique_id, self.guide_path, Kind.FEEDBACK, payloads)

    def read_broadcast(self) -> None:
        """A tick without propagated error, broadcast credit: take the task's context and make the
        credit f'(u) (B_j . e), e = -s t (:func:`~ribbed.agents.rules.broadcast_credit`)."""
        (message,) = self.take(Kind.TARGET)
        derivative = self.activation.df(self.u, self.y)
        self.broadcast_delta = broadcast_credit(derivative, message.payload, self.broadcast_row)

    def read_modulation(self) -> None:
        (message,) = self.take(Kind.MODULATION)
        self.alpha = float(message.payload)

    def _credit(self) -> np.ndarray | None:
        """What this neuron learns from: its delta, or, when guided, (1 - alpha) delta + alpha
        guidance (alpha guidance alone when no propagated error arrived this tick); with broadcast
        credit, that credit when no propagated error arrived."""
        if not self.guided:
            return self.delta if self.delta is not None else self.broadcast_delta
        return guided_credit(self.delta, self.guidance, self.alpha)

    def learn(self, tick: int) -> None:
        """Update the incoming weights and the bias from this tick's signals."""
        lateral = self.take(Kind.FEEDBACK)
        reconstruction = None  # Sanger: sum over earlier neurons k of y_k W_k
        if lateral:
            reconstruction = lateral[0].payload.copy()
            for message in lateral[1:]:
                reconstruction += message.payload
        self.credit = self._credit()
        plastic = self._plastic
        if plastic:
            grads = [self._gradient(s, reconstruction) for s in plastic]
            scale = chiral_scale(np.concatenate(grads), self._kappa)  # before the steps, which reuse grads
            steps = [s.optimizer.step(g) for s, g in zip(plastic, grads)]
            for synapses, step, part in zip(plastic, steps, np.split(scale, self._splits)):
                synapses.weights = synapses.weights + step * part
        if self.bias_optimizer is not None and self.credit is not None:
            self.bias = self.bias + float(self.bias_optimizer.step(np.asarray(bias_gradient(self.credit))))

    def _gradient(self, synapses: Synapses, reconstruction: np.ndarray | None) -> np.ndarray:
        x = synapses.inputs
        batch = x.shape[1]
        rule = synapses.projection.learning.rule
        if rule != "hebbian":
            credit = self.credit if self.credit is not None else np.zeros(batch)
            return (x @ credit) / batch
        y = self.y
        residual = x
        if synapses.projection.sanger and reconstruction is not None:
            columns = self.sanger_offsets[synapses.projection.index] + synapses.pre_local
            residual = x - reconstruction[:, columns].T
        return hebbian_gradient((residual @ y) / batch, (y @ y / batch) * synapses.weights, np)

    # ------------------------------------------------------------------ inspection

    def incoming_weights(self) -> np.ndarray:
        """All incoming weights, concatenated in projection order."""
        return np.concatenate([s.weights for s in self.incoming]) if self.incoming else np.zeros(0)

    @property
    def weight_norm(self) -> float:
        return float(np.linalg.norm(self.incoming_weights()))

    def optimizer_state(self) -> dict[str, dict[str, np.ndarray | int]]:
        """The optimizer state of this neuron's plastic synapses, by projection name (and
        ``"bias"`` for its bias), in torch.optim's names."""
        state = {s.projection.name: s.optimizer.state() for s in self._plastic}
        if self.bias_optimizer is not None:
            state["bias"] = {key: value if isinstance(value, int) else float(value)
                             for key, value in self.bias_optimizer.state().items()}
        return state

    def __repr__(self) -> str:
        return f"NeuronAgent({self.unique_id}, population={self.population_info.name!r}, index={self.index})"
