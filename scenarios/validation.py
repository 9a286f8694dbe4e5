"""Every rule a scenario must satisfy beyond the types of its fields, in one place.

The rules come in two groups:

- **consistency**: rules between fields of the scenario alone (a projection names a population
  that exists, sizes agree with the task, guides only where there is credit to predict...).
  The schema runs them whenever a :class:`~ribbed.scenarios.schema.Scenario` is built, so a
  scenario object is consistent by construction and a file's errors carry their line (the
  loader places them);
- **the run's circumstances**: rules that depend on the machine (the GPU asked for is there,
  Ray is installed, the run fits in the memory there is: :mod:`ribbed.scenarios.size`) or on
  Python objects handed over beside the scenario (the scikit-learn estimators of
  ``guide: sklearn`` populations), which a file cannot show.

:func:`validate` runs both (the first again, for a scenario changed in place after it was built)
and names every problem at once. ``ribbed validate``, ``ribbed run`` (the runner) and
:class:`~ribbed.model.NetworkModel` call it; torch and Ray are imported only when a rule needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Mapping, NamedTuple

from ribbed.errors import Problem, RibbedError, ScenarioError
from ribbed.resources import MemoryLimit, available_memory
from ribbed.scenarios.base import MAX_NEURONS
from ribbed.scenarios.graphs import BIPARTITE, GeneratorCallError, bound_arguments, graph_shape, networkx_generator
from ribbed.scenarios.paths import field_path
from ribbed.scenarios.schema import GRADIENT_RULES, STDP_RULES, task_shape
from ribbed.scenarios.size import estimate_size, parse_size, size_problems

if TYPE_CHECKING:
    from ribbed.scenarios.schema import ProjectionSpec, Scenario

__all__ = ["Finding", "backend_problems", "consistency_findings", "device_problem", "estimator_problems", "timed_field",
           "memory_limit", "validate"]


class Finding(NamedTuple):
    """One inconsistency: where (a pydantic location: a tagged union's tag follows its field, as
    in pydantic's own errors), what, the offending value, and how to fix it."""

    loc: tuple
    message: str
    value: Any
    fix: str


def validate(scenario: Scenario, *, guides: Mapping[str, Any] | None = None,
             max_memory: int | str | MemoryLimit | None = None) -> None:
    """Check every rule of ``scenario`` (see the module docstring); raise one
    :class:`~ribbed.errors.ScenarioError` naming every problem found.

    ``guides`` maps each population with ``guide: {kind: sklearn}`` to its scikit-learn
    regressor (``NetworkModel(..., guides=...)``); a file cannot supply them, so None (none
    given) refuses a scenario with such a guide.  ``max_memory`` bounds the run's estimated
    memory (bytes, or a size such as ``"8G"``); None: what this machine has available
    (:func:`memory_limit`)."""
    limit = memory_limit(max_memory)
    problems = [Problem(scenario.source, field_path(finding.loc, type(scenario)), finding.message, finding.fix)
                for finding in consistency_findings(scenario)]
    if not problems:  # the estimate needs a consistent scenario (known populations, a generator that binds)
        problems += size_problems(scenario, estimate_size(scenario), limit.bytes if limit else None,
                                  limit.source if limit else "")
    problems += backend_problems(scenario)
    problems += estimator_problems(scenario, guides or {})
    if problems:
        raise ScenarioError(problems)


def memory_limit(max_memory: int | str | MemoryLimit | None = None) -> MemoryLimit | None:
    """The bound a run's estimate must fit: ``max_memory`` (bytes, or ``"8G"``, ``"512M"``; K, M,
    G, T are powers of 1024) when given, else the memory this machine has available
    (:func:`ribbed.resources.available_memory`; None when it cannot be read).  A size that
    cannot be read is a :class:`~ribbed.errors.RibbedError`."""
    if max_memory is None:
        return available_memory()
    if isinstance(max_memory, MemoryLimit):
        return max_memory
    try:
        value = parse_size(max_memory)
    except ValueError as exc:
        raise RibbedError(Problem("--max-memory", "", f"{exc}", "give bytes (1000000000) or a number with K, M, "
                                  "G or T (512M, 8G, 1.5T; powers of 1024)")) from None
    return MemoryLimit(value, f"set by --max-memory {max_memory}")


# --------------------------------------------------------------------------- the backend


def backend_problems(scenario: Scenario) -> list[Problem]:
    """What keeps the scenario's executor from running here as asked: the reference executor
    computes on the CPU in float64 only, the batched one needs the device it names, the Ray one
    needs Ray and computes on the CPU."""
    backend, source = scenario.backend, scenario.source
    problems: list[Problem] = []
    if backend.kind == "reference" and backend.device not in ("auto", "cpu"):
        problems.append(Problem(source, "backend.device", "the reference executor computes on the CPU",
                                "remove backend.device (or set 'device: cpu'), or use 'backend: {kind: batched}' "
                                "for a GPU"))
    if backend.kind == "reference" and backend.dtype == "float32":
        problems.append(Problem(source, "backend.dtype", "the reference executor computes in float64 only",
                                "remove backend.dtype, or use 'backend: {kind: batched, dtype: float32}'"))
    if backend.kind == "batched":
        problem = device_problem(scenario)
        if problem is not None:
            problems.append(problem)
    if backend.kind == "ray":
        if backend.device not in ("auto", "cpu"):
            problems.append(Problem(source, "backend.device", "the ray executor's shards compute on the CPU",
                                    "remove backend.device (or set 'device: cpu'), or use 'backend: {kind: batched}' "
                                    "for a GPU"))
        try:
            import ray  # noqa: F401
        except ImportError:
            problems.append(Problem(source, "backend.kind", "the ray executor needs Ray, which is not installed",
                                    "pip install 'ray>=2.9', or use 'backend: {kind: batched}'"))
    return problems


def device_problem(scenario: Scenario) -> Problem | None:
    """Why the scenario's ``backend.device`` cannot be had here (None when it can): an explicit
    cuda device needs torch to see that GPU; ``auto`` and ``cpu`` always can."""
    requested = scenario.backend.device
    if requested in ("auto", "cpu"):
        return None
    import torch

    device = torch.device(requested)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            found = "no GPU is available to torch" if count == 0 else f"torch sees {count} GPU(s)"
            return Problem(scenario.source, "backend.device", f"'{requested}' was requested but {found}",
                           "use 'device: auto' or 'device: cpu' (or --device cpu)")
    return None


# --------------------------------------------------------------------------- estimators


def estimator_problems(scenario: Scenario, guides: Mapping[str, Any]) -> list[Problem]:
    """Estimators given for exactly the populations with ``guide: {kind: sklearn}``, each a
    scikit-learn regressor (it has fit, predict and get_params, which cloning needs)."""
    source = scenario.source
    kinds = {p.name: (i, p.guide.kind if p.guide is not None else None) for i, p in enumerate(scenario.populations)}
    problems: list[Problem] = []
    for name, estimator in guides.items():
        if name not in kinds or kinds[name][1] != "sklearn":
            where = f"populations[{kinds[name][0]}].guide" if name in kinds else "populations"
            problems.append(Problem(source, where, f"an estimator was given for population '{name}', whose guide "
                                    "is not of kind sklearn", f"set 'guide: {{kind: sklearn}}' on population "
                                    f"'{name}', or leave it out of guides="))
        elif not (hasattr(estimator, "fit") and hasattr(estimator, "predict") and hasattr(estimator, "get_params")):
            problems.append(Problem(source, f"populations[{kinds[name][0]}].guide",
                                    f"the guide given for '{name}' is not a scikit-learn regressor "
                                    f"({type(estimator).__name__})", "pass an estimator with fit, predict "
                                    "and get_params, e.g. sklearn.neighbors.KNeighborsRegressor()"))
    for name, (i, kind) in kinds.items():
        if kind == "sklearn" and name not in guides:
            problems.append(Problem(source, f"populations[{i}].guide",
                                    f"population '{name}' has a guide of kind sklearn, and no estimator was given",
                                    f"pass it from Python: NetworkModel(scenario, guides={{'{name}': "
                                    "estimator}), or use guide kind tree, linear or mlp"))
    return problems


# --------------------------------------------------------------------------- consistency


def consistency_findings(s: Scenario) -> Iterator[Finding]:
    """Every inconsistency between fields of a parsed scenario (the rules that need the scenario alone)."""
    names = [p.name for p in s.populations]
    sizes = {p.name: p.size for p in s.populations}
    for i, population in enumerate(s.populations):
        if names.index(population.name) != i:
            yield Finding(("populations", i, "name"), f"population name '{population.name}' is used twice",
                          population.name, "give every population its own name")

    # A missing role or a projection naming an unknown population leaves the graph checks
    # below with nothing sound to check: they would only repeat the first error in other words.
    broken = False
    for role in ("input", "output"):
        holders = [i for i, p in enumerate(s.populations) if p.role == role]
        if not holders:
            broken = True
            yield Finding(("populations",), f"no population has role: {role}", names,
                          f"set 'role: {role}' on the population the task should "
                          + ("feed" if role == "input" else "judge"))
        for i in holders[1:]:
            yield Finding(("populations", i, "role"), f"only one population can have role: {role}",
                          role, "set 'role: hidden' on all but one")

    every = s.log.snapshot_every
    if every is not None and every % s.run.eval_every:
        yield Finding(("log", "snapshot_every"), f"snapshots are taken at evaluations, and {every} is not a "
                      f"multiple of run.eval_every ({s.run.eval_every})", every,
                      f"use a multiple of {s.run.eval_every}, or leave log.snapshot_every out")

    total = sum(sizes.values())
    if total > MAX_NEURONS:
        yield Finding(("populations",), f"the populations hold {total} neurons together, more than {MAX_NEURONS}",
                      total, "use smaller populations")

    labels: dict[str, int] = {}
    for i, projection in enumerate(s.projections):
        for end in ("pre", "post"):
            target = getattr(projection, end)
            if target not in sizes:
                broken = True
                yield Finding(("projections", i, end), f"unknown population '{target}'", target,
                              "name one of: " + ", ".join(names))
        if projection.label in labels:
            yield Finding(("projections", i, "name"), f"projection name '{projection.label}' is used twice",
                          projection.label, "give the projections distinct 'name's")
        labels.setdefault(projection.label, i)
        if projection.pre not in sizes or projection.post not in sizes:
            continue
        if s.population(projection.post).role == "input":
            yield Finding(("projections", i, "post"), "the input population receives no projections",
                          projection.post, "project into a hidden or output population")
        yield from _connectivity(i, projection, sizes[projection.pre], sizes[projection.post])

    if not broken:
        incoming = {p.post for p in s.projections}
        for i, population in enumerate(s.populations):
            if population.role != "input" and population.name not in incoming:
                yield Finding(("populations", i, "name"), f"population '{population.name}' receives no projection",
                              population.name, f"add a projection with 'post: {population.name}', or remove it")

        inputs = [p.name for p in s.populations if p.role == "input"]
        for i, population in enumerate(s.populations):
            if population.role == "output" and population.name not in _reachable(s, inputs[0]):
                yield Finding(("populations", i, "role"),
                              f"the output population '{population.name}' is not reachable from the input population",
                              population.name, "add projections that lead from the input population to it")

    yield from _guidance(s)
    yield from _broadcast(s)
    yield from _timing(s)

    if s.task.kind == "npz" and s.task.problem == "regression" and s.task.loss == "cross_entropy":
        yield Finding(("task", "loss"), "cross_entropy needs class labels, and this task is a regression",
                      s.task.loss, "use loss: mse, or problem: classification")

    shape = task_shape(s.task)
    if shape is not None:
        for role, n, what in (("input", shape[0], "inputs"), ("output", shape[1], "outputs")):
            for i, population in enumerate(s.populations):
                if role == "input" and population.role == role and s.encoding.kind == "sequence":
                    yield from sequence_size_findings(s, n, i)
                elif population.role == role and population.size != n:
                    yield Finding(("populations", i, "size"),
                                  f"task '{s.task.kind}' has {n} {what} but population "
                                  f"'{population.name}' has {population.size} neurons",
                                  population.size, f"set size: {n}")


def sequence_size_findings(s: Scenario, n_features: int, i: int) -> Iterator[Finding]:
    """The sequence encoding feeds a sample's n features as T steps of (input size) features:
    n must be T x the input population's size (i its index)."""
    steps, size = s.run.steps_per_sample, s.populations[i].size
    if n_features == steps * size:
        return
    message = (f"the sequence encoding feeds the {n_features} features of task '{s.task.kind}' as "
               f"run.steps_per_sample = {steps} steps of {size} inputs (the size of '{s.populations[i].name}'), "
               f"and {steps} x {size} = {steps * size}")
    if n_features % steps == 0:
        yield Finding(("populations", i, "size"), message, size, f"set size: {n_features // steps}")
    else:
        divisors = [d for d in range(2, n_features + 1) if n_features % d == 0][:6]
        yield Finding(("run", "steps_per_sample"), message, steps,
                      f"choose steps_per_sample dividing {n_features} (e.g. {', '.join(map(str, divisors))}) and "
                      "an input size of features / steps")


def _reachable(s: Scenario, start: str) -> set[str]:
    seen, frontier = {start}, [start]
    while frontier:
        current = frontier.pop()
        for projection in s.projections:
            if projection.pre == current and projection.post not in seen:
                seen.add(projection.post)
                frontier.append(projection.post)
    return seen


def _connectivity(i: int, projection: ProjectionSpec, n_pre: int, n_post: int) -> Iterator[Finding]:
    c = projection.connectivity
    # The rule's tag is part of the location, as in pydantic's own errors, so the loader strips
    # it the same way; without it the 'edges' field of an edge list would be taken for the tag.
    loc = ("projections", i, "connectivity", c.rule)
    self_projection = projection.pre == projection.post
    if c.rule == "one_to_one" and n_pre != n_post:
        yield Finding(loc + ("rule",), f"one_to_one needs equal sizes (pre {n_pre}, post {n_post})",
                      c.rule, "use populations of the same size or another rule")
    if c.rule == "fixed_in_degree":
        available = n_pre - (1 if self_projection and not c.allow_self_connections else 0)
        if c.k > available:
            yield Finding(loc + ("k",), f"k={c.k} exceeds the {available} available presynaptic neurons",
                          c.k, f"use k <= {available}")
    if c.rule == "edges":
        seen: dict[tuple[int, int], int] = {}
        for e, (a, b) in enumerate(c.edges):
            if a >= n_pre or b >= n_post:
                yield Finding(loc + ("edges", e), f"edge [{a}, {b}] is out of range for sizes pre {n_pre}, post {n_post}",
                              [a, b], "use indices local to each population, starting at 0")
            if (a, b) in seen:
                yield Finding(loc + ("edges", e), f"edge [{a}, {b}] is listed twice (first at {seen[(a, b)]})",
                              [a, b], "list each synapse once")
            seen.setdefault((a, b), e)
    if c.rule == "networkx":
        yield from _generator(loc, c, n_pre, n_post, self_projection)


def _generator(loc: tuple, c: Any, n_pre: int, n_post: int, self_projection: bool) -> Iterator[Finding]:
    """A networkx rule's generator exists, can be called with the projection's sizes and params,
    and (where ribbed knows its formula) makes a graph of the nodes the projection needs; all
    from its signature and arguments, without running it."""
    try:
        networkx_generator(c.generator)
    except ValueError as exc:
        yield Finding(loc + ("generator",), str(exc), c.generator,
                      "name a generator function of networkx, e.g. 'erdos_renyi_graph'")
        return
    sizes = (n_pre,) if self_projection else (n_pre, n_post)
    try:
        args = bound_arguments(c.generator, sizes, c.params)
    except GeneratorCallError as exc:
        yield Finding(loc + (exc.key,), str(exc), c.params if exc.key == "params" else c.generator, exc.fix)
        return
    shape = graph_shape(c.generator, sizes, args)
    expected = sum(sizes)
    if shape.nodes is not None and shape.nodes != expected:
        if self_projection:
            message = (f"{c.generator}(n={n_pre}, **params) makes a graph of {_count(shape.nodes)} nodes, and the "
                       f"population has {n_pre} neurons")
            fix = ("use a generator whose graph has one node per neuron (watts_strogatz_graph, erdos_renyi_graph, "
                   "barabasi_albert_graph...)")
        elif c.generator not in BIPARTITE:
            message = (f"between two populations the generator is called as {c.generator}(n_pre={n_pre}, "
                       f"n_post={n_post}, **params), which makes a graph of {_count(shape.nodes)} nodes, not the "
                       f"n_pre + n_post = {expected} this projection needs")
            fix = ("between two populations use a bipartite generator (bipartite.random_graph with params {p: ...}, "
                   "bipartite.gnmk_random_graph with params {k: ...}, or complete_bipartite_graph), or project a "
                   "population onto itself")
        else:
            message = f"{c.generator} makes a graph of {_count(shape.nodes)} nodes; this projection needs {expected}"
            fix = "leave the node counts to the call (n_pre, n_post): remove them from params"
        yield Finding(loc + ("generator",), message, c.generator, fix)


def _count(nodes: int) -> str:
    return f"{nodes:,}" if nodes < 2**63 else "more than 2^63"


def _guidance(s: Scenario) -> Iterator[Finding]:
    """Guides only where there is credit to predict; coupling and meta only where there are guides."""
    guided = False
    for i, population in enumerate(s.populations):
        if population.guide is None:
            for section in ("coupling", "meta"):
                if getattr(population, section) is not None:
                    yield Finding(("populations", i, section), f"population '{population.name}' has no guide, "
                                  f"so its {section} has nothing to act on", section,
                                  f"add 'guide: mlp' (or tree, linear) to the population, or remove '{section}'")
            continue
        if population.role != "hidden":
            yield Finding(("populations", i, "guide"), f"guides predict the credit of hidden neurons, and "
                          f"'{population.name}' is the {population.role} population", population.guide.kind,
                          "move the guide to a hidden population")
            continue
        rule = s.population_learning(population).rule
        rules = {rule} | {s.projection_learning(p).rule for p in s.projections if p.post == population.name}
        if not rules & set(GRADIENT_RULES):
            yield Finding(("populations", i, "guide"), f"population '{population.name}' learns by the {rule} rule, "
                          "which uses no credit for a guide to predict", population.guide.kind,
                          "use a gradient rule (backprop, feedback_alignment, direct_feedback_alignment) for it, "
                          "or remove the guide")
            continue
        guided = True
    if not guided:
        for section in ("coupling", "meta"):
            if getattr(s, section) is not None:
                yield Finding((section,), f"no population has a guide, so '{section}' has nothing to act on",
                              getattr(s, section).kind, "add 'guide: mlp' (or tree, linear) to a hidden population, "
                              f"or remove '{section}'")


def _broadcast(s: Scenario) -> Iterator[Finding]:
    """Broadcast credit only for hidden populations that learn from credit and have no guide (a
    guided population already sees the broadcast, through its guides' features)."""
    for i, population in enumerate(s.populations):
        if population.broadcast is None:
            continue
        loc = ("populations", i, "broadcast")
        kind = population.broadcast.kind
        if population.role != "hidden":
            yield Finding(loc, f"broadcast credit stands in for the propagated error of hidden neurons, and "
                          f"'{population.name}' is the {population.role} population", kind,
                          "move 'broadcast' to a hidden population")
        elif population.guide is not None:
            yield Finding(loc, f"population '{population.name}' has a guide, whose features already carry the "
                          "broadcast; broadcast credit is the unguided control", kind,
                          "remove 'broadcast' (or the guide, to run the control)")
        else:
            rule = s.population_learning(population).rule
            rules = {rule} | {s.projection_learning(p).rule for p in s.projections if p.post == population.name}
            if not rules & set(GRADIENT_RULES):
                yield Finding(loc, f"population '{population.name}' learns by the {rule} rule, which uses no credit",
                              kind, "use a gradient rule (backprop, feedback_alignment, direct_feedback_alignment) "
                              "for it, or remove 'broadcast'")


# --------------------------------------------------------------------------- time within a tick

#: Rules whose arithmetic over the steps of a tick is not defined yet (docs/semantics.md, "Time
#: within a tick", "Learning over the steps").
_UNTIMED_RULES = ("hebbian",)


def _timing(s: Scenario) -> Iterator[Finding]:
    """Firing policies on the neurons that compute, readouts on the output, and, where a tick has
    time in it, only what is defined over the steps."""
    for i, population in enumerate(s.populations):
        firing = s.population_firing(population)
        if population.role == "input" and population.firing is not None:
            yield Finding(("populations", i, "firing"), "input neurons pass the task's input on; how they present it "
                          "over the steps is the task's encoding", firing.policy,
                          "remove 'firing' from the input population, and set task.encoding (direct, rate, latency, "
                          "sequence)")
        if population.readout is None:
            continue
        loc = ("populations", i, "readout")
        if population.role != "output":
            yield Finding(loc, f"a readout is what the task judges of the output population, and '{population.name}' "
                          f"is the {population.role} population", population.readout,
                          "move 'readout' to the output population")
        elif population.readout == "count" and not firing.spiking:
            yield Finding(loc, f"the output population '{population.name}' follows the rate policy: it emits no "
                          "spikes to count", population.readout,
                          "use readout: mean, or give it a spiking firing policy (threshold, lif, random)")
        elif population.readout == "membrane" and firing.policy != "lif":
            yield Finding(loc, f"only a lif neuron has a membrane, and '{population.name}' follows the "
                          f"{firing.policy} policy", population.readout,
                          "use readout: count (spiking) or mean, or give it firing: {policy: lif, beta: ...}")
    if s.run.bptt_window is not None and not s.timed:
        yield Finding(("run", "bptt_window"), "a BPTT window truncates credit over the steps of a sample, and this "
                      "scenario presents each sample for one step", s.run.bptt_window,
                      "remove bptt_window, or present samples for several steps (run.steps_per_sample)")
    yield from _stdp(s)
    if not s.timed:
        return
    why = "is not defined yet with time within a tick (more than one step per sample, or spikes)"
    undo = "or use run.steps_per_sample: 1, firing policy rate and the direct encoding everywhere"
    if s.schedule.backward_every > 1:
        yield Finding(("schedule", "backward_every"), f"skipping the propagated error {why}",
                      s.schedule.backward_every, f"use backward_every: 1, {undo}")
    for i, population in enumerate(s.populations):
        if population.role == "input":
            continue
        for section in ("guide", "broadcast"):
            if getattr(population, section) is not None:
                yield Finding(("populations", i, section), f"a population's {section} {why}",
                              getattr(population, section).kind, f"remove '{section}', {undo}")
        rules = {s.population_learning(population).rule}
        rules |= {s.projection_learning(p).rule for p in s.projections if p.post == population.name}
        for rule in sorted(rules & set(_UNTIMED_RULES)):
            yield Finding(("populations", i, "learning", "rule"), f"population '{population.name}' learns by the "
                          f"{rule} rule, which {why}", rule,
                          f"use backprop, feedback_alignment or direct_feedback_alignment, {undo}")


def _rule_loc(s: Scenario, i: int) -> tuple:
    """Where projection ``i``'s rule is set: its own learning override, its postsynaptic
    population's, or the network's."""
    projection = s.projections[i]
    if projection.learning is not None and projection.learning.rule is not None:
        return ("projections", i, "learning", "rule")
    names = [p.name for p in s.populations]
    post = s.population(projection.post)
    if post.learning is not None and post.learning.rule is not None:
        return ("populations", names.index(projection.post), "learning", "rule")
    return ("learning", "rule")


#: Spiking encodings: the input neurons emit spikes (docs/semantics.md, "Input encodings").
_SPIKING_ENCODINGS = ("rate", "latency", "poisson")


def _stdp(s: Scenario) -> Iterator[Finding]:
    """STDP and R-STDP need spikes on both sides of their synapses; R-STDP's reward must exist for
    the task; a conductance neuron has no gradient; carried state is per batch row."""
    names = {p.name for p in s.populations}
    classification = s.task.kind in ("digits", "moons", "xor") or (
        s.task.kind == "npz" and s.task.problem == "classification")
    for i, projection in enumerate(s.projections):
        if projection.pre not in names or projection.post not in names:
            continue
        learning = s.projection_learning(projection)
        pre, post = s.population(projection.pre), s.population(projection.post)
        if learning.rule in STDP_RULES and not projection.frozen:
            loc = _rule_loc(s, i)
            pre_spikes = (s.encoding.kind in _SPIKING_ENCODINGS if pre.role == "input"
                          else s.population_firing(pre).spiking)
            post_spikes = s.population_firing(post).spiking
            for end, population, spikes in (("pre", pre, pre_spikes), ("post", post, post_spikes)):
                if not spikes:
                    what = ("the task's encoding is " + s.encoding.kind if population.role == "input"
                            else "it follows the rate policy")
                    fix = ("set task.encoding to a spiking one (rate, latency, poisson)" if population.role == "input"
                           else f"give '{population.name}' a spiking firing policy (threshold, lif, random, "
                           "conductance)")
                    yield Finding(loc, f"projection '{projection.label}' learns by {learning.rule}, which pairs "
                                  f"spikes, but its {end}synaptic population '{population.name}' emits none "
                                  f"({what})", learning.rule, f"{fix}, or use another rule")
            if learning.rule == "r_stdp" and learning.stdp.reward in ("correct", "shuffled") and not classification:
                yield Finding(loc[:-1] + ("stdp", "reward"), f"projection '{projection.label}' is rewarded for a "
                              f"correct readout{' (shuffled)' if learning.stdp.reward == 'shuffled' else ''}, and "
                              f"task '{s.task.kind}' has no classes", learning.stdp.reward, "use reward: negative_loss")
        if (s.population_firing(post).policy == "conductance" and learning.rule in GRADIENT_RULES
                and not projection.frozen):
            yield Finding(_rule_loc(s, i), f"projection '{projection.label}' learns by {learning.rule} into the "
                          f"conductance population '{post.name}', and the conductance policy has no surrogate "
                          "gradient", learning.rule, "use rule: stdp (or r_stdp), or freeze the projection")
    rewards: dict[str, str] = {}
    for i, projection in enumerate(s.projections):
        learning = s.projection_learning(projection) if projection.post in names else None
        if learning is None or learning.rule != "r_stdp" or projection.frozen:
            continue
        first = rewards.setdefault(projection.post, learning.stdp.reward)
        if first != learning.stdp.reward:
            yield Finding(_rule_loc(s, i)[:-1] + ("stdp", "reward"), f"population '{projection.post}' is rewarded "
                          f"by one message per tick, and its R-STDP projections ask for {first} and "
                          f"{learning.stdp.reward}", learning.stdp.reward, f"use reward: {first} on both")
    for i, population in enumerate(s.populations):
        if (s.population_firing(population).policy == "conductance" and population.bias
                and population.role != "input" and s.population_learning(population).rule in GRADIENT_RULES):
            yield Finding(("populations", i, "bias"), f"population '{population.name}' would learn its bias by a "
                          "gradient rule, and the conductance policy has no surrogate gradient", True,
                          "set bias: false, or a non-gradient rule for the population")


def timed_field(s: Scenario) -> str | None:
    """The first field that gives the scenario time within a tick (None for today's tick): where
    an executor that does not run it yet points."""
    if s.run.steps_per_sample > 1:
        return "run.steps_per_sample"
    if s.encoding.kind != "direct":
        return "task.encoding"
    for i, population in enumerate(s.populations):
        if s.population_firing(population).spiking:
            return f"populations[{i}].firing"
        if population.role == "output" and s.population_readout(population) != "mean":
            return f"populations[{i}].readout"
    return None
