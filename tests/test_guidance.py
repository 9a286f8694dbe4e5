"""Guides, couplings and meta-controllers (docs/semantics.md, "Guided learning"): each part
against its definition or an outside reference, and guided runs end to end on both executors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.linear_model import LinearRegression
from sklearn.neighbors import KNeighborsRegressor
from sklearn.tree import DecisionTreeRegressor

import ribbed
from conftest import model_from
from ribbed.agents.guides import LinearGuide, MLPGuide, ReplayGuide, guide_features, task_context
from ribbed.coupling import make_coupling
from ribbed.coupling.hashing import follow_majority
from ribbed.meta import make_controller
from ribbed.scenarios.guidance import (
    ConfidenceMetaSpec,
    FixedMetaSpec,
    HashCouplingSpec,
    LearnedMetaSpec,
    TreeCouplingSpec,
)

# --------------------------------------------------------------------------- guides


def test_online_least_squares_equals_least_squares_on_all_rows(rng):
    """With forget=1 and a vanishing ridge, partial fits in chunks give ordinary least squares
    (with an intercept) on every row seen."""
    X, y = rng.standard_normal((60, 4)), rng.standard_normal(60)
    guide = LinearGuide(ridge=1e-10, forget=1.0)
    for chunk in np.array_split(np.arange(60), 5):
        guide.partial_fit(X[chunk], y[chunk])
    np.testing.assert_allclose(guide.predict(X), LinearRegression().fit(X, y).predict(X), rtol=1e-7)


def test_forgetting_weighs_recent_rows_exponentially(rng):
    """forget < 1 is weighted ridge regression with weight forget^(age in updates)."""
    X, y = rng.standard_normal((40, 3)), rng.standard_normal(40)
    guide = LinearGuide(ridge=0.5, forget=0.7)
    chunks = np.array_split(np.arange(40), 4)
    for chunk in chunks:
        guide.partial_fit(X[chunk], y[chunk])
    weights = np.concatenate([np.full(len(c), 0.7 ** (len(chunks) - 1 - i)) for i, c in enumerate(chunks)])
    Xa = np.column_stack([X, np.ones(40)])
    expected = np.linalg.solve(Xa.T @ (weights[:, None] * Xa) + 0.5 * np.eye(4), Xa.T @ (weights * y))
    np.testing.assert_allclose(guide.coef_, expected, rtol=1e-10)


def test_mlp_guide_steps_like_torch_adam_on_the_mean_squared_error(rng):
    import torch

    X, y = rng.standard_normal((10, 3)), rng.standard_normal(10)
    init = rng.uniform(-0.5, 0.5, (3, 4))
    guide = MLPGuide(hidden=4, lr=0.05, init=init)
    for _ in range(3):
        guide.partial_fit(X, y)
    first = torch.tensor(init, requires_grad=True)
    b1 = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    w2 = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    b2 = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([first, b1, w2, b2], lr=0.05)
    Xt, yt = torch.tensor(X), torch.tensor(y)
    for _ in range(3):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(torch.tanh(Xt @ first + b1) @ w2 + b2, yt).backward()
        optimizer.step()
    np.testing.assert_allclose(guide.parameters_()["hidden_weight"], first.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(guide.predict(X), (torch.tanh(Xt @ first + b1) @ w2 + b2).detach().numpy(),
                               rtol=1e-12)


def test_replay_guide_refits_a_clone_on_the_newest_rows(rng):
    X, y = rng.standard_normal((50, 2)), rng.standard_normal(50)
    tree = DecisionTreeRegressor(max_depth=3, random_state=0)
    guide = ReplayGuide(tree, buffer=30, refit_every=5)
    np.testing.assert_array_equal(guide.predict(X), np.zeros(50))  # no credit seen: no advice
    for chunk in np.array_split(np.arange(50), 5):
        guide.partial_fit(X[chunk], y[chunk])
    guide.refit()
    expected = clone(tree).fit(X[-30:].astype(np.float32), y[-30:].astype(np.float32)).predict(X.astype(np.float32))
    np.testing.assert_array_equal(guide.predict(X), expected)
    assert not hasattr(tree, "tree_")  # the template is never fitted


@pytest.mark.parametrize("guide", [LinearGuide(ridge=0.1), MLPGuide(hidden=3), ReplayGuide(KNeighborsRegressor())])
def test_guides_follow_the_estimator_api(guide, rng):
    X, y = rng.standard_normal((20, 3)), rng.standard_normal(20)
    copy = clone(guide)
    assert copy.get_params().keys() == guide.get_params().keys()
    fitted = copy.fit(X, y)
    assert fitted is copy and fitted.predict(X).shape == (20,)
    assert not hasattr(guide, "n_features_in_") and guide.predict(X).tolist() == [0.0] * 20


def test_features_and_context_are_what_the_semantics_say():
    u, y, d = np.array([0.5, -1.0]), np.tanh([0.5, -1.0]), 1 - np.tanh([0.5, -1.0]) ** 2
    targets, losses = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0.1, 2.0])
    context = task_context(targets, losses)
    surprise = 1 - np.exp(-losses)
    np.testing.assert_allclose(context, np.column_stack([targets, surprise, surprise[:, None] * targets]))
    rows = guide_features(u, y, d, context)
    np.testing.assert_allclose(rows, np.column_stack([u, y, d, context, d[:, None] * context]))


# --------------------------------------------------------------------------- couplings


@settings(derandomize=True, max_examples=100, deadline=None)
@given(st.integers(1, 4).flatmap(lambda bits: st.tuples(
    st.just(2**bits), st.lists(st.integers(0, 2**bits - 1), min_size=1, max_size=40),
    st.lists(st.integers(0, 2**bits - 1), min_size=40, max_size=40))))
def test_guides_follow_their_majority(case):
    n_guides, guides, buckets = case
    guides = np.array(guides)
    buckets = np.array(buckets[:len(guides)])
    new = follow_majority(guides, buckets, n_guides)
    # Neurons of one bucket share a guide, and distinct buckets get distinct guides.
    pairs = set(zip(buckets.tolist(), new.tolist()))
    assert len(pairs) == len(set(buckets.tolist())) == len(set(new.tolist()))
    # The pair (guide, bucket) with most members is always kept.
    counts = np.zeros((n_guides, n_guides), dtype=int)
    np.add.at(counts, (guides, buckets), 1)
    g, k = np.unravel_index(np.argmax(counts), counts.shape)
    assert np.all(new[buckets == k] == g)


def test_a_relabelled_hash_keeps_every_guide_with_its_members():
    guides = np.array([0, 0, 1, 2, 2, 2, 3])
    permutation = np.array([2, 3, 0, 1])  # the same groups under new bucket numbers
    np.testing.assert_array_equal(follow_majority(guides, permutation[guides], 4), guides)


def test_hash_buckets_are_the_signs_of_random_hyperplanes(rng):
    coupling = make_coupling(HashCouplingSpec(kind="hash", bits=3), 50, 4, rng)
    signatures = rng.standard_normal((50, 5))
    centred = signatures - signatures.mean(axis=0)
    bits = (centred @ coupling.planes.T > 0).astype(int)
    np.testing.assert_array_equal(coupling.buckets(signatures), bits[:, 0] + 2 * bits[:, 1] + 4 * bits[:, 2])


@pytest.mark.parametrize("size, leaf", [(1, 4), (7, 2), (8, 2), (9, 2), (100, 8), (1000, 1)])
def test_tree_paths_are_root_paths_of_a_balanced_binary_tree(size, leaf, rng):
    coupling = make_coupling(TreeCouplingSpec(kind="tree", leaf_size=leaf), size, 3, rng)
    paths = coupling.regroup(rng.standard_normal((size, 4)), coupling.initial_paths())
    depth = coupling.depth
    assert depth == 1 + int(np.ceil(np.log2(np.ceil(size / leaf)))) if size > leaf else depth == 1
    local = paths - coupling.offsets[:-1]
    assert np.all(local[:, 0] == 0)  # one root
    assert np.all(local[:, 1:] // 2 == local[:, :-1])  # each node is a child of the one above it
    assert np.bincount(coupling.units(paths)).max() <= leaf
    assert len(np.unique(paths)) == coupling.n_guides  # every guide serves someone


def test_tree_order_puts_similar_signatures_under_one_leaf(rng):
    coupling = make_coupling(TreeCouplingSpec(kind="tree", leaf_size=5), 20, 3, rng)
    key = rng.permutation(20).astype(float)
    signatures = np.outer(key, coupling.direction) / np.dot(coupling.direction, coupling.direction)
    units = coupling.units(coupling.regroup(signatures, coupling.initial_paths()))
    np.testing.assert_array_equal(units, (key // 5).astype(int))


# --------------------------------------------------------------------------- meta-controllers


def test_confidence_is_the_running_r2_of_the_guide_against_silence():
    controller = make_controller(ConfidenceMetaSpec(kind="confidence", decay=0.5, alpha_max=0.8))
    state = controller.initial_state()
    errors, squares, received = [0.2, 9.0, 0.1], [1.0, 9.0, 0.4], [1.0, 0.0, 1.0]
    e = v = 0.0
    state = {k: np.float64(v) for k, v in state.items()}
    for error, square, got in zip(errors, squares, received):
        stats = {"error": np.float64(error), "square": np.float64(square)}
        alpha = controller.update(state, stats, np.float64(got), np.float64(0.0), np)
        if got:
            e, v = e + 0.5 * (error - e), v + 0.5 * (square - v)
        assert alpha == pytest.approx(0.8 * max(0.0, 1 - e / v))
    assert controller.initial_alpha() == 0.0
    fresh = {k: np.float64(v) for k, v in controller.initial_state().items()}
    no_variance = {"error": np.float64(1.0), "square": np.float64(0.0)}
    assert controller.update(fresh, no_variance, np.float64(1.0), np.float64(0.0), np) == 0.0


def test_learned_trust_is_online_logistic_regression_towards_the_best_alpha():
    """Written out by hand for three ticks: alpha = sigmoid(w . (r, s, 1)), one step
    w -= lr (alpha - alpha*) (r, s, 1) per delivery, alpha* the minimizer over alpha of
    p alpha^2 <(g - d)^2> + (1 - p) <(alpha g - d)^2>, p = 1/backward_every."""
    spec = LearnedMetaSpec(kind="learned", lr=0.5, alpha_init=0.2, decay=0.5)
    controller = make_controller(spec, backward_every=4)
    state = {k: np.float64(v) for k, v in controller.initial_state().items()}
    ticks = [  # error, square, cross, guide_square, received, loss
        (0.5, 1.0, 0.6, 0.8, 1.0, 2.0), (0.0, 0.0, 0.0, 0.0, 0.0, 1.5), (0.2, 0.5, 0.3, 0.25, 1.0, 1.7)]
    w = np.array([0.0, 0.0, np.log(0.2 / 0.8)])
    e = v = trend = change = 0.0
    previous = None
    for error, square, cross, guide_square, received, loss in ticks:
        stats = {"error": np.float64(error), "square": np.float64(square), "cross": np.float64(cross),
                 "guide_square": np.float64(guide_square)}
        alpha = controller.update(state, stats, np.float64(received), np.float64(loss), np)
        if received:
            e, v = e + 0.5 * (error - e), v + 0.5 * (square - v)
        r = np.clip(1 - e / v, -1, 1)
        change_now = 0.0 if previous is None else loss - previous
        previous = loss
        trend, change = trend + 0.5 * (change_now - trend), change + 0.5 * (abs(change_now) - change)
        s = np.tanh(trend / change) if change > 0 else 0.0
        phi = np.array([r, s, 1.0])
        if received:
            grid = np.linspace(0, 1, 100001)
            mse = 0.25 * grid**2 * error + 0.75 * (grid**2 * guide_square - 2 * grid * cross + square)
            target = grid[np.argmin(mse)]
            w = w - 0.5 * (1 / (1 + np.exp(-w @ phi)) - target) * phi
        assert float(alpha) == pytest.approx(1 / (1 + np.exp(-w @ phi)), rel=1e-5)
    assert controller.initial_alpha() == 0.2
    every_tick = make_controller(spec, backward_every=1)
    state = {k: np.float64(v) for k, v in every_tick.initial_state().items()}
    stats = {"error": np.float64(0.1), "square": np.float64(1.0), "cross": np.float64(0.9),
             "guide_square": np.float64(0.9)}
    first = every_tick.update(state, stats, np.float64(1.0), np.float64(1.0), np)
    assert every_tick.update(state, stats, np.float64(1.0), np.float64(1.0), np) < first  # towards alpha* = 0


def test_fixed_alpha_never_moves():
    controller = make_controller(FixedMetaSpec(kind="fixed", alpha=0.3))
    assert controller.update({}, {}, np.float64(1.0), np.float64(2.0), np) == 0.3


# --------------------------------------------------------------------------- runs


def guided_xor(guide="mlp", coupling="direct", meta="confidence", every=2, backend="reference") -> dict:
    return {
        "name": "guided", "seed": 4, "task": {"kind": "xor", "n_samples": 60},
        "populations": [{"name": "in", "size": 2, "role": "input"},
                        {"name": "h", "size": 6, "guide": guide},
                        {"name": "out", "size": 2, "role": "output", "activation": "identity"}],
        "projections": [{"pre": "in", "post": "h"}, {"pre": "h", "post": "out"}],
        "coupling": coupling, "meta": meta, "schedule": {"backward_every": every},
        "run": {"ticks": 12, "batch_size": 4, "eval_every": 6},
        "backend": {"kind": backend} if backend == "reference" else {"kind": backend, "dtype": "float64"},
    }


def test_evaluation_leaves_the_trajectory_unchanged():
    """Held-out credit runs a tick's stages on the held-out set; the run must not notice."""
    for backend in ("reference", "batched"):
        evaluated, plain = model_from(guided_xor(backend=backend)), model_from(guided_xor(backend=backend))
        evaluated.run()
        plain.run(12)
        for name, projection in plain.projections.items():
            np.testing.assert_array_equal(evaluated.projections[name].get_weights(), projection.get_weights())


def test_a_scikit_learn_regressor_from_python_guides_both_executors():
    estimator = KNeighborsRegressor(n_neighbors=3)
    guide = {"kind": "sklearn", "refit_every": 2}
    reference = ribbed.NetworkModel(guided_xor(guide, {"kind": "hash", "bits": 2}), guides={"h": estimator})
    batched = ribbed.NetworkModel(guided_xor(guide, {"kind": "hash", "bits": 2}, backend="batched"), guides={"h": estimator})
    reference.run()
    batched.run()
    assert isinstance(reference.executor.clusters[0].guide.model_, KNeighborsRegressor)
    np.testing.assert_allclose(batched.executor.read("guidance", "h"),
                               reference.executor.read("guidance", "h"), rtol=1e-7)
    assert not hasattr(estimator, "_fit_X")  # cloned, never fitted itself


@pytest.mark.parametrize("guides, match", [
    ({}, "has a guide of kind sklearn, and no estimator was given"),
    ({"h": object()}, "is not a scikit-learn regressor"),
    ({"out": KNeighborsRegressor()}, "whose guide is not of kind sklearn"),
])
def test_estimators_from_python_are_checked(guides, match):
    with pytest.raises(ribbed.ScenarioError, match=match):
        ribbed.NetworkModel(guided_xor({"kind": "sklearn"}), guides=guides)


def test_cluster_agents_read_alike_on_both_executors():
    reference = model_from(guided_xor("linear", {"kind": "tree", "leaf_size": 2}))
    batched = model_from(guided_xor("linear", {"kind": "tree", "leaf_size": 2}, backend="batched"))
    reference.run()
    batched.run()
    clusters = [a for a in reference.agents if a.agent_kind == "cluster"]
    views = [a for a in batched.agents if a.agent_kind == "cluster"]
    assert [(c.unique_id, c.members) for c in clusters] == [(v.unique_id, v.members) for v in views]
    np.testing.assert_allclose([v.alpha for v in views], [c.alpha for c in clusters], rtol=1e-7)
    for column in ("alpha", "cluster", "selectivity", "mutual_info", "weight_norm"):
        np.testing.assert_allclose(batched.agent_metrics[column].astype(float),
                                   reference.agent_metrics[column].astype(float), rtol=1e-7, err_msg=column)
