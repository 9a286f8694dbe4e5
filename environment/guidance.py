"""The guided populations of a network: what each executor needs to build the same guides.

For every population with a guide, shared code fixes the guide spec, the coupling (with its
random hyperplanes or direction drawn from the scenario seed), the meta-controller, and the
width of the feature rows and signatures.  Executors build their guides from this and from
:func:`guide_rng`, so they start from the same state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ribbed.coupling import Coupling, make_coupling
from ribbed.meta import MetaController, make_controller
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

    @property
    def name(self) -> str:
        return self.population.name

    @property
    def n_features(self) -> int:
        return n_guide_features(self.n_context)

    def refits_at(self, tick: int) -> bool:
        """Whether replay guides (tree, sklearn) refit at the end of this tick's guide stage."""
        every = getattr(self.guide, "refit_every", None)
        return every is not None and (tick + 1) % every == 0

    def guide_rng(self) -> np.random.Generator:
        """The generator the population's initial guides are drawn from (first draw: the MLP
        guides' first layers, or the tree guides' random_state)."""
        return component_rng(self.seed, "guides", self.name)


def guided_populations(scenario, populations: dict, n_context: int) -> dict[str, GuidedPopulation]:
    """The guided populations of a scenario, in declaration order."""
    guided = {}
    for spec in scenario.populations:
        if spec.guide is None:
            continue
        info = populations[spec.name]
        coupling = make_coupling(scenario.population_coupling(spec), info.size, n_context,
                                 component_rng(scenario.seed, "coupling", spec.name))
        guided[spec.name] = GuidedPopulation(
            population=info, guide=spec.guide, coupling=coupling,
            controller=make_controller(scenario.population_meta(spec), scenario.schedule.backward_every),
            n_context=n_context, seed=scenario.seed,
        )
    return guided


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
