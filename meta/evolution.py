"""Evolving guides: the candidate genomes of every guide, their prequential scores, and the
generation step, in one shared home (docs/semantics.md, "Evolving guides").

Every guide of a population with ``guide.evolution`` keeps ``candidates`` candidate guides. A
candidate's genome is (kind, learning rate, feature mask); its parameters live in the executor
(stacked tensors in the batched executor, one estimator per candidate in the reference one).
What must be identical on every executor lives here, in numpy float64: the genomes, the running
scores, which candidate serves each guide, and every random draw of a generation, made from the
keyed seed ``("evolution", population, generation)``.  Executors only predict and learn with the
candidates and, after a generation, reset the parameters of the candidates born in it
(:class:`Births`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ribbed.seeding import component_rng

__all__ = ["TREE_LR", "Births", "EvolutionState", "KindSettings", "candidate_costs", "initial_population"]

#: The learning rate of a genome stays in [LR_MIN, LR_MAX] (a linear candidate forgets 1 - lr).
LR_MIN, LR_MAX = 1e-6, 1.0
#: Random search draws a genome's learning rate log-uniformly within this many decades either side
#: of its kind's base learning rate (then clipped to [LR_MIN, LR_MAX]).
RANDOM_LR_DECADES = 2.0
#: A tree candidate's learning rate: its genome carries one (mutated and inherited like any other, so
#: that a descendant that changes kind has one), but a tree does not use it.
TREE_LR = 0.01


@dataclass(frozen=True)
class KindSettings:
    """What a kind's candidates share besides their genome: the mlp's hidden width and optimizer,
    the linear guide's ridge, the tree's depth, leaf size, replay buffer and refit period, and the
    kind's initial learning rate (a tree's is carried in its genome but unused)."""

    name: str
    lr: float
    hidden: int = 0
    optimizer: str = "adam"
    ridge: float = 0.0
    max_depth: int = 0
    min_samples_leaf: int = 1
    buffer: int = 0
    refit_every: int = 0


@dataclass(frozen=True)
class Births:
    """The candidates a generation created: ``guides``/``slots`` (in guide, then slot order), and
    the first-layer weights of the mlp ones among them, in the same order (n_mlp, d, hidden)."""

    guides: np.ndarray
    slots: np.ndarray
    mlp_weights: np.ndarray


def candidate_costs(kind: np.ndarray, mask: np.ndarray,
                    settings: tuple[KindSettings, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(memory, time) of each candidate, deterministic proxies of its cost: memory is its parameter
    count with m features on (linear m + 1; mlp h(m + 1) + h + 1), time the multiply-adds of one
    prediction plus one update per row (linear (m + 1)(m + 2): the prediction and the row's share
    of X^T X and X^T c; mlp 3(h(m + 1) + h + 1): a forward pass and a backward pass of twice its
    cost; tree of depth D on a buffer of B rows refit every R ticks: memory 2^(D+1) - 1, the most
    nodes it can have, time D + m D ceil(log2 B) / R: a prediction's D comparisons, plus the refit's
    comparisons per buffered row (m features sorted at each of D levels) spread over R ticks)."""
    m = mask.sum(axis=-1).astype(np.float64)
    memory = np.zeros(kind.shape)
    time = np.zeros(kind.shape)
    for index, kind_settings in enumerate(settings):
        where = kind == index
        if kind_settings.name == "linear":
            memory[where] = m[where] + 1
            time[where] = (m[where] + 1) * (m[where] + 2)
        elif kind_settings.name == "tree":
            depth = kind_settings.max_depth
            memory[where] = 2.0 ** (depth + 1) - 1
            sort = np.ceil(np.log2(max(kind_settings.buffer, 2)))
            time[where] = depth + m[where] * depth * sort / kind_settings.refit_every
        else:
            h = kind_settings.hidden
            memory[where] = h * (m[where] + 1) + h + 1
            time[where] = 3 * memory[where]
    return memory, time


class EvolutionState:
    """The candidates of every guide of one population: genomes (kind index, lr, feature mask),
    running scores and lineage, arrays with a leading (guide, slot) shape."""

    #: What a snapshot saves (scheduler/state.py).
    snapshot_attrs = ("kind", "lr", "mask", "error", "square", "ident", "born", "parent", "generation")

    def __init__(self, spec: Any, settings: tuple[KindSettings, ...], n_guides: int, n_features: int, seed: int,
                 population: str):
        self.spec, self.settings = spec, settings
        self.n_guides, self.k, self.n_features = n_guides, spec.candidates, n_features
        self.seed, self.population = seed, population
        shape = (n_guides, self.k)
        self.kind = np.zeros(shape, dtype=np.int64)
        self.lr = np.zeros(shape)
        self.mask = np.ones(shape + (n_features,), dtype=bool)
        self.error = np.zeros(shape)
        self.square = np.zeros(n_guides)
        self.ident = np.zeros(shape, dtype=np.int64)
        self.born = np.zeros(shape, dtype=np.int64)
        self.parent = np.full(shape, -1, dtype=np.int64)
        self.generation = 0

    # ------------------------------------------------------------------ scores

    def kind_names(self) -> list[str]:
        return [s.name for s in self.settings]

    def forget(self) -> np.ndarray:
        """Per candidate, the forgetting factor a linear one uses: 1 - lr."""
        return 1.0 - self.lr

    def score(self) -> np.ndarray:
        """Each candidate's prequential score 1 - E/V (an R^2 against predicting 0, from running
        means), 0 while its guide has seen no credit (V = 0)."""
        square = self.square[:, None]
        safe = np.where(square > 0, square, 1.0)
        return np.where(square > 0, 1.0 - self.error / safe, 0.0)

    def fitness(self) -> np.ndarray:
        """a * score + b / cost_mem + c / cost_time per candidate."""
        weights = self.spec.fitness
        memory, time = candidate_costs(self.kind, self.mask, self.settings)
        return weights.score * self.score() + weights.memory / memory + weights.time / time

    def serving(self) -> np.ndarray:
        """The candidate whose prediction is each guide's guidance: the best fitness (ties: the
        lower slot), (n_guides,)."""
        return np.argmax(self.fitness(), axis=1)

    def lineage(self, guides: np.ndarray) -> dict[str, np.ndarray]:
        """For the guides ``guides`` (one per neuron: its meta unit's guide), the serving
        candidate's kind (its index in ``kinds``), generation born, fitness, id and parent id
        (-1 for generation 0)."""
        serving = self.serving()[guides]
        fitness = self.fitness()
        return {"kind": self.kind[guides, serving], "generation": self.born[guides, serving],
                "fitness": fitness[guides, serving], "candidate": self.ident[guides, serving],
                "parent": self.parent[guides, serving]}

    def genomes(self) -> dict[str, Any]:
        """Copies of every candidate's genome and lineage, (guides, k) arrays (mask (guides, k, d)),
        and the generations run: what ``read("genomes", population)`` gives."""
        return {"generation": self.generation, "kind": self.kind.copy(), "lr": self.lr.copy(),
                "mask": self.mask.copy(), "id": self.ident.copy(), "parent": self.parent.copy(),
                "born": self.born.copy()}

    def observe(self, guides: np.ndarray, mse: np.ndarray, square: np.ndarray) -> None:
        """Credit delivered to ``guides``: each candidate's mean squared error on the delivered rows
        (its prediction made before it learns from them), ``mse`` (len(guides), k), and the rows'
        mean squared target ``square`` (len(guides),); running means with rate score_decay."""
        rate = self.spec.score_decay
        self.error[guides] += rate * (np.asarray(mse, dtype=np.float64) - self.error[guides])
        self.square[guides] += rate * (np.asarray(square, dtype=np.float64) - self.square[guides])

    # ------------------------------------------------------------------ generations

    def generation_at(self, tick: int) -> bool:
        """Whether a generation ends with this tick's guide stage."""
        return (tick + 1) % self.spec.generation_every == 0

    def next_generation(self) -> Births:
        """Select, recombine and mutate every guide's candidates (docs/semantics.md, "Evolving
        guides"); returns the candidates born, whose parameters the executor resets."""
        spec, k, d, n_guides = self.spec, self.k, self.n_features, self.n_guides
        self.generation += 1
        generation = self.generation
        rng = component_rng(self.seed, "evolution", self.population, generation)
        if spec.selection == "random":
            return self._random_generation(rng)
        n_kinds = len(self.settings)
        tournaments = rng.integers(0, k, size=(n_guides, k, 2, spec.tournament))
        cross_coin = rng.random((n_guides, k))
        cross_bits = rng.random((n_guides, k, d)) < 0.5
        lr_step = rng.integers(-1, 2, size=(n_guides, k))
        flips = rng.random((n_guides, k, d)) < spec.mutation.mask_flip
        kind_coin = rng.random((n_guides, k))
        kind_pick = rng.integers(0, max(n_kinds - 1, 1), size=(n_guides, k))

        fitness = self.fitness()
        newborn = self._newborn()

        def winner(picks: np.ndarray) -> np.ndarray:
            """The best of each tournament's picks (ties: the first pick)."""
            scores = np.take_along_axis(fitness, picks.reshape(n_guides, -1), axis=1).reshape(picks.shape)
            return np.take_along_axis(picks, np.argmax(scores, axis=-1)[..., None], axis=-1)[..., 0]

        first, second = winner(tournaments[:, :, 0]), winner(tournaments[:, :, 1])
        mask = np.take_along_axis(self.mask, first[:, :, None], axis=1)
        other = np.take_along_axis(self.mask, second[:, :, None], axis=1)
        crossed = (cross_coin < spec.crossover)[:, :, None]
        mask = np.where(crossed & ~cross_bits, other, mask) ^ flips
        lr = np.clip(np.take_along_axis(self.lr, first, axis=1) * spec.mutation.lr_scale ** lr_step, LR_MIN, LR_MAX)
        kind = np.take_along_axis(self.kind, first, axis=1)
        if n_kinds > 1:
            changed = kind_coin < spec.mutation.kind_change
            kind = np.where(changed, kind_pick + (kind_pick >= kind), kind)
        parent = np.take_along_axis(self.ident, first, axis=1)

        self.kind = np.where(newborn, kind, self.kind)
        self.lr = np.where(newborn, lr, self.lr)
        self.mask = np.where(newborn[:, :, None], mask, self.mask)
        self.parent = np.where(newborn, parent, self.parent)
        if generation <= spec.protect_generations:
            self._protect(newborn)
        return self._births(newborn, rng)

    def _newborn(self) -> np.ndarray:
        """Every slot but the ``elites`` best of each guide (fitness descending, ties to the lower
        slot: a stable sort), (guides, k) bool."""
        order = np.argsort(-self.fitness(), axis=1, kind="stable")
        newborn = np.ones((self.n_guides, self.k), dtype=bool)
        newborn[np.arange(self.n_guides)[:, None], order[:, :self.spec.elites]] = False
        return newborn

    def _random_generation(self, rng: np.random.Generator) -> Births:
        """Random search (``selection: random``): every newborn's genome drawn afresh, from no
        parent: kind R = ``integers(0, K)``, lr = base lr of that kind times 10^U with
        U = ``uniform(-RANDOM_LR_DECADES, RANDOM_LR_DECADES)`` (clipped), mask bits on where
        uniforms < 1/2; drawn in that order for every (guide, slot), elites included."""
        n_guides, k, d = self.n_guides, self.k, self.n_features
        kind = rng.integers(0, len(self.settings), size=(n_guides, k))
        exponent = rng.uniform(-RANDOM_LR_DECADES, RANDOM_LR_DECADES, size=(n_guides, k))
        mask = rng.random((n_guides, k, d)) < 0.5
        base = np.array([s.lr for s in self.settings])[kind]
        lr = np.clip(base * 10.0 ** exponent, LR_MIN, LR_MAX)
        newborn = self._newborn()
        self.kind = np.where(newborn, kind, self.kind)
        self.lr = np.where(newborn, lr, self.lr)
        self.mask = np.where(newborn[:, :, None], mask, self.mask)
        self.parent = np.where(newborn, -1, self.parent)
        return self._births(newborn, rng)

    def _protect(self, newborn: np.ndarray) -> None:
        """Every kind keeps a candidate in every guide: a kind missing from a guide takes the
        highest newborn slot not yet given to a missing kind whose own kind has another candidate
        in the guide, so that no kind is lost to another's protection (kinds in the order of
        ``kinds``; with k - elites >= K such a slot always exists)."""
        for g in range(self.n_guides):
            free = [c for c in range(self.k - 1, -1, -1) if newborn[g, c]]
            for index in range(len(self.settings)):
                if (self.kind[g] == index).any():
                    continue
                slot = next(c for c in free if (self.kind[g] == self.kind[g, c]).sum() > 1)
                free.remove(slot)
                self.kind[g, slot] = index

    def _births(self, newborn: np.ndarray, rng: np.random.Generator) -> Births:
        """Fresh lineage and running error for the newborn candidates, and their mlp weights."""
        guides, slots = np.nonzero(newborn)
        base = self.generation * self.n_guides * self.k
        self.ident[guides, slots] = base + guides * self.k + slots
        self.born[guides, slots] = self.generation
        # A newborn starts where a guide that predicts 0 would be: its error is its guide's V.
        self.error[guides, slots] = self.square[guides]
        mlp = [i for i, s in enumerate(self.settings) if s.name == "mlp"]
        is_mlp = np.isin(self.kind[guides, slots], mlp)
        hidden = next((s.hidden for s in self.settings if s.name == "mlp"), 0)
        bound = 1.0 / np.sqrt(self.n_features)
        weights = rng.uniform(-bound, bound, size=(int(is_mlp.sum()), self.n_features, hidden))
        return Births(guides, slots, weights)


def initial_population(spec: Any, settings: tuple[KindSettings, ...], n_guides: int, n_features: int, seed: int,
                       population: str) -> tuple[EvolutionState, Births]:
    """Generation 0: slot c of every guide holds the base genome of kind ``kinds[c mod K]`` (the
    kind's initial lr, every feature on), mutated for c >= K (lr step and mask flips as in a
    generation, no kind change); every candidate is newborn."""
    state = EvolutionState(spec, settings, n_guides, n_features, seed, population)
    k, n_kinds = spec.candidates, len(settings)
    rng = component_rng(seed, "evolution", population, 0)
    lr_step = rng.integers(-1, 2, size=(n_guides, k))
    flips = rng.random((n_guides, k, n_features)) < spec.mutation.mask_flip
    base = np.arange(k) < n_kinds
    state.kind[:] = np.arange(k) % n_kinds
    lrs = np.array([s.lr for s in settings])[state.kind]
    state.lr = np.where(base, lrs, np.clip(lrs * spec.mutation.lr_scale ** lr_step, LR_MIN, LR_MAX))
    state.mask = np.where(base[None, :, None], True, ~flips)
    births = state._births(np.ones((n_guides, k), dtype=bool), rng)
    return state, births
