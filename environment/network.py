"""The network a scenario describes: populations, projections, initial state, and the
structure of a tick (topological levels, cycle-closing projections, who needs credit).

Everything here is a pure function of the scenario and its seed, computed once in shared
code; executors only consume it.  Agent ids are global and contiguous per population, in
the order the populations are declared.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from ribbed.environment.connectivity import ConnectivityError, connect
from ribbed.environment.guidance import GuidedPopulation, guidance_warnings, guided_populations, n_context_columns
from ribbed.environment.weights import initial_weights
from ribbed.errors import Problem, ScenarioError
from ribbed.scenarios.schema import GRADIENT_RULES, STDP_RULES, LearningSpec, Scenario
from ribbed.seeding import component_rng

__all__ = ["Network", "PopulationInfo", "ProjectionInfo", "build_network"]

#: Rules that send error messages back along their projection.
ERROR_SENDING_RULES = ("backprop", "feedback_alignment")


@dataclass(eq=False)
class PopulationInfo:
    """A population as the executors see it."""

    name: str
    index: int
    size: int
    start: int
    role: str
    activation: str
    bias: bool
    learning: LearningSpec
    level: int = 0
    needs_credit: bool = False
    dfa_receiver: bool = False

    @property
    def ids(self) -> range:
        """Global agent ids of the population's neurons."""
        return range(self.start, self.start + self.size)

    @property
    def learns_bias(self) -> bool:
        return self.bias and self.role != "input" and self.learning.rule in GRADIENT_RULES


@dataclass(eq=False)
class ProjectionInfo:
    """A projection's synapses in canonical (post, pre) order, with their initial weights."""

    name: str
    index: int
    pre: PopulationInfo
    post: PopulationInfo
    pre_idx: np.ndarray
    post_idx: np.ndarray
    weights: np.ndarray
    feedback: np.ndarray | None
    learning: LearningSpec
    frozen: bool
    delayed: bool = False
    sends_error: bool = False

    @property
    def n_synapses(self) -> int:
        return int(self.pre_idx.shape[0])

    @property
    def plastic(self) -> bool:
        return not self.frozen

    @property
    def sanger(self) -> bool:
        return self.plastic and self.learning.rule == "hebbian" and self.learning.variant == "sanger"

    @property
    def stdp(self) -> bool:
        """Whether the weights learn by STDP or R-STDP during forward (no optimizer, no learn stage)."""
        return self.plastic and self.learning.rule in STDP_RULES


@dataclass(eq=False)
class Network:
    """Populations, projections and initial state of one scenario and seed."""

    scenario: Scenario
    populations: dict[str, PopulationInfo]
    projections: list[ProjectionInfo]
    dfa_matrices: dict[str, np.ndarray] = field(default_factory=dict)
    #: Per population learning by Sanger's rule: its Sanger projections, each with the column
    #: offset of its presynaptic population in the lateral messages' reconstruction vector.
    sanger_layout: dict[str, list[tuple[ProjectionInfo, int]]] = field(default_factory=dict)
    #: Things that are valid but probably not what was meant (shown by validate and run).
    warnings: list[str] = field(default_factory=list)
    #: Populations with a guide, by name (see :mod:`ribbed.environment.guidance`).
    guided: dict[str, GuidedPopulation] = field(default_factory=dict)
    #: Per population with broadcast credit (``broadcast: dfa``): its fixed random matrix B,
    #: (size, n_outputs), that turns the task's broadcast into credit on ticks without propagated error.
    broadcast_matrices: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def input(self) -> PopulationInfo:
        return next(p for p in self.populations.values() if p.role == "input")

    @property
    def output(self) -> PopulationInfo:
        return next(p for p in self.populations.values() if p.role == "output")

    @property
    def n_neurons(self) -> int:
        return sum(p.size for p in self.populations.values())

    @property
    def n_synapses(self) -> int:
        return sum(p.n_synapses for p in self.projections)

    @property
    def broadcast_targets(self) -> list[int]:
        """Agent ids that receive the output neurons' delta directly (DFA populations with credit)."""
        return [i for p in self.populations.values() if p.dfa_receiver and p.needs_credit for i in p.ids]

    @property
    def levels(self) -> list[list[PopulationInfo]]:
        """Populations grouped by topological level (level 0 holds the input population)."""
        depth = max(p.level for p in self.populations.values())
        return [[p for p in self.populations.values() if p.level == d] for d in range(depth + 1)]

    def neuron_graph(self) -> nx.DiGraph:
        """Neurons as nodes (global agent ids), synapses as edges with their initial weights."""
        graph = nx.DiGraph()
        for population in self.populations.values():
            graph.add_nodes_from(population.ids, population=population.name)
        for projection in self.projections:
            pre = projection.pre_idx + projection.pre.start
            post = projection.post_idx + projection.post.start
            graph.add_edges_from(
                (int(a), int(b), {"projection": projection.name, "weight": float(w), "delayed": projection.delayed})
                for a, b, w in zip(pre, post, projection.weights)
            )
        return graph


def build_network(scenario: Scenario) -> Network:
    """Draw the network of ``scenario`` from its seed (connectivity, weights, feedback matrices)."""
    populations: dict[str, PopulationInfo] = {}
    start = 0
    for index, spec in enumerate(scenario.populations):
        populations[spec.name] = PopulationInfo(
            name=spec.name, index=index, size=spec.size, start=start, role=spec.role,
            activation="identity" if spec.role == "input" else spec.activation, bias=spec.bias and spec.role != "input",
            learning=scenario.population_learning(spec),
        )
        start += spec.size

    projections = []
    for index, spec in enumerate(scenario.projections):
        pre, post = populations[spec.pre], populations[spec.post]
        try:
            pre_idx, post_idx = connect(spec.connectivity, pre.size, post.size, pre is post,
                                        component_rng(scenario.seed, "connectivity", spec.label))
        except ConnectivityError as exc:
            raise ScenarioError(Problem(scenario.source, f"projections[{index}].connectivity", str(exc),
                                        "change the rule's parameters")) from None
        if pre_idx.size == 0:
            raise ScenarioError(Problem(scenario.source, f"projections[{index}].connectivity",
                                        "the rule made no synapses", "raise the connection probability or degree"))
        learning = scenario.projection_learning(spec)
        weights = initial_weights(spec.init, pre_idx, post_idx, pre.size, post.size,
                                  component_rng(scenario.seed, "weights", spec.label))
        feedback = None
        if learning.rule == "feedback_alignment":
            feedback = initial_weights(spec.init, pre_idx, post_idx, pre.size, post.size,
                                       component_rng(scenario.seed, "feedback", spec.label))
        projections.append(ProjectionInfo(
            name=spec.label, index=index, pre=pre, post=post, pre_idx=pre_idx, post_idx=post_idx,
            weights=weights, feedback=feedback, learning=learning, frozen=spec.frozen,
        ))

    network = Network(scenario=scenario, populations=populations, projections=projections)
    _mark_delayed(network)
    _assign_levels(network)
    _assign_credit(network)
    _check_time(network)
    network.warnings = _credit_warnings(network)
    for name in populations:
        offset = 0
        for projection in projections:
            if projection.post.name == name and projection.sanger:
                network.sanger_layout.setdefault(name, []).append((projection, offset))
                offset += projection.pre.size
    n_out = network.output.size
    for population in populations.values():
        if population.dfa_receiver:
            rng = component_rng(scenario.seed, "dfa", population.name)
            network.dfa_matrices[population.name] = rng.uniform(-1.0, 1.0, (population.size, n_out)) / np.sqrt(n_out)
    network.guided = guided_populations(scenario, populations, n_context=n_context_columns(n_out),
                                        projections=tuple(projections))
    for name, guided in network.guided.items():
        if not guided.population.needs_credit:
            raise ScenarioError(Problem(
                scenario.source, f"populations[{guided.population.index}].guide",
                f"population '{name}' computes no credit (it has no plastic projection learning by a gradient rule, "
                "no learned bias, and passes no credit back), so its guide would have nothing to learn from",
                "make a projection into it plastic with a gradient rule, or remove the guide"))
    network.warnings += guidance_warnings(network.guided, scenario.run.ticks)
    _draw_broadcast(network)
    return network


def _draw_broadcast(network: Network) -> None:
    """The fixed random matrix of each population with broadcast credit, U(+-1/sqrt(n_outputs)) as
    DFA's, from its own seed ``("broadcast", population)``; refused where the population computes no
    credit, warned about where the propagated error arrives every tick (the broadcast is never used)."""
    scenario = network.scenario
    n_out = network.output.size
    for spec in scenario.populations:
        if spec.broadcast is None:
            continue
        population = network.populations[spec.name]
        if not population.needs_credit:
            raise ScenarioError(Problem(
                scenario.source, f"populations[{population.index}].broadcast",
                f"population '{spec.name}' computes no credit (it has no plastic projection learning by a gradient "
                "rule and no learned bias), so broadcast credit would change nothing",
                "make a projection into it plastic with a gradient rule, or remove 'broadcast'"))
        rng = component_rng(scenario.seed, "broadcast", spec.name)
        network.broadcast_matrices[spec.name] = rng.uniform(-1.0, 1.0, (population.size, n_out)) / np.sqrt(n_out)
        if scenario.schedule.backward_every == 1:
            network.warnings.append(
                f"population '{spec.name}' has broadcast credit, which stands in for the propagated error on ticks "
                "without it, and schedule.backward_every is 1: the error arrives every tick, so it is never used")


def _mark_delayed(network: Network) -> None:
    """Mark the projections that close a cycle: back edges of a depth-first search from the
    input population (then from any unvisited population), taking projections in declaration
    order.  Their messages are delivered on the next tick."""
    outgoing: dict[str, list[ProjectionInfo]] = {name: [] for name in network.populations}
    for projection in network.projections:
        outgoing[projection.pre.name].append(projection)
    state: dict[str, int] = {}  # 1: on the current path, 2: finished

    def visit(name: str) -> None:
        state[name] = 1
        for projection in outgoing[name]:
            target = projection.post.name
            if state.get(target) == 1:
                projection.delayed = True
            elif target not in state:
                visit(target)
        state[name] = 2

    roots = [network.input.name] + [name for name in network.populations if name != network.input.name]
    for name in roots:
        if name not in state:
            visit(name)


def _assign_levels(network: Network) -> None:
    """Level 0 is the input population; every other population sits one level above the
    highest of its non-delayed presynaptic populations (level 1 when it has none)."""
    graph = nx.DiGraph()
    graph.add_nodes_from(network.populations)
    graph.add_edges_from((p.pre.name, p.post.name) for p in network.projections if not p.delayed)
    for name in nx.lexicographical_topological_sort(graph, key=lambda n: network.populations[n].index):
        population = network.populations[name]
        if population.role == "input":
            population.level = 0
            continue
        preds = [network.populations[p].level for p in graph.predecessors(name)]
        population.level = 1 + max(preds, default=0)


def _assign_credit(network: Network) -> None:
    """Route credit: which populations compute a delta, which receive the output error directly
    (DFA), and which projections carry error messages back.  Computed once here so that every
    executor sends exactly the same messages, and none that nobody would use.

    A population needs credit when it learns by a gradient rule (a plastic incoming projection
    or its bias), when it must pass credit back to a population that needs it (through a
    non-delayed backprop or feedback-alignment projection from that population), or, for the
    output population, when a DFA population needs the output error.  Increasing to a fixed point.
    """
    incoming = {name: [p for p in network.projections if p.post.name == name] for name in network.populations}
    learners = [p for p in network.populations.values() if p.role != "input"]
    for population in learners:
        population.dfa_receiver = population.role == "hidden" and (
            population.learning.rule == "direct_feedback_alignment"
            or any(p.plastic and p.learning.rule == "direct_feedback_alignment" for p in incoming[population.name])
        )
    own = {
        population.name: population.learns_bias
        or any(p.plastic and p.learning.rule in GRADIENT_RULES for p in incoming[population.name])
        for population in learners
    }

    def carries_error(projection: ProjectionInfo) -> bool:
        # A DFA population takes its credit from the broadcast only.
        return (not projection.delayed and projection.learning.rule in ERROR_SENDING_RULES
                and projection.pre.needs_credit and not projection.pre.dfa_receiver)

    changed = True
    while changed:
        changed = False
        broadcast_needed = any(p.dfa_receiver and p.needs_credit for p in learners)
        for population in learners:
            needs = own[population.name] or any(carries_error(p) for p in incoming[population.name])
            needs = needs or (population.role == "output" and broadcast_needed)
            if needs and not population.needs_credit:
                population.needs_credit = changed = True
    for projection in network.projections:
        projection.sends_error = carries_error(projection) and projection.post.needs_credit


def _check_time(network: Network) -> None:
    """What the structure of the network (delays, credit) rules out with time in the tick: a
    conductance neuron has no surrogate gradient, so no credit may have to pass through it; carried
    state does not carry delayed projections' buffers yet."""
    scenario = network.scenario
    names = [p.name for p in scenario.populations]
    for population in network.populations.values():
        spec = scenario.population(population.name)
        if population.needs_credit and scenario.population_firing(spec).policy == "conductance":
            raise ScenarioError(Problem(
                scenario.source, f"populations[{names.index(population.name)}].firing.policy",
                f"credit must pass back through the conductance population '{population.name}' (a population before "
                "it learns by a gradient rule), and the conductance policy has no surrogate gradient",
                "let the populations before it learn by stdp, or freeze them, or use another policy"))
    if scenario.run.carry_state:
        for projection in network.projections:
            if projection.delayed:
                raise ScenarioError(Problem(
                    scenario.source, "run.carry_state",
                    f"carried state does not carry a delayed projection's last step yet, and '{projection.name}' "
                    "is delayed", "remove run.carry_state, or the recurrent (cycle-closing) projection"))


def _credit_warnings(network: Network) -> list[str]:
    """Populations that learn by a gradient rule but that no credit can ever reach, and a
    network in which nothing learns from the task's targets."""
    warnings = _target_warnings(network)
    output = network.output
    for population in network.populations.values():
        if population.dfa_receiver and population.needs_credit and population.level >= output.level:
            warnings.append(
                f"population '{population.name}' learns by direct feedback alignment but acts at or after the "
                f"output population's level ({population.level} >= {output.level}): the output's error reaches it "
                "only after its backward stage, so its credit is always zero"
            )
        if population.role in ("input", "output") or not population.needs_credit or population.dfa_receiver:
            continue
        if not any(p.sends_error and p.pre is population for p in network.projections):
            warnings.append(
                f"population '{population.name}' learns by a gradient rule, but no error reaches it "
                "(no backprop or feedback-alignment projection leads from it to a population with credit): "
                "its incoming weights and biases will not change"
            )
    return warnings


def _target_warnings(network: Network) -> list[str]:
    """A network in which no synapse learns from the loss: no projection into the output
    population learns by a gradient rule (they learn by an unsupervised rule, or are frozen), and
    no hidden population that learns by one receives an error. Then no weight ever sees the
    targets, and the score stays near chance (an all-Hebbian xor reached 0.575): valid, but
    hardly ever meant. A frozen readout over hidden layers that learn from the error passed
    back through it is not warned about."""
    output = network.output

    def reached(population: PopulationInfo) -> bool:  # whether the loss's error reaches it
        if not population.needs_credit:
            return False
        if population.role == "output":
            return True
        if population.dfa_receiver:
            return output.needs_credit and population.level < output.level
        return any(p.sends_error and p.pre is population for p in network.projections)

    if any(p.plastic and p.learning.rule in GRADIENT_RULES and reached(p.post) for p in network.projections):
        return []
    if network.scenario.task.kind == "constant" or any(p.stdp and p.learning.rule == "r_stdp"
                                                        for p in network.projections):
        return []  # no targets to learn from, or a reward that learns from them
    incoming = [p for p in network.projections if p.post is output]
    unsupervised = [p for p in incoming if p.plastic and p.learning.rule not in GRADIENT_RULES]
    if unsupervised:
        first = unsupervised[0]
        field, why = _rule_field(network.scenario, first.index), f"learns by the {first.learning.rule} rule"
        fix = (f"set 'rule: backprop' (or feedback_alignment, direct_feedback_alignment) at {field} "
               "(hidden populations may stay unsupervised)")
    else:
        first = incoming[0]
        field, why = f"projections[{first.index}].frozen", "is frozen"
        fix = f"remove 'frozen: true' at {field}, or let a hidden population learn by a gradient rule"
    return [f"no synapse in this network learns from the task's targets: no projection into the output population "
            f"'{output.name}' learns from the loss ('{first.name}' {why}, set at {field}), and no hidden population "
            f"learns from an error, so the held-out score will stay near chance; fix: {fix}"]


def _rule_field(scenario: Scenario, index: int) -> str:
    """The field that sets the learning rule of projection ``index``: its own override, its
    postsynaptic population's, or the network-wide one."""
    spec = scenario.projections[index]
    if spec.learning is not None and spec.learning.rule is not None:
        return f"projections[{index}].learning.rule"
    names = [p.name for p in scenario.populations]
    post = scenario.populations[names.index(spec.post)]
    if post.learning is not None and post.learning.rule is not None:
        return f"populations[{names.index(spec.post)}].learning.rule"
    return "learning.rule"
