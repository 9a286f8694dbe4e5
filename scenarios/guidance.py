"""Scenario sections for guided learning: guides, coupling and meta-controllers.

A population with a ``guide`` gives each of its neurons access to an ML model that predicts the
neuron's credit signal (its delta) from local features; the ``coupling`` says how neurons reach
guides (one each, shared by hash bucket, or a hierarchy), and the ``meta`` controller how much
each neuron trusts its guide: the credit a neuron learns from is
``(1 - alpha) * propagated + alpha * guide_prediction`` (docs/semantics.md, "Guided learning").

Guides are named from a fixed registry (``tree``, ``linear``, ``mlp``); a scenario file never
names an import path.  ``sklearn`` stands for any scikit-learn regressor handed to
:class:`~ribbed.model.NetworkModel` from Python (``guides={"hidden": estimator}``).
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from ribbed.scenarios.base import MAX_COUNT, Strict, tagged_union

__all__ = [
    "ConfidenceMetaSpec", "CouplingSpec", "DirectCouplingSpec", "EvolutionSpec", "FixedMetaSpec", "GuideSpec",
    "HashCouplingSpec", "HierarchySpec", "LearnedMetaSpec", "LinearGuideSpec", "MLPGuideSpec", "MetaSpec", "SklearnGuideSpec", "TreeCouplingSpec",
    "TreeGuideSpec",
]


# --------------------------------------------------------------------------- guides


#: The guide kinds a candidate may be (docs/semantics.md, "Evolving guides"). ``sklearn`` is not one: an
#: estimator handed over from Python has no settings a genome could carry or a kind could default to.
EVOLVING_KINDS = ("linear", "mlp", "tree")
#: The default ``evolution.kinds``: the stackable kinds (tree candidates refit one by one on the CPU).
DEFAULT_KINDS = ("linear", "mlp")
SKLEARN_REFUSED = ("'sklearn' guides cannot evolve: an estimator handed over from Python has no settings a "
                   "genome could carry, and no default a candidate of another guide's kind could start from")


class MutationSpec(Strict):
    """How a newborn candidate's genome differs from its parent's."""

    lr_scale: float = Field(2.0, gt=1.0, le=1e3, description="The learning rate is multiplied by this, divided by "
                            "it, or kept, with probability 1/3 each.")
    mask_flip: float = Field(0.05, ge=0.0, le=1.0, description="Probability that each bit of the feature mask flips.")
    kind_change: float = Field(0.1, ge=0.0, le=1.0, description="Probability that the kind changes to another of "
                               "'kinds' (drawn uniformly).")


class FitnessSpec(Strict):
    """fitness = score * prequential score + memory / cost_mem + time / cost_time."""

    score: float = Field(1.0, ge=0.0, le=1e6, description="Weight of the prequential score (a running R^2).")
    memory: float = Field(0.0, ge=0.0, le=1e6, description="Weight of 1 / the candidate's parameter count.")
    time: float = Field(0.0, ge=0.0, le=1e6, description="Weight of 1 / the candidate's multiply-adds per row.")


class EvolutionSpec(Strict):
    """A population of candidate guides behind every guide: all predict every tick, each is scored
    prequentially on the credit that arrives, the fittest serves, and every ``generation_every``
    ticks they are selected, recombined and mutated from keyed seeds (docs/semantics.md,
    "Evolving guides")."""

    candidates: int = Field(4, gt=0, le=64, description="Candidate guides per guide (per meta unit).")
    selection: Literal["tournament", "random"] = Field(
        "tournament", description="How a generation makes its newborns: 'tournament' (selected by fitness, "
        "recombined and mutated from parents) or 'random' (random search, the control evolution must beat: "
        "genomes drawn afresh from the genome space, the elites kept).")
    kinds: list[str] = Field(default_factory=lambda: list(DEFAULT_KINDS),
                             description="The kinds a candidate may be: linear, mlp, tree (default: linear and mlp, "
                             "the stackable kinds; tree candidates are fitted one by one on the CPU).")
    generation_every: int = Field(50, gt=0, le=MAX_COUNT, description="Ticks per generation.")
    elites: int = Field(1, ge=0, le=64, description="The best candidates of each guide kept as they are.")
    tournament: int = Field(2, gt=0, le=64, description="Candidates drawn per tournament selection of a parent.")
    crossover: float = Field(0.5, ge=0.0, le=1.0, description="Probability that a newborn's feature mask mixes its "
                             "two parents' (uniform crossover).")
    mutation: MutationSpec = Field(default_factory=MutationSpec)
    protect_generations: int = Field(3, ge=0, le=MAX_COUNT, description="During the first this many generations, "
                                     "every kind keeps at least one candidate in every guide (speciation).")
    fitness: FitnessSpec = Field(default_factory=FitnessSpec)
    score_decay: float = Field(0.1, gt=0.0, le=1.0, description="Rate of the running means the score is made of.")

    @field_validator("kinds")
    @classmethod
    def _stackable(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("kinds is empty; name at least one of linear, mlp, tree")
        for kind in value:
            if kind == "sklearn":
                raise ValueError(f"{SKLEARN_REFUSED}; use kinds from [linear, mlp, tree]")
            if kind not in EVOLVING_KINDS:
                raise ValueError(f"unknown guide kind '{kind}'; kinds are from [linear, mlp, tree]")
        if len(set(value)) != len(value):
            raise ValueError(f"kinds names a kind twice: {value}; name each once")
        return value

    @model_validator(mode="after")
    def _room(self) -> EvolutionSpec:
        if self.candidates < len(self.kinds):
            raise ValueError(f"candidates ({self.candidates}) is fewer than kinds ({len(self.kinds)}): generation 0 "
                             "holds one candidate of every kind; raise candidates or name fewer kinds")
        if self.elites >= self.candidates:
            raise ValueError(f"elites ({self.elites}) must be fewer than candidates ({self.candidates}), or nothing "
                             "evolves; lower elites")
        if self.selection == "random" and self.elites < 1:
            raise ValueError("selection 'random' keeps the best candidate found so far as an elite: elites must be at "
                             "least 1; set elites: 1")
        if (self.selection == "tournament" and self.protect_generations
                and self.candidates - self.elites < len(self.kinds)):
            raise ValueError(f"protect_generations needs a newborn slot for every kind: candidates - elites = "
                             f"{self.candidates - self.elites} < {len(self.kinds)} kinds; lower elites, raise "
                             "candidates, or set protect_generations: 0")
        return self


class _IdentitySpec(Strict):
    """What every guide kind may add to its feature rows: each neuron's identity features, so that
    a guide shared by many neurons (hash buckets, tree nodes) can tell its members apart
    (docs/semantics.md, "Guided learning", identity)."""

    identity: list[Literal["readout", "weights"]] = Field(
        default_factory=list,
        description="Identity features appended to every feature row. 'readout': the neuron's weight into "
        "the output neuron of the sample's target, a (raw, times the surprise s, gated by f'(u), and both): "
        "a neuron's credit is f'(u) times its outgoing weights times the output error, whose right-class "
        "share is f'(u) s a, so a guide shared by many neurons can predict each one's own credit. "
        "'weights': the neuron's outgoing weights (through a fixed random projection to identity_dims "
        "when its fan-out is larger).",
    )
    identity_dims: int = Field(
        16, gt=0, le=1024,
        description="At most this many 'weights' features: a larger fan-out goes through a fixed "
        "random projection to this many dimensions.",
    )

    evolution: Optional[EvolutionSpec] = Field(
        None, description="Evolve a population of candidate guides behind every guide (linear, mlp and tree "
        "guides).")

    @model_validator(mode="after")
    def _own_kind_evolves(self):
        kind = getattr(self, "kind", None)
        if self.evolution is not None and kind not in self.evolution.kinds:
            raise ValueError(f"the guide's kind '{kind}' is not among evolution.kinds {self.evolution.kinds}: the "
                             "guide's settings are the base genome of its kind; add it to kinds")
        return self

    @field_validator("identity")
    @classmethod
    def _once(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"identity names a feature twice: {value}; name each once")
        return value


class _ReplayGuideSpec(_IdentitySpec):
    buffer: int = Field(4096, gt=0, le=2**24, description="Rows (neuron x sample) kept for refitting; the oldest go first.")
    refit_every: int = Field(20, gt=0, le=MAX_COUNT, description="Refit on the buffer every this many ticks.")


class TreeGuideSpec(_ReplayGuideSpec):
    """A scikit-learn regression tree (DecisionTreeRegressor), refit every ``refit_every`` ticks
    on a bounded replay buffer of (features, credit) rows."""

    kind: Literal["tree"]
    max_depth: int = Field(6, gt=0, le=32)
    min_samples_leaf: int = Field(8, gt=0, le=MAX_COUNT)


class SklearnGuideSpec(_ReplayGuideSpec):
    """Any scikit-learn regressor, supplied from Python (``NetworkModel(..., guides={POPULATION:
    estimator})``) and cloned per guide; trained like ``tree``."""

    kind: Literal["sklearn"]

    @field_validator("evolution")
    @classmethod
    def _no_genome(cls, value: EvolutionSpec | None) -> EvolutionSpec | None:
        if value is not None:
            raise ValueError(f"{SKLEARN_REFUSED}; give the guide kind linear, mlp or tree")
        return value


class LinearGuideSpec(_IdentitySpec):
    """Online least squares: ridge regression on exponentially forgotten sufficient statistics
    (X^T X, X^T c), solved after every credit delivery."""

    kind: Literal["linear"]
    ridge: float = Field(1e-3, gt=0.0, description="L2 penalty added to the diagonal of X^T X.")
    forget: float = Field(0.99, gt=0.0, le=1.0, description="Factor applied to the statistics before each update.")


class MLPGuideSpec(_IdentitySpec):
    """A tiny torch net (features -> hidden tanh units -> credit), one optimizer step on the
    squared error at every credit delivery; the output layer starts at zero, so a new guide
    predicts no credit."""

    kind: Literal["mlp"]
    hidden: int = Field(16, gt=0, le=1024)
    lr: float = Field(0.01, gt=0.0)
    optimizer: Literal["sgd", "adam"] = Field("adam", description="Update formulas as torch.optim's.")


GuideSpec = tagged_union("kind", TreeGuideSpec, SklearnGuideSpec, LinearGuideSpec, MLPGuideSpec)


# --------------------------------------------------------------------------- coupling


class _RegroupingSpec(Strict):
    signature_decay: float = Field(
        0.1, gt=0.0, le=1.0,
        description="Rate of the running average that forms each neuron's activity signature.",
    )


class DirectCouplingSpec(Strict):
    """One guide per neuron."""

    kind: Literal["direct"]


class HashCouplingSpec(_RegroupingSpec):
    """Neurons are hashed by their activity signature (random-hyperplane LSH) into 2^bits buckets;
    each bucket's ClusterAgent owns a shared guide. Re-hashed every ``rehash_every`` ticks; guides
    follow the majority of their members."""

    kind: Literal["hash"]
    bits: int = Field(3, gt=0, le=16, description="Hyperplanes; the population is hashed into 2^bits buckets.")
    rehash_every: int = Field(50, gt=0, le=MAX_COUNT)


class TreeCouplingSpec(_RegroupingSpec):
    """A balanced binary hierarchy of guides over the neurons ordered by signature; a neuron's
    guidance is the sum of the guides on its root path (each learns the residual of those above
    it), so lookup and update touch O(log n) guides. Re-ordered every ``reorder_every`` ticks."""

    kind: Literal["tree"]
    leaf_size: int = Field(8, gt=0, le=MAX_COUNT, description="Neurons under each leaf guide (at most).")
    reorder_every: int = Field(50, gt=0, le=MAX_COUNT)


CouplingSpec = tagged_union("kind", DirectCouplingSpec, HashCouplingSpec, TreeCouplingSpec)


# --------------------------------------------------------------------------- meta-controllers


class HierarchySpec(Strict):
    """A second level of meta units over the first (hash buckets, tree leaves): units whose
    members' mean credit and mean activity correlate are grouped, the same controller runs once
    per group, and each unit's alpha is blended with its group's (docs/semantics.md,
    "Hierarchical meta units")."""

    regroup_every: int = Field(50, gt=0, le=MAX_COUNT, description="Regroup the units every this many ticks.")
    threshold: float = Field(0.5, ge=-1.0, le=1.0, description="Units u, v are linked when both running "
                             "correlations (of their mean credit and of their mean activity) reach this.")
    decay: float = Field(0.1, gt=0.0, le=1.0, description="Rate of the running correlations.")
    weight: float = Field(0.5, ge=0.0, le=1.0, description="w: a unit sends (1 - w) alpha_unit + w alpha_group.")


class _MetaSpec(Strict):
    hierarchy: Optional[HierarchySpec] = Field(
        None, description="Group the meta units by correlated credit and activity under a second-level controller "
        "(hash and tree couplings).")


class FixedMetaSpec(_MetaSpec):
    """The same alpha for every neuron, all run long."""

    kind: Literal["fixed"]
    alpha: float = Field(0.5, ge=0.0, le=1.0)


class ConfidenceMetaSpec(_MetaSpec):
    """alpha = alpha_max * max(0, 1 - e / v) per neuron (direct) or cluster, with e the running
    mean squared error of the guide against the true credit and v the credit's running mean
    square: trust grows as the guide explains the credit."""

    kind: Literal["confidence"]
    decay: float = Field(0.1, gt=0.0, le=1.0, description="Rate of the running averages e and v.")
    alpha_max: float = Field(1.0, gt=0.0, le=1.0)


class LearnedMetaSpec(_MetaSpec):
    """alpha = sigmoid(w . phi + w_0) per neuron (direct) or cluster, a logistic model of the
    learning context phi = (the guidance's running R^2, the loss trend); at every credit
    delivery it takes one step towards the alpha that brings the credit used closest to the
    true credit over the schedule's mix of ticks with and without propagated error."""

    kind: Literal["learned"]
    lr: float = Field(0.5, gt=0.0, description="Step size of the logistic model.")
    alpha_init: float = Field(0.1, gt=0.0, lt=1.0, description="alpha before any learning (sets w_0).")
    decay: float = Field(0.1, gt=0.0, le=1.0, description="Rate of the running averages in phi.")


MetaSpec = tagged_union("kind", FixedMetaSpec, ConfidenceMetaSpec, LearnedMetaSpec)
