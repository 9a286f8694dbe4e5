"""The guided populations of a network: what each executor needs to build the same guides.

For every population with a guide, shared code fixes the guide spec, the coupling (with its
random hyperplanes or direction drawn from the scenario seed), the meta-controller, and the
width of the feature rows and signatures.  Executors build their guides from this and from
:func:`guide_rng`, so they start from the same state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ribbed.coupling import Coupling, make_coupling
from ribbed.errors import Problem, ScenarioError
from ribbed.meta import MetaController, make_controller
from ribbed.meta.hierarchy import MAX_UNITS
from ribbed.meta.evolution import TREE_LR, Births, EvolutionState, KindSettings, initial_population
from ribbed.scenarios.guidance import LinearGuideSpec, MLPGuideSpec, TreeGuideSpec
from ribbed.seeding import component_rng

__all__ = ["GuidedPopulation", "guidance_warnings", "guided_populations", "messages_of_guidance", "n_context_columns",
           "n_guide_features"]


def n_context_columns(n_targets: int) -> int:
    """Width of the task's context: the targets, the surprise, and the targets times the surprise
    (:func:`ribbed.agents.guides.task_context` builds it)."""
    return 2 * n_targets + 1


def n_guide_features(n_context: int) -> int:
    """Width of a feature row: u, y, f'(u), the context, and the context gated by f'(u)
    (:func:`ribbed.agents.guides.guide_features` builds it).  The widths live here, with the
    guided populations' description, so that building a network loads neither torch nor
    scikit-learn, which the guides themselves need."""
    return 3 + 2 * n_context


@dataclass(eq=False)
class GuidedPopulation:
    """One guided population: its guide spec, coupling and meta-controller."""

    population: Any  # PopulationInfo
    guide: Any  # GuideSpec
    coupling: Coupling
    controller: MetaController
    n_context: int
    seed: int
    #: The projections leaving the population, in declaration order (for identity features).
    outgoing: tuple = ()
    #: The first of them into the output population, or None.
    to_output: Any = None
    #: (fan-out, identity_dims), the fixed random projection of a large fan-out, or None.
    identity_projection: np.ndarray | None = None
    #: The meta spec's ``hierarchy`` section, or None (docs/semantics.md, "Hierarchical meta units").
    hierarchy: Any = None

    @property
    def name(self) -> str:
        return self.population.name

    @property
    def identity(self) -> tuple[str, ...]:
        return tuple(getattr(self.guide, "identity", ()))

    @property
    def n_identity(self) -> int:
        """Width of the identity features (docs/semantics.md, "Guided learning")."""
        width = 4 if "readout" in self.identity else 0
        if "weights" in self.identity:
            fan_out = sum(p.post.size for p in self.outgoing)
            width += fan_out if self.identity_projection is None else self.identity_projection.shape[1]
        return width

    @property
    def n_features(self) -> int:
        return n_guide_features(self.n_context) + self.n_identity

    def identity_weights(self, weights_of: Callable[[Any], np.ndarray]) -> tuple[np.ndarray | None, np.ndarray | None] | None:
        """The weights the identity features are made of, from each outgoing projection's weights
        in canonical (post, pre) order (``weights_of(projection)``, what an executor's
        ``read("weights", name)`` gives): for ``weights``, per neuron its outgoing weights (n,
        fan-out), through the fixed random projection when there is one; for ``readout``, its
        weights into the output population (n, n_outputs); None where not asked for, and None
        without identity features.  Shared numpy code, in float64, so that every executor starts
        from the same numbers."""
        if not self.identity:
            return None
        n = self.population.size

        def columns(projection) -> np.ndarray:
            matrix = np.zeros((n, projection.post.size))
            matrix[projection.pre_idx, projection.post_idx] = np.asarray(weights_of(projection), dtype=np.float64)
            return matrix

        outgoing = to_output = None
        if "weights" in self.identity:
            outgoing = np.concatenate([columns(p) for p in self.outgoing], axis=1)
            if self.identity_projection is not None:
                outgoing = outgoing @ self.identity_projection
        if "readout" in self.identity:
            to_output = columns(self.to_output)
        return outgoing, to_output

    @property
    def evolution(self) -> Any:
        """The guide's ``evolution`` section, or None (docs/semantics.md, "Evolving guides")."""
        return getattr(self.guide, "evolution", None)

    def kind_settings(self) -> tuple[KindSettings, ...]:
        """Per evolving kind, in the order of ``evolution.kinds``, what its candidates share: the
        guide's own settings for its kind (an mlp's hidden, optimizer and lr; a linear guide's
        ridge and lr = 1 - forget; a tree's max_depth, min_samples_leaf, buffer and refit_every),
        the kind's defaults for the others.  A tree's lr is unused: TREE_LR, carried by its genome
        so that a descendant of another kind inherits one."""
        defaults = {"linear": LinearGuideSpec(kind="linear"), "mlp": MLPGuideSpec(kind="mlp"),
                    "tree": TreeGuideSpec(kind="tree")}
        settings = []
        for name in self.evolution.kinds:
            spec = self.guide if self.guide.kind == name else defaults[name]
            if name == "linear":
                settings.append(KindSettings("linear", lr=1.0 - spec.forget, ridge=spec.ridge))
            elif name == "tree":
                settings.append(KindSettings("tree", lr=TREE_LR, max_depth=spec.max_depth,
                                             min_samples_leaf=spec.min_samples_leaf, buffer=spec.buffer,
                                             refit_every=spec.refit_every))
            else:
                settings.append(KindSettings("mlp", lr=spec.lr, hidden=spec.hidden, optimizer=spec.optimizer))
        return tuple(settings)

    def initial_evolution(self) -> tuple[EvolutionState, Births]:
        """Generation 0 of the candidates of every guide (shared code: every executor starts from
        the same genomes and first-layer weights)."""
        return initial_population(self.evolution, self.kind_settings(), self.coupling.n_guides, self.n_features,
                                  self.seed, self.name)

    def refits_at(self, tick: int) -> bool:
        """Whether replay guides (tree, sklearn), or tree candidates, refit at the end of this tick's
        guide stage."""
        every = getattr(self.guide, "refit_every", None)
        if self.evolution is not None:
            every = next((s.refit_every for s in self.kind_settings() if s.name == "tree"), None)
        return every is not None and (tick + 1) % every == 0

    def guide_rng(self) -> np.random.Generator:
        """The generator the population's initial guides are drawn from (first draw: the MLP
        guides' first layers, or the tree guides' random_state)."""
        return component_rng(self.seed, "guides", self.name)


def guided_populations(scenario, populations: dict, n_context: int,
                       projections: tuple = ()) -> dict[str, GuidedPopulation]:
    """The guided populations of a scenario, in declaration order (``projections``: the network's
    ProjectionInfo, which identity features read)."""
    guided = {}
    for spec in scenario.populations:
        if spec.guide is None:
            continue
        info = populations[spec.name]
        coupling = make_coupling(scenario.population_coupling(spec), info.size, n_context,
                                 component_rng(scenario.seed, "coupling", spec.name))
        outgoing = tuple(p for p in projections if p.pre.name == spec.name)
        to_output = next((p for p in outgoing if p.post.role == "output"), None)
        projection = None
        identity = tuple(getattr(spec.guide, "identity", ()))
        where = f"populations[{info.index}].guide.identity"
        if "readout" in identity and to_output is None:
            raise ScenarioError(Problem(
                scenario.source, where,
                f"population '{spec.name}' does not project into the output population, so its neurons have no "
                "weight to the sample's target to read ('readout')",
                "use identity: [weights] for a population further from the output, or add a projection into it"))
        if "weights" in identity:
            if not outgoing:
                raise ScenarioError(Problem(
                    scenario.source, where,
                    f"population '{spec.name}' has no outgoing projection, so its neurons have no outgoing weights "
                    "to tell them apart", "remove 'weights' from identity, or project the population somewhere"))
            fan_out = sum(p.post.size for p in outgoing)
            dims = spec.guide.identity_dims
            if fan_out > dims:
                rng = component_rng(scenario.seed, "identity", spec.name)
                projection = rng.standard_normal((fan_out, dims)) / np.sqrt(dims)
        meta = scenario.population_meta(spec)
        if meta.hierarchy is not None:
            _check_hierarchy(scenario, spec, info, coupling)
        guided[spec.name] = GuidedPopulation(
            population=info, guide=spec.guide, coupling=coupling,
            controller=make_controller(meta, scenario.schedule.backward_every),
            n_context=n_context, seed=scenario.seed, outgoing=outgoing, to_output=to_output,
            identity_projection=projection, hierarchy=meta.hierarchy,
        )
    return guided


def _check_hierarchy(scenario, spec, info, coupling: Coupling) -> None:
    """A hierarchy groups meta units that serve several neurons, and correlates every pair of them."""
    where = (f"populations[{info.index}].meta.hierarchy" if spec.meta is not None else "meta.hierarchy")
    if coupling.kind == "direct":
        raise ScenarioError(Problem(
            scenario.source, where,
            f"population '{spec.name}' has direct coupling, whose meta units are single neurons: a hierarchy groups "
            "meta units that each pool several neurons' credit",
            "use coupling kind hash or tree for this population, or remove meta.hierarchy"))
    if coupling.n_units > MAX_UNITS:
        raise ScenarioError(Problem(
            scenario.source, where,
            f"population '{spec.name}' has {coupling.n_units} meta units; a hierarchy correlates every pair of them "
            f"and takes at most {MAX_UNITS}",
            "use fewer hash bits or a larger tree leaf_size, or remove meta.hierarchy"))


def messages_of_guidance(guided: dict[str, GuidedPopulation], backward: bool) -> dict[str, int]:
    """Messages the guide and meta stages of one tick send, by kind name (docs/semantics.md)."""
    counts = {"target": 0, "guidance": 0, "feedback": 0, "modulation": 0, "reward": 0}
    for g in guided.values():
        n, depth = g.population.size, g.coupling.depth
        counts["target"] += n
        counts["guidance"] += 2 * n * depth
        if backward and g.population.needs_credit:
            counts["feedback"] += n * depth
        counts["modulation"] += n
        if g.controller.needs_loss:
            counts["reward"] += g.coupling.n_units
        if g.hierarchy is not None:  # each unit's profile to the group agent, and its group's alpha back
            counts["feedback"] += g.coupling.n_units
            counts["modulation"] += g.coupling.n_units
    return counts


def guidance_warnings(guided: dict[str, GuidedPopulation], ticks: int) -> list[str]:
    """Settings that are valid but probably not what was meant."""
    warnings = []
    for name, g in guided.items():
        size, coupling = g.population.size, g.coupling
        every = getattr(g.guide, "refit_every", None)
        if every is not None and every > ticks:
            warnings.append(f"the {g.guide.kind} guides of '{name}' refit every {every} ticks, more than the run's "
                            f"{ticks}: they never fit and always predict 0")
        if coupling.kind == "hash" and coupling.n_guides > size:
            warnings.append(f"population '{name}' has {size} neurons and {coupling.n_guides} hash buckets: "
                            "most guides can serve no one (use fewer bits)")
        if coupling.kind == "tree" and coupling.leaf_size >= size:
            warnings.append(f"the tree coupling of '{name}' has leaves of {coupling.leaf_size} and {size} neurons: "
                            "one guide serves them all (use a smaller leaf_size)")
    return warnings
