"""The reference executor: per-agent Mesa objects exchanging explicit messages.

It is the oracle the faster executors are tested against, so it favours the plain
statement of the tick over speed: every activation, error and lateral signal is a
:class:`~ribbed.scheduler.messages.Message` that one agent sends and another reads.

A tick: ``sense`` (the task sends each input neuron its value) · ``forward`` (level by
level; messages are delivered after each level) · ``readout`` (output neurons report to
the task, which sends back dL/dy) · ``backward`` (reverse level order) · ``guide`` (guided
neurons consult their ClusterAgents, which learn from the true credit) · ``learn`` ·
``meta`` (meta units set alpha).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from ribbed.agents.cluster import ClusterAgent
from ribbed.agents.meta_group import MetaGroupAgent
from ribbed.meta.hierarchy import Hierarchy, hierarchy_reads
from ribbed.agents.evolving_guides import apply_births, make_evolving_guides
from ribbed.agents.guides import guide_features, identity_features, make_guides, task_context
from ribbed.agents.neuron import NeuronAgent, Synapses
from ribbed.environment.losses import LOSSES, sample_losses
from ribbed.agents.firing import FiringState
from ribbed.scheduler.reference.timed import TimedReference
from ribbed.scheduler.reference.bus import MessageBus
from ribbed.agents.state import state_field
from ribbed.scheduler.base import STEP_SAMPLES, Executor, ExecutorInputs, Prediction, TickResult
from ribbed.scheduler.state import collect_state, restore_state
from ribbed.scheduler.messages import TASK, Kind, Message, Stage

if TYPE_CHECKING:
    from ribbed.environment.guidance import GuidedPopulation
    import mesa

    from ribbed.environment.network import Network

__all__ = ["ReferenceExecutor"]


class _GuidedGroup:
    """A guided population in the reference executor: its neurons, its ClusterAgents (one per
    guide), and the coupling's current paths."""

    snapshot_attrs = ("paths", "evolution")

    def after_load(self) -> None:
        self.assign(self.paths)

    def evolve(self, tick: int) -> None:
        """At a generation boundary, the shared generation step, then fresh newborn candidates."""
        if self.evolution is not None and self.evolution.generation_at(tick):
            apply_births([cluster.guide for cluster in self.clusters], self.evolution.next_generation())

    def __init__(self, host: mesa.Model, guided: GuidedPopulation, neurons: list[NeuronAgent], first_id: int,
                 estimator):
        population = guided.population
        self.guided = guided
        self.coupling = guided.coupling
        self.neurons = neurons[population.start:population.start + population.size]
        #: The candidates' shared state when the guides evolve (docs/semantics.md, "Evolving guides").
        self.evolution = None
        if guided.evolution is not None:
            self.evolution, guides = make_evolving_guides(guided)
        else:
            guides = make_guides(guided.guide, self.coupling.n_guides, guided.n_features, guided.guide_rng(),
                                 estimator)
        unit_guides = set(self.coupling.unit_guides().tolist())
        self.clusters = [
            ClusterAgent(host, first_id + i, population, i, guide, guided.controller if i in unit_guides else None)
            for i, guide in enumerate(guides)
        ]
        self.units = [self.clusters[i] for i in sorted(unit_guides)]
        alpha = guided.controller.initial_alpha()
        for neuron in self.neurons:
            neuron.guided, neuron.alpha = True, alpha
        self.paths = np.empty((0, 0), dtype=np.int64)
        #: The second level of meta units (docs/semantics.md, "Hierarchical meta units"), or None;
        #: its id is given once every guide has one (:meth:`add_meta_group`).
        self.meta_group: MetaGroupAgent | None = None
        self.assign(self.coupling.initial_paths())

    def add_meta_group(self, agent_id: int) -> MetaGroupAgent | None:
        """The population's MetaGroupAgent with id ``agent_id``, when its meta has a hierarchy."""
        guided = self.guided
        if guided.hierarchy is None:
            return None
        names = list(guided.controller.initial_state())
        self.meta_group = MetaGroupAgent(agent_id, Hierarchy(guided.hierarchy, guided.controller,
                                                             self.coupling.n_units),
                                         [c.unique_id for c in self.units], names)
        for cluster in self.units:
            cluster.meta_group, cluster.group_weight = agent_id, guided.hierarchy.weight
        self.snapshot_attrs = _GuidedGroup.snapshot_attrs + ("meta_group",)
        return self.meta_group

    def assign(self, paths: np.ndarray) -> None:
        """Point every neuron at the clusters on its path, and every cluster at its members."""
        self.paths = paths
        first = self.clusters[0].unique_id
        for cluster in self.clusters:
            cluster.members = []
        for neuron, path in zip(self.neurons, paths.tolist()):
            neuron.guide_path = [first + g for g in path]
            for g in path:
                self.clusters[g].members.append(neuron.unique_id)


class ReferenceExecutor(Executor):
    """Runs a tick as explicit messages between :class:`NeuronAgent` objects."""

    name = "reference"
    snapshot_attrs = ("neurons", "clusters", "_guided", "bus")

    def __init__(self, inputs: ExecutorInputs):
        network: Network = inputs.network
        self.network = network
        self.loss_name = inputs.loss
        self.loss = LOSSES[self.loss_name]
        self.inputs, self.targets = inputs.train_inputs, inputs.train_targets
        self.neurons = [
            NeuronAgent(inputs.host, population.start + i, population, i)
            for population in network.populations.values()
            for i in range(population.size)
        ]
        for neuron in self.neurons:
            neuron.executor = self
        #: Per-neuron values of the last evaluation that agents do not hold themselves (by agent id).
        self.evaluation = {"firing_rate": np.full(network.n_neurons, np.nan)}
        self.clusters: list[ClusterAgent] = []
        self._guided: list[_GuidedGroup] = []
        for guided in network.guided.values():
            self._guided.append(_GuidedGroup(inputs.host, guided, self.neurons, network.n_neurons + len(self.clusters),
                                             inputs.guide_estimators.get(guided.name)))
            self.clusters.extend(self._guided[-1].clusters)
        self._backward_every = network.scenario.schedule.backward_every
        #: The second-level meta agents, ids after every guide's (docs/semantics.md, "Hierarchical meta units").
        self.meta_groups = [agent for group in self._guided
                            if (agent := group.add_meta_group(network.n_neurons + len(self.clusters)
                                                              + sum(g.meta_group is not None for g in self._guided)))
                            is not None]
        self.bus = MessageBus(self.neurons + self.clusters + self.meta_groups)
        self._wire(network)
        self._levels = [
            [n for population in level for n in self.neurons[population.start:population.start + population.size]]
            for level in network.levels
        ]
        self._learners = [n for n in self.neurons if n.population_info.role != "input"]
        self._sanger = set(network.sanger_layout)
        self._broadcast = [n for n in self.neurons if n.broadcast_row is not None]
        # Time within a tick (docs/semantics.md): a timed scenario runs scheduler/reference/timed.py's
        # tick; an untimed one the tick below, unchanged.
        self._timed = TimedReference(self) if network.scenario.timed else None
        if network.scenario.run.carry_state:  # a snapshot holds the state the next tick continues from
            self.snapshot_attrs = type(self).snapshot_attrs + ("carried_state",)
        self._ticks_run = 0

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
        for name, matrix in network.broadcast_matrices.items():
            for i, agent_id in enumerate(network.populations[name].ids):
                self.neurons[agent_id].broadcast_row = matrix[i].copy()
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
        self._ticks_run = tick + 1
        if self._timed is not None:
            return self._timed_tick(tick, index)
        inputs, targets = self.inputs[index], self.targets[index]
        bus = self.bus
        bus.start_tick(inputs.shape[0])
        backward = tick % self._backward_every == 0
        loss, outputs = self._propagate(tick, inputs, targets, backward)

        if self._guided or (self._broadcast and not backward):
            context = task_context(targets, sample_losses(self.loss_name, outputs, targets))
        if self._guided:
            self._guide_stage(tick, context, backward)
        if self._broadcast:
            self._broadcast_stage(tick, context if not backward else None)

        # learn: every neuron updates its own incoming weights and bias.
        for neuron in self._learners:
            neuron.learn(tick)

        # meta: each meta unit sets its members' alpha for the next tick (learned controllers
        # first hear the tick's loss from the task).
        if self._guided:
            for group in self._guided:
                if group.guided.controller.needs_loss:
                    bus.send_each(tick, Stage.META, TASK, [c.unique_id for c in group.units], Kind.REWARD,
                                  np.float64(loss))
            bus.deliver()
            for group in self._guided:
                for cluster in group.units:
                    cluster.modulate(tick, bus)
            bus.deliver()
            if self.meta_groups:  # the second level answers its units, who pass the blend on
                for agent in self.meta_groups:
                    agent.modulate(tick, bus)
                bus.deliver()
                for group in self._guided:
                    if group.meta_group is not None:
                        for cluster in group.units:
                            cluster.pass_on(tick, bus)
                bus.deliver()
            for group in self._guided:
                for neuron in group.neurons:
                    neuron.read_modulation()

        for neuron in self.neurons:
            neuron.inbox.clear()  # errors nobody needed (a neuron without credit) are dropped
        self.changed()
        return TickResult(loss=loss, outputs=outputs)

    @property
    def carried_state(self) -> dict:
        """run.carry_state: each neuron's carried firing state and its STDP synapses' traces, as
        plain values for a snapshot (agent ids and synapse groups behind a '_')."""
        firing, stdp = {}, {}
        for neuron in self.neurons:
            state = getattr(neuron, "carried", None)
            if state is not None:
                firing[f"_{neuron.unique_id}"] = list(state)
            traces = {f"_{k}": s.stdp.carried() for k, s in enumerate(neuron.incoming) if s.stdp is not None}
            if traces:
                stdp[f"_{neuron.unique_id}"] = traces
        return {"firing": firing, "stdp": stdp}

    @carried_state.setter
    def carried_state(self, values: dict) -> None:
        firing, stdp = values.get("firing") or {}, values.get("stdp") or {}
        for neuron in self.neurons:
            state = firing.get(f"_{neuron.unique_id}")
            neuron.carried = None if state is None else FiringState(*state)
            traces = stdp.get(f"_{neuron.unique_id}") or {}
            for k, synapses in enumerate(neuron.incoming):
                if synapses.stdp is not None:
                    synapses.stdp.load(traces.get(f"_{k}"))

    def _timed_tick(self, tick: int, index: np.ndarray) -> TickResult:
        """A tick over T steps (scheduler/reference/timed.py), then each neuron's learn stage on
        its credit over the steps (T * B rows, times T: the sum over steps of batch means)."""
        inputs, targets = self.inputs[index], self.targets[index]
        self.bus.start_tick(inputs.shape[0])
        loss, outputs = self._timed.tick(tick, inputs, targets)
        for neuron in self._learners:
            total, neuron.delta = neuron.delta, neuron.step_credit
            neuron.learn(tick)
            neuron.delta = neuron.credit = total
            for synapses in neuron.incoming:  # inputs as the log and reads know them: the last step's
                synapses.inputs = synapses.inputs[:, -inputs.shape[0]:]
        for neuron in self.neurons:
            neuron.inbox.clear()
        self.changed()
        return TickResult(loss=loss, outputs=outputs)

    def _propagate(self, tick: int, inputs: np.ndarray, targets: np.ndarray, backward: bool) -> tuple[float, np.ndarray]:
        """sense, forward, readout and backward on ``self.bus``; the loss and the outputs."""
        bus = self.bus
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
        self._answer = grad
        for k, agent_id in enumerate(output.ids):
            bus.send(Message(tick, Stage.READOUT, TASK, agent_id, Kind.ERROR, grad[:, k]))
        bus.deliver()

        # backward, in reverse level order; Sanger populations also send their lateral signals.
        # On a tick without propagated error (schedule.backward_every) only the output neurons
        # turn the task's answer into their delta, and send nothing on.
        for level in reversed(self._levels):
            for neuron in level:
                role = neuron.population_info.role
                if role == "input":
                    continue
                if backward or role == "output":
                    neuron.backward(tick, bus, send=backward)
                else:
                    neuron.delta = None
                if neuron.population_info.name in self._sanger:
                    neuron.send_lateral(tick, bus)
            bus.deliver()
        return loss, outputs

    def _guide_stage(self, tick: int, context: np.ndarray, backward: bool) -> None:
        """The task sends each guided neuron the context; neurons ask the guides on their path;
        guides answer; when the true credit arrived, neurons send it to their guides, which learn."""
        bus = self.bus
        for group in self._guided:
            bus.send_each(tick, Stage.GUIDE, TASK, [n.unique_id for n in group.neurons], Kind.TARGET, context)
        bus.deliver()
        for group in self._guided:
            decay = group.coupling.signature_decay if group.coupling.regroup_every else None
            for neuron in group.neurons:
                neuron.read_context(decay)
            identity = self._identity(group, context)
            if identity is not None:
                for j, neuron in enumerate(group.neurons):
                    neuron.features = np.concatenate([neuron.features, identity[:, j]], axis=1)
            if group.coupling.regroups_at(tick):
                group.assign(group.coupling.regroup(np.stack([n.signature for n in group.neurons]), group.paths))
            for neuron in group.neurons:
                neuron.ask_guides(tick, bus)
        bus.deliver()
        for cluster in self.clusters:
            cluster.answer(tick, bus)
        bus.deliver()
        for group in self._guided:
            for neuron in group.neurons:
                neuron.read_guidance()
                if backward:
                    neuron.send_feedback(tick, bus)
        bus.deliver()
        for cluster in self.clusters:
            cluster.learn()
        for group in self._guided:
            if group.guided.refits_at(tick):
                for cluster in group.clusters:
                    cluster.refit()
            group.evolve(tick)

    def _identity(self, group: _GuidedGroup, context: np.ndarray) -> np.ndarray | None:
        """The group's identity features (batch, n, k) from the current outgoing weights (before
        this tick's learn), or None when its guide asks for none."""
        weights = group.guided.identity_weights(lambda projection: self.read("weights", projection.name))
        if weights is None:
            return None
        derivative = np.stack([n.activation.df(n.u, n.y) for n in group.neurons], axis=1)
        return identity_features(*weights, derivative, context)

    def _broadcast_stage(self, tick: int, context: np.ndarray | None) -> None:
        """Broadcast credit, on a tick without propagated error (``context`` given): the task sends
        each neuron of a broadcast population the context (in the guide stage), and each makes its
        credit from it.  On a tick with propagated error they learn from their delta."""
        for neuron in self._broadcast:
            neuron.broadcast_delta = None
        if context is None:
            return
        self.bus.send_each(tick, Stage.GUIDE, TASK, [n.unique_id for n in self._broadcast], Kind.TARGET, context)
        self.bus.deliver()
        for neuron in self._broadcast:
            neuron.read_broadcast()

    # ------------------------------------------------------------------ evaluation

    def predict(self, inputs: np.ndarray, keep: Sequence[str] = ()) -> Prediction:
        if self._timed is not None:
            outputs, emitted = self._timed.predict(inputs)
            kept = {name: emitted[p.start:p.start + p.size].T.copy()
                    for name, p in self.network.populations.items() if name in keep}
            steps = {name: np.stack([np.stack([r["out"][:STEP_SAMPLES] for r in neuron.steps], axis=1)
                                     for neuron in self.neurons[p.start:p.start + p.size]], axis=2)
                     for name, p in self.network.populations.items() if name in keep}
            return Prediction(outputs=outputs, activation_mean=emitted.mean(axis=1),
                              activation_std=emitted.std(axis=1), activations=kept,
                              firing_rate=emitted.mean(axis=1), steps=steps)
        batch = inputs.shape[0]
        values: dict[int, np.ndarray] = {}
        for i, agent_id in enumerate(self.network.input.ids):
            values[agent_id] = inputs[:, i]
        activations = np.zeros((len(self.neurons), batch))
        for level in self._levels:
            for neuron in level:
                if neuron.population_info.role != "input":
                    values[neuron.unique_id] = neuron.compute(values, {}, batch)[1]
                activations[neuron.unique_id] = values[neuron.unique_id]
        output = self.network.output
        kept = {name: activations[p.start:p.start + p.size].T.copy()
                for name, p in self.network.populations.items() if name in keep}
        return Prediction(outputs=activations[output.start:output.start + output.size].T,
                          activation_mean=activations.mean(axis=1), activation_std=activations.std(axis=1),
                          activations=kept,
                          # Every neuron follows the rate policy: what it emits is its activation.
                          firing_rate=activations.mean(axis=1))

    def held_out_credit(self, inputs: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
        """As :meth:`BatchedExecutor.held_out_credit`: the held-out samples go through sense,
        forward, readout and backward as one batch on a bus of their own (nothing is counted, no
        one learns), then each guided neuron asks its guides directly.  The neurons' state of the
        last tick is restored."""
        if not self._guided:
            return {}
        fields = ("u", "y", "delta", "inbox")
        saved = [({f: getattr(n, f) for f in fields}, [s.inputs for s in n.incoming]) for n in self.neurons]
        bus, self.bus = self.bus, MessageBus(self.neurons + self.clusters)
        try:
            self.bus.start_tick(inputs.shape[0])
            for neuron in self.neurons:
                neuron.inbox = []
            _, outputs = self._propagate(-1, inputs, targets, backward=True)
            context = task_context(targets, sample_losses(self.loss_name, outputs, targets))
            sums = {}
            for group in self._guided:
                totals = np.zeros((4, len(group.neurons)))
                identity = self._identity(group, context)
                for j, neuron in enumerate(group.neurons):
                    features = guide_features(neuron.u, neuron.y, neuron.activation.df(neuron.u, neuron.y), context)
                    if identity is not None:
                        features = np.concatenate([features, identity[:, j]], axis=1)
                    guidance = sum(self.clusters[c - self.clusters[0].unique_id].guide.predict(features)
                                   for c in neuron.guide_path)
                    credit = neuron.delta
                    totals[:, j] = [((guidance - credit) ** 2).sum(), credit.sum(), (credit**2).sum(), credit.size]
                sums[group.guided.name] = totals
        finally:
            self.bus = bus
            for neuron, (state, inputs_) in zip(self.neurons, saved):
                for f, value in state.items():
                    setattr(neuron, f, value)
                for synapses, x in zip(neuron.incoming, inputs_):
                    synapses.inputs = x
        return sums

    # ------------------------------------------------------------------ state access

    def _members(self, where: str) -> list[NeuronAgent]:
        population = self.network.populations[where]
        return self.neurons[population.start:population.start + population.size]

    def _blocks(self, where: str) -> list[Synapses]:
        projection = next(p for p in self.network.projections if p.name == where)
        post = projection.post
        return [s for n in self.neurons[post.start:post.start + post.size] for s in n.incoming
                if s.projection is projection]

    def _group(self, where: str) -> _GuidedGroup | None:
        return next((g for g in self._guided if g.guided.name == where), None)

    def read(self, name: str, where: str):
        field = state_field(name)
        if field.where == "projection":
            blocks = self._blocks(where)
            if name == "optimizer":
                if blocks[0].optimizer is None:
                    return None
                states = [s.optimizer.state() for s in blocks]
                return {key: value if isinstance(value, int) else np.concatenate([st[key] for st in states])
                        for key, value in states[0].items()}
            if getattr(blocks[0], name) is None:
                return None
            return np.concatenate([getattr(s, name) for s in blocks])
        neurons = self._members(where)
        if name in ("u", "y", "delta", "credit", "guidance", "membrane", "refractory"):
            rows = [getattr(n, name) for n in neurons]
            if all(row is None for row in rows):
                return None
            width = next(len(row) for row in rows if row is not None)
            return np.stack([np.full(width, np.nan) if row is None else row for row in rows], axis=1)
        if name == "dfa":
            return None if neurons[0].dfa is None else np.stack([n.dfa for n in neurons])
        if name == "bias_optimizer":
            if neurons[0].bias_optimizer is None:
                return None
            states = [n.bias_optimizer.state() for n in neurons]
            return {key: value if isinstance(value, int) else np.array([float(st[key]) for st in states])
                    for key, value in states[0].items()}
        if name in ("cluster", "guide_paths", "guide_alpha", "lineage", "genomes", "meta_group", "group_alpha",
                    "hierarchy"):
            group = self._group(where)
            if group is None:
                return None
            if name in ("meta_group", "group_alpha", "hierarchy"):
                return (None if group.meta_group is None
                        else hierarchy_reads(group.meta_group.hierarchy, group.coupling, group.paths)[name])
            if name == "lineage":
                return None if group.evolution is None else group.evolution.lineage(group.paths[:, -1])
            if name == "genomes":
                return None if group.evolution is None else group.evolution.genomes()
            if name == "cluster":
                return group.coupling.units(group.paths)
            if name == "guide_paths":
                return np.array(group.paths)
            return np.array([c.alpha for c in group.clusters], dtype=np.float64)
        if name in self.evaluation:
            population = self.network.populations[where]
            return self.evaluation[name][population.start:population.start + population.size].copy()
        return np.array([getattr(n, name) for n in neurons])

    def write(self, name: str, where: str, values) -> None:
        field = state_field(name)
        if not field.writable:
            raise ValueError(f"state {name!r} cannot be written")
        if field.where == "projection":
            blocks = self._blocks(where)
            if getattr(blocks[0], name) is None:
                raise ValueError(f"projection {where!r} has no {name}")
            offset = 0
            for s in blocks:
                size = s.weights.size
                setattr(s, name, np.array(values[offset:offset + size], dtype=np.float64))
                offset += size
        elif name in self.evaluation:
            population = self.network.populations[where]
            self.evaluation[name][population.start:population.start + population.size] = values
        else:
            neurons = self._members(where)
            if name == "dfa" and neurons[0].dfa is None:
                raise ValueError(f"population {where!r} has no dfa")
            if name == "alpha" and not neurons[0].guided:
                raise ValueError(f"population {where!r} has no guide, so no alpha")
            for n, value in zip(neurons, values):
                setattr(n, name, np.array(value, dtype=np.float64) if name == "dfa" else float(value))
        self.changed()

    def state(self) -> tuple[dict, dict]:
        return collect_state(self)

    def load_state(self, values: dict, kinds: dict) -> None:
        restore_state(self, values, kinds)
        self.changed()

    @property
    def message_counts(self) -> np.ndarray:
        return self.bus.counts.copy()

    def tick_values(self, activity: bool, messages: bool) -> dict:
        def stacked(name: str) -> list[np.ndarray | None]:
            per_population = []
            for population in self.network.populations.values():
                neurons = self.neurons[population.start:population.start + population.size]
                rows = [getattr(n, name) for n in neurons]
                if all(row is None for row in rows):
                    per_population.append(None)
                else:
                    width = next(len(row) for row in rows if row is not None)
                    per_population.append(np.stack([np.full(width, np.nan) if row is None else row for row in rows],
                                                   axis=1))
            return per_population

        values: dict = {}
        timed = self._timed is not None and getattr(self._timed, "step_outs", None) is not None
        if activity:
            values["activation"] = stacked("y")
            if timed:
                values["step_activity"] = dict(self._timed.step_outs)
        if messages:
            values["delta"] = stacked("delta")
            values["answer"] = self._answer
            if timed:
                values["step_delta"] = list(self._timed.step_deltas.values())
        return values
