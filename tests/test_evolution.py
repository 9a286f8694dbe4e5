"""Evolving guides (issue 17, docs/semantics.md "Evolving guides"): a population of candidate
guides behind every guide, scored prequentially, selected and mutated at generation boundaries
from keyed seeds.

Evolution is deterministic (same seed, same lineage; another seed, another), elites survive a
generation, protected kinds survive the first generations (and are lost without protection), the
reference and batched executors agree on every tick's guidance and lineage under every coupling,
Ray agrees with batched, a run resumes bit for bit with its lineage in agents.csv, and bad
settings get located errors."""

from __future__ import annotations

import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

import ribbed
from conftest import assert_resume_is_exact, model_from
from ribbed import ScenarioError
from ribbed.errors import LogFormatError
from ribbed.meta.evolution import EvolutionState, KindSettings, candidate_costs, initial_population
from ribbed.log import verify
from ribbed.scenarios.guidance import EvolutionSpec
from ribbed.scenarios.loader import load_scenario
from test_executors import ATOL, RTOL, assert_same_guidance, assert_same_prediction, assert_same_state

TICKS = 16
LINEAGE = ("kind", "generation", "fitness", "candidate", "parent")
SETTINGS = (KindSettings("linear", lr=0.01, ridge=1e-3), KindSettings("mlp", lr=0.01, hidden=3))


def evolving(coupling: dict | None = None, seed: int = 5, ticks: int = TICKS, **evolution) -> dict:
    """xor: in(2) -> h(6, evolving guides with readout identity) -> out(2), the error every 2nd
    tick, a generation every 4 ticks."""
    spec = {"candidates": 3, "generation_every": 4, "elites": 1, "protect_generations": 2,
            "mutation": {"mask_flip": 0.2, "kind_change": 0.3}, **evolution}
    return {"name": "evolve", "seed": seed, "task": {"kind": "xor", "n_samples": 64},
            "populations": [{"name": "in", "size": 2, "role": "input"},
                            {"name": "h", "size": 6, "activation": "tanh",
                             "guide": {"kind": "mlp", "hidden": 4, "identity": ["readout"], "evolution": spec}},
                            {"name": "out", "size": 2, "role": "output", "activation": "identity"}],
            "projections": [{"pre": "in", "post": "h"}, {"pre": "h", "post": "out"}],
            "coupling": coupling or {"kind": "direct"},
            "learning": {"rule": "backprop", "lr": 0.05, "optimizer": "adam"},
            "schedule": {"backward_every": 2},
            "run": {"ticks": ticks, "batch_size": 8, "eval_every": ticks // 2}}


def evolving_trees(coupling: dict | None = None, ticks: int = TICKS, **evolution) -> dict:
    """:func:`evolving` with a tree guide (depth 3, leaves of 2 rows, a buffer of 64 rows refit every
    2nd tick) whose candidates are of kinds linear, mlp and tree."""
    data = evolving(coupling, ticks=ticks, **{"candidates": 4, "kinds": ["linear", "mlp", "tree"], **evolution})
    data["populations"][1]["guide"] = {"kind": "tree", "max_depth": 3, "min_samples_leaf": 2, "buffer": 64,
                                       "refit_every": 2, "identity": ["readout"],
                                       "evolution": data["populations"][1]["guide"]["evolution"]}
    return data


def batched(data: dict) -> dict:
    return {**data, "backend": {"kind": "batched", "dtype": "float64", "device": "cpu"}}


def genomes(model) -> dict[str, np.ndarray]:
    """The evolution state of population h, read from whichever executor runs it."""
    executor = model.executor
    group = executor.populations["h"].guidance.guides.state if hasattr(executor, "populations") else \
        executor._group("h").evolution
    return {name: np.array(getattr(group, name)) for name in ("kind", "lr", "mask", "ident", "parent", "born")}


# ---------------------------------------------------------------------------- determinism


def test_the_same_seed_gives_the_same_lineage_and_another_seed_another():
    runs = []
    for seed in (5, 5, 6):
        model = model_from(batched(evolving(seed=seed)))
        model.run()
        runs.append((genomes(model), model.executor.read("lineage", "h")))
    (first, lineage), (again, lineage_again), (other, _) = runs
    assert first["ident"].max() >= 4 * 6 * 3  # four generations happened
    for name in first:
        np.testing.assert_array_equal(first[name], again[name], err_msg=name)
    for name in LINEAGE:
        np.testing.assert_array_equal(lineage[name], lineage_again[name], err_msg=name)
    assert not all(np.array_equal(first[name], other[name]) for name in ("kind", "lr", "mask", "parent"))


# ---------------------------------------------------------------------------- the generation step


def state_with_fitness(fitness: np.ndarray, protect: int = 0, kind_change: float = 0.0,
                       tournament: int = 2, selection: str = "tournament") -> EvolutionState:
    """Generation 0 of 5 guides x 4 candidates over 6 features, with scores set so that the
    fitness is ``fitness`` (5, 4)."""
    spec = EvolutionSpec(candidates=4, elites=2, protect_generations=protect, tournament=tournament,
                         selection=selection, mutation={"kind_change": kind_change, "mask_flip": 0.3})
    state, _ = initial_population(spec, SETTINGS, 5, 6, 3, "h")
    state.square[:] = 2.0
    state.error = 2.0 * (1.0 - fitness)
    return state


def test_generation_0_regenerates_from_the_semantics_page():
    """docs/semantics.md, "Evolving guides", Generation 0, with numpy alone."""
    spec = EvolutionSpec(candidates=5, mutation={"mask_flip": 0.25, "lr_scale": 3.0})
    guides, d, seed = 4, 7, 11
    state, births = initial_population(spec, SETTINGS, guides, d, seed, "h")
    key = (zlib.crc32(b"evolution"), zlib.crc32(b"h"), 0)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy=seed, spawn_key=key)))
    steps = rng.integers(-1, 2, size=(guides, 5))
    flips = rng.random((guides, 5, d)) < 0.25
    kind = np.tile(np.arange(5) % 2, (guides, 1))
    base = np.array([0.01, 0.01])[kind]
    first = np.arange(5) < 2
    np.testing.assert_array_equal(state.kind, kind)
    np.testing.assert_array_equal(state.lr, np.where(first, base, np.clip(base * 3.0**steps, 1e-6, 1.0)))
    np.testing.assert_array_equal(state.mask, np.where(first[None, :, None], True, ~flips))
    n_mlp = int((kind == 1).sum())
    np.testing.assert_array_equal(births.mlp_weights, rng.uniform(-1 / np.sqrt(d), 1 / np.sqrt(d), (n_mlp, d, 3)))
    np.testing.assert_array_equal(state.ident, np.arange(guides * 5).reshape(guides, 5))
    assert (state.parent == -1).all() and (state.born == 0).all()


def test_with_a_memory_weight_the_cheapest_candidate_serves_until_scores_differ():
    spec = EvolutionSpec(candidates=4, fitness={"score": 1.0, "memory": 10.0}, mutation={"mask_flip": 0.5})
    state, _ = initial_population(spec, SETTINGS, 3, 6, 2, "h")
    memory = np.where(state.kind == 0, state.mask.sum(-1) + 1, 3 * (state.mask.sum(-1) + 1) + 4)
    np.testing.assert_array_equal(state.serving(), np.argmax(10.0 / memory, axis=1))
    state.observe(np.arange(3), np.tile([1.0, 0.0, 1.0, 1.0], (3, 1)), np.ones(3))  # slot 1 predicted exactly
    np.testing.assert_allclose(state.score()[:, 1], 1.0)
    assert (state.score()[:, [0, 2, 3]] == 0.0).all()
    np.testing.assert_array_equal(state.serving(), np.argmax(state.score() + 10.0 / memory, axis=1))


def test_elites_survive_a_generation_untouched_and_the_rest_are_born_from_tournaments():
    fitness = np.array([[0.1, 0.9, 0.5, 0.2], [0.7, 0.3, 0.8, 0.0], [0.4, 0.4, 0.4, 0.4],
                        [0.0, 0.1, 0.2, 0.3], [0.6, 0.5, 0.9, 0.95]])
    state = state_with_fitness(fitness)
    before = {name: np.array(getattr(state, name)) for name in ("kind", "lr", "mask", "ident", "error")}
    births = state.next_generation()
    elites = np.array([[1, 2], [0, 2], [0, 1], [2, 3], [2, 3]])  # the two best (ties: the lower slot)
    born = np.ones((5, 4), dtype=bool)
    born[np.arange(5)[:, None], elites] = False
    np.testing.assert_array_equal(np.stack([births.guides, births.slots], 1), np.argwhere(born))
    for name, value in before.items():
        np.testing.assert_array_equal(getattr(state, name)[~born], value[~born], err_msg=name)
    assert state.generation == 1 and (state.born[born] == 1).all() and (state.born[~born] == 0).all()
    assert len(np.unique(state.ident)) == 20 and (state.ident[born] >= 20).all()
    # Every newborn's parent is a candidate of its own guide, and newborns start at score 0.
    for g, c in np.argwhere(born):
        assert state.parent[g, c] in before["ident"][g]
    np.testing.assert_allclose(state.score()[born], 0.0)
    assert births.mlp_weights.shape == (int((state.kind[born] == 1).sum()), 6, 3)


def test_protected_kinds_survive_the_first_generations_and_are_lost_without_protection():
    # Linear candidates (slots 0 and 2) are fit, mlp ones are not: tournaments of 4 pick linear
    # parents, and without kind changes their children are linear.
    fitness = np.tile([0.9, -5.0, 0.8, -5.0], (5, 1))
    protected = state_with_fitness(fitness, protect=2, tournament=4)
    unprotected = state_with_fitness(fitness, protect=0, tournament=4)
    for generation in (1, 2):
        protected.next_generation()
        unprotected.next_generation()
        assert all({0, 1} <= set(kinds) for kinds in protected.kind.tolist()), generation
    assert not any(1 in kinds for kinds in unprotected.kind.tolist())


def test_protection_never_takes_the_last_candidate_of_another_kind():
    """Three kinds, one elite: after the step a guide holds linear, linear, linear, mlp, with every
    slot but the first newborn; tree, missing, must take a linear slot (the highest), not the mlp
    one, which is the last of its kind."""
    spec = EvolutionSpec.model_validate({"candidates": 4, "kinds": ["linear", "mlp", "tree"], "elites": 1,
                                         "protect_generations": 2})
    settings = (KindSettings("linear", 0.01), KindSettings("mlp", 0.01, hidden=3), KindSettings("tree", 0.01))
    state = EvolutionState(spec, settings, 1, 6, 3, "h")
    state.kind[:] = [[0, 0, 0, 1]]
    state._protect(np.array([[False, True, True, True]]))
    np.testing.assert_array_equal(state.kind, [[0, 0, 2, 1]])


def test_random_search_keeps_the_elites_and_draws_the_rest_afresh_as_the_semantics_page_says():
    """docs/semantics.md, "Evolving guides", random search, with numpy alone."""
    fitness = np.array([[0.1, 0.9, 0.5, 0.2], [0.7, 0.3, 0.8, 0.0], [0.4, 0.4, 0.4, 0.4],
                        [0.0, 0.1, 0.2, 0.3], [0.6, 0.5, 0.9, 0.95]])
    state = state_with_fitness(fitness, selection="random")
    before = {name: np.array(getattr(state, name)) for name in ("kind", "lr", "mask", "ident", "parent", "error")}
    births = state.next_generation()
    key = (zlib.crc32(b"evolution"), zlib.crc32(b"h"), 1)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy=3, spawn_key=key)))
    kind = rng.integers(0, 2, size=(5, 4))
    lr = np.clip(0.01 * 10.0 ** rng.uniform(-2.0, 2.0, size=(5, 4)), 1e-6, 1.0)
    mask = rng.random((5, 4, 6)) < 0.5
    born = np.ones((5, 4), dtype=bool)
    born[np.arange(5)[:, None], np.array([[1, 2], [0, 2], [0, 1], [2, 3], [2, 3]])] = False
    np.testing.assert_array_equal(np.stack([births.guides, births.slots], 1), np.argwhere(born))
    for name, value in before.items():
        np.testing.assert_array_equal(getattr(state, name)[~born], value[~born], err_msg=name)
    np.testing.assert_array_equal(state.kind[born], kind[born])
    np.testing.assert_array_equal(state.lr[born], lr[born])
    np.testing.assert_array_equal(state.mask[born], mask[born])
    assert (state.parent[born] == -1).all() and (state.born[born] == 1).all()
    n_mlp = int((kind[born] == 1).sum())
    np.testing.assert_array_equal(births.mlp_weights, rng.uniform(-1 / np.sqrt(6), 1 / np.sqrt(6), (n_mlp, 6, 3)))
    # The best found so far is an elite: it keeps serving until a newborn scores better.
    np.testing.assert_array_equal(state.serving(), np.argmax(fitness, axis=1))


def test_random_search_is_deterministic_and_differs_from_tournament_selection():
    runs = []
    for selection in ("random", "random", "tournament"):
        model = model_from(batched(evolving(selection=selection)))
        model.run()
        runs.append(genomes(model))
    first, again, tournament = runs
    for name in first:
        np.testing.assert_array_equal(first[name], again[name], err_msg=name)
    assert first["ident"].max() >= 4 * 6 * 3 and (first["parent"][first["born"] > 0] == -1).all()
    assert (tournament["parent"][tournament["born"] > 0] >= 0).all()
    assert not all(np.array_equal(first[name], tournament[name]) for name in ("kind", "lr", "mask"))


# ---------------------------------------------------------------------------- executors


def step_alike(reference, other) -> dict[str, np.ndarray]:
    """One tick of both models: the same loss, guidance and lineage of population h; its lineage."""
    reference.step()
    other.step()
    assert other.last_result.loss == pytest.approx(reference.last_result.loss, rel=RTOL, abs=ATOL)
    assert_same_guidance(reference, other)
    expected, got = reference.executor.read("lineage", "h"), other.executor.read("lineage", "h")
    for name in LINEAGE:
        np.testing.assert_allclose(got[name], expected[name], rtol=RTOL, atol=ATOL, err_msg=name)
    return expected


@pytest.mark.parametrize("coupling,selection", [
    ({"kind": "direct"}, "tournament"), ({"kind": "hash", "bits": 1, "rehash_every": 3}, "tournament"),
    ({"kind": "tree", "leaf_size": 2, "reorder_every": 4}, "tournament"),
    ({"kind": "hash", "bits": 1, "rehash_every": 3}, "random")])
def test_reference_and_batched_agree_on_guidance_and_lineage(coupling, selection):
    data = evolving(coupling, selection=selection)
    reference = model_from({**data, "backend": {"kind": "reference"}})
    other = model_from(batched(data))
    generations = set()
    for _ in range(TICKS):
        expected = step_alike(reference, other)
        generations.update(expected["generation"].tolist())
    for name, value in genomes(reference).items():
        np.testing.assert_array_equal(genomes(other)[name], value, err_msg=name)
    assert_same_state(reference, other)
    assert_same_prediction(reference, other)
    assert len(generations) > 1  # candidates born after generation 0 served


def same_trees(reference, other) -> int:
    """Asserts that every tree candidate of population h is the same fitted tree (or unfitted) in
    both executors; returns how many are fitted."""
    executor = reference.executor
    guides = [cluster.guide for cluster in executor._group("h").clusters]
    stacked = other.executor.populations["h"].guidance.guides
    fitted = 0
    for g, guide in enumerate(guides):
        for c, candidate in enumerate(guide.candidates):
            tree = stacked.trees[g * len(guide.candidates) + c]
            assert (tree is None) == (type(candidate).__name__ != "CandidateTree"), (g, c)
            if tree is None:
                continue
            np.testing.assert_array_equal(tree.mask, candidate.mask)
            assert tree.fitted == candidate.fitted, (g, c)
            if candidate.fitted:
                fitted += 1
                a, b = candidate.model.tree_, tree.model.tree_
                for field in ("feature", "threshold", "value", "children_left"):
                    np.testing.assert_array_equal(getattr(b, field), getattr(a, field), err_msg=f"{field} {g} {c}")
        np.testing.assert_array_equal(stacked.buffers[g].X, guide.buffer.X)
        np.testing.assert_array_equal(stacked.buffers[g].y, guide.buffer.y)
    return fitted


@pytest.mark.parametrize("coupling", [{"kind": "direct"}, {"kind": "hash", "bits": 1, "rehash_every": 3},
                                      {"kind": "tree", "leaf_size": 2, "reorder_every": 4}])
def test_tree_candidates_agree_between_reference_and_batched(coupling):
    data = evolving_trees(coupling)
    reference = model_from({**data, "backend": {"kind": "reference"}})
    other = model_from(batched(data))
    kinds, fitted = set(), 0
    for _ in range(TICKS):
        expected = step_alike(reference, other)
        kinds.update(expected["kind"].tolist())
        fitted = max(fitted, same_trees(reference, other))
    for name, value in genomes(reference).items():
        np.testing.assert_array_equal(genomes(other)[name], value, err_msg=name)
    assert fitted > 0 and (genomes(reference)["kind"] == 2).any()
    assert_same_state(reference, other)
    assert_same_prediction(reference, other)
    if coupling["kind"] == "hash":
        assert 2 in kinds  # a tree candidate served


def step_rows(n: int, rows: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Feature rows whose credit is a step of feature 0 (1 above 0, -1 below; |feature 0| >= 1/2, so
    that any split between the two sides is exact): a tree predicts it exactly, a line does not."""
    X = np.random.default_rng(seed).normal(size=(rows, n, d))
    X[..., 0] += np.where(X[..., 0] > 0, 0.5, -0.5)
    return X, np.where(X[..., 0] > 0, 1.0, -1.0)


def test_a_fitted_tree_candidate_serves_when_it_is_the_best_in_both_executors():
    from types import SimpleNamespace

    import torch

    from ribbed.agents.evolving_guides import EvolvingGuide, StackedEvolving, apply_births

    spec = EvolutionSpec(candidates=2, kinds=["linear", "tree"], protect_generations=0, score_decay=1.0)
    settings = (KindSettings("linear", lr=0.01, ridge=1e-3),
                KindSettings("tree", lr=0.01, max_depth=2, min_samples_leaf=1, buffer=256, refit_every=1))
    n, d = 3, 4
    stacked = StackedEvolving(SimpleNamespace(initial_evolution=lambda: initial_population(spec, settings, n, d, 1, "h")),
                              torch.device("cpu"), torch.float64)
    state, births = initial_population(spec, settings, n, d, 1, "h")
    guides = [EvolvingGuide(state, g) for g in range(n)]
    apply_births(guides, births)
    assert (state.kind == [0, 1]).all() and state.mask.all()
    received = torch.ones(n, dtype=torch.bool)
    for tick in range(3):
        X, credit = step_rows(n, 64, d, tick)
        F = torch.as_tensor(X)
        before = stacked.predict(F, None).numpy()
        for g, guide in enumerate(guides):
            np.testing.assert_allclose(guide.predict(X[:, g]), before[:, g], rtol=1e-12, atol=1e-12)
            guide.partial_fit(X[:, g], credit[:, g])
            guide.refit()
        stacked.learn([(None, torch.as_tensor(credit))], F, received)
        stacked.refit()
        np.testing.assert_allclose(stacked.state.error, state.error, rtol=1e-12)
    # Unfitted at tick 0 the tree predicted 0 (and linear served); fitted since, it predicts the step
    # exactly (score 1, the last delivery's R^2 with score_decay 1) and serves.
    assert (state.serving() == 1).all() and (stacked.state.serving() == 1).all()
    assert (state.score()[:, 1] == 1.0).all() and (state.score()[:, 0] < 0.9).all()
    X, credit = step_rows(n, 64, d, 9)
    served = stacked.predict(torch.as_tensor(X), None).numpy()
    np.testing.assert_array_equal(served, credit)
    for g, guide in enumerate(guides):
        np.testing.assert_array_equal(guide.predict(X[:, g]), credit[:, g])


def test_tree_costs_are_the_node_bound_and_a_prediction_plus_the_refits_share():
    settings = (KindSettings("linear", lr=0.01), KindSettings("tree", lr=0.01, max_depth=3, buffer=64, refit_every=2))
    kind = np.array([[0, 1, 1]])
    mask = np.zeros((1, 3, 5), dtype=bool)
    mask[0, :, :4] = True
    mask[0, 2, :] = True
    memory, time = candidate_costs(kind, mask, settings)
    np.testing.assert_array_equal(memory, [[5, 15, 15]])
    np.testing.assert_array_equal(time, [[30, 3 + 4 * 3 * 6 / 2, 3 + 5 * 3 * 6 / 2]])


@pytest.mark.parametrize("trees", [False, True])
def test_ray_agrees_with_batched(trees: bool):
    ray = pytest.importorskip("ray")
    ray.shutdown()
    ray.init(num_cpus=2, object_store_memory=100 * 2**20, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    try:
        data = (evolving_trees if trees else evolving)({"kind": "hash", "bits": 1, "rehash_every": 3})
        on_ray = model_from({**data, "backend": {"kind": "ray", "dtype": "float64", "shards": 2}})
        other = model_from(batched(data))
        try:
            for _ in range(TICKS):
                on_ray.step()
                other.step()
                assert_same_guidance(other, on_ray)
            expected, got = other.executor.read("lineage", "h"), on_ray.executor.read("lineage", "h")
            for name in LINEAGE:
                np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
        finally:
            on_ray.executor.close()
    finally:
        ray.shutdown()


@pytest.mark.parametrize("backend,trees", [("reference", False), ("batched", False), ("reference", True),
                                           ("batched", True)])
def test_a_resumed_run_continues_bit_for_bit_verifies_and_has_its_lineage_in_agents_csv(tmp_path: Path, backend: str,
                                                                                         trees: bool):
    scenario = evolving_trees if trees else evolving
    data = {**scenario({"kind": "hash", "bits": 1, "rehash_every": 3}, ticks=24),
            "backend": {"kind": backend, **({"dtype": "float64", "device": "cpu"} if backend == "batched" else {})},
            "log": {"level": "summary", "snapshot_every": 6}}
    data["run"]["eval_every"] = 6

    # After the snapshot of tick 12, between generations 3 and 4; with trees, after that of tick 6,
    # where tree candidates born in generation 1 (tick 3) were fitted (tick 5) and must be refit
    # from the snapshot's buffer to score the next delivery.
    whole, _, _ = assert_resume_is_exact(data, 9 if trees else 15, tmp_path)
    agents = whole.model.agent_metrics  # the DataCollector's columns, as in agents.csv
    hidden = agents[(agents["population"] == "h") & (agents["agent_kind"] == "neuron")]
    assert set(hidden["guide_kind"]) <= ({"linear", "mlp", "tree"} if trees else {"linear", "mlp"})
    assert hidden["guide_generation"].max() >= 1
    assert agents[agents["population"] == "in"]["guide_kind"].isna().all()


# ---------------------------------------------------------------------------- lineage in the log


@pytest.mark.parametrize("writer", ["process", "thread"])
def test_generations_are_logged_verified_bit_for_bit_and_a_tampered_lineage_is_found(tmp_path: Path, writer: str,
                                                                                       monkeypatch):
    from test_log import rewrite

    monkeypatch.setenv("RIBBED_LOG_WRITER", writer)  # a generation's tick goes around the writer process's ring
    data = {**batched(evolving({"kind": "hash", "bits": 1, "rehash_every": 3})), "log": {"level": "summary"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ribbed.RibbedWarning)
        run = ribbed.run(data, out=tmp_path / "run")
    path = tmp_path / "run" / "run.log"
    final = genomes(run.model)
    with ribbed.log.open_log(path) as log:
        assert log.header["resources"]["writer"] == writer
        events = log.generations("h")
        assert log.generations("in") == []
    assert [(e["tick"], e["generation"]) for e in events] == [(3, 1), (7, 2), (11, 3), (15, 4)]
    last = events[-1]
    born = final["born"] == 4
    np.testing.assert_array_equal(np.stack([last["guides"], last["slots"]], 1), np.argwhere(born))
    for key, name in (("ids", "ident"), ("parents", "parent"), ("kinds", "kind"), ("lrs", "lr"), ("masks", "mask")):
        np.testing.assert_array_equal(last[key], final[name][born], err_msg=key)
    assert (last["parents"] >= 0).all() and last["masks"].dtype == bool
    assert verify(path).ok

    def nudge_lr(body: dict) -> dict:
        lrs = body["generations"]["h"]["lrs"]
        values = np.frombuffer(lrs["data"], dtype="<f8").copy()
        values[0] *= 1.0 + 1e-12
        lrs["data"] = values.tobytes()
        return body

    rewrite(path, 7, nudge_lr, recompute_crc=True, rechain=True)
    report = verify(path)
    assert not report.ok
    assert (report.difference.tick, report.difference.field) == (7, "generations/h/lrs")
    rewrite(path, 11, lambda body: {k: v for k, v in body.items() if k != "generations"}, recompute_crc=True,
            rechain=True)
    with pytest.raises(LogFormatError, match="lacks generations"):
        with ribbed.log.open_log(path) as log:
            log.check()


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("change,where,says", [
    (lambda g: g["evolution"].update(kinds=["sklearn", "mlp"]), "guide.evolution.kinds",
     "'sklearn' guides cannot evolve: an estimator handed over from Python has no settings"),
    (lambda g: g.update(kind="sklearn", evolution={}), "guide.evolution", "'sklearn' guides cannot evolve"),
    (lambda g: g.update(kind="tree", evolution={}), "guide", "kind 'tree' is not among evolution.kinds"),
    (lambda g: g["evolution"].update(kinds=["forest", "mlp"]), "guide.evolution.kinds", "linear, mlp, tree"),
    (lambda g: g["evolution"].update(elites=3), "guide.evolution", "elites (3) must be fewer than candidates"),
    (lambda g: g["evolution"].update(kinds=["linear"]), "guide", "kind 'mlp' is not among evolution.kinds"),
    (lambda g: g["evolution"].update(candidates=1), "guide.evolution", "candidates (1) is fewer than kinds"),
    (lambda g: g["evolution"].update(elites=2, candidates=3), "guide.evolution", "protect_generations needs"),
    (lambda g: g["evolution"]["mutation"].update(lr_scale=1.0), "guide.evolution.mutation.lr_scale", "greater than 1"),
    (lambda g: g["evolution"].update(generation=3), "guide.evolution.generation", "candidates, crossover"),
    (lambda g: g["evolution"].update(selection="random", elites=0), "guide.evolution", "elites must be at least 1"),
    (lambda g: g["evolution"].update(selection="best"), "guide.evolution.selection", "tournament"),
])
def test_bad_settings_are_refused_naming_the_field(change, where, says):
    data = evolving()
    guide = data["populations"][1]["guide"]
    change(guide)
    if guide["kind"] in ("tree", "sklearn"):
        guide.pop("hidden")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(data)
    problem = caught.value.problems[0]
    assert problem.path == f"populations[1].{where}"
    assert says in problem.message + problem.fix
