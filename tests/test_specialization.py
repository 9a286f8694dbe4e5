"""Specialization metrics, each checked against its published definition or an outside reference."""

from __future__ import annotations

from collections import Counter

import networkx as nx
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import mutual_info_score
from sklearn.metrics.cluster import contingency_matrix

from ribbed.specialization import (
    alpha_summary,
    cluster_sizes,
    modularity,
    mutual_information,
    preferred_class,
    purity,
    quantile_bins,
    selectivity_index,
    shuffled_purity,
)

SETTINGS = settings(derandomize=True, max_examples=100, deadline=None)


# --------------------------------------------------------------------------- strategies


@st.composite
def tuning_data(draw, nonnegative=True):
    """(activations, labels, n_classes, floor) with at least two classes present."""
    samples = draw(st.integers(2, 30))
    n_neurons = draw(st.integers(1, 5))
    n_classes = draw(st.integers(2, 5))
    labels = draw(arrays(np.int64, samples, elements=st.integers(0, n_classes - 1)))
    assume(np.unique(labels).size >= 2)
    responses = draw(arrays(np.float64, (samples, n_neurons),
                            elements=st.floats(0.0, 1.0, allow_subnormal=False)))
    if not nonnegative:
        responses = responses - 0.5
    if draw(st.booleans()):
        floor = draw(arrays(np.float64, n_neurons, elements=st.sampled_from([-1.0, 0.0])))
    else:
        floor = draw(st.sampled_from([-1.0, 0.0]))
    return responses + floor, labels, n_classes, floor


def selectivity_by_loop(activations, labels, n_classes, floor):
    """The formula, neuron by neuron and class by class."""
    floor = np.broadcast_to(np.asarray(floor, dtype=float), (activations.shape[1],))
    out = []
    for j in range(activations.shape[1]):
        r = activations[:, j] - floor[j]
        means = [r[labels == c].mean() for c in range(n_classes) if np.any(labels == c)]
        mu_max = max(means)
        rest = list(means)
        rest.remove(mu_max)
        mu_rest = sum(rest) / len(rest)
        out.append(0.0 if mu_max + mu_rest == 0 else (mu_max - mu_rest) / (mu_max + mu_rest))
    return np.array(out)


# --------------------------------------------------------------------------- selectivity


@SETTINGS
@given(tuning_data())
def test_selectivity_matches_loop_and_lies_in_unit_interval(data):
    activations, labels, n_classes, floor = data
    index = selectivity_index(activations, labels, n_classes, floor)
    assert index.shape == (activations.shape[1],)
    np.testing.assert_allclose(index, selectivity_by_loop(activations, labels, n_classes, floor), rtol=0, atol=1e-9)
    assert np.all(index >= -1e-12) and np.all(index <= 1 + 1e-12)


def test_selectivity_hand_made_cases():
    labels = np.array([0, 0, 1, 1, 2, 2])
    only_class_1 = np.array([0.0, 0.0, 0.7, 0.9, 0.0, 0.0])
    equal = np.full(6, 0.4)
    silent = np.zeros(6)
    activations = np.column_stack([only_class_1, equal, silent])
    np.testing.assert_allclose(selectivity_index(activations, labels, 3), [1.0, 0.0, 0.0], atol=1e-15)

    # tanh neurons sit at -1 when silent: with floor -1 the same pattern reads the same.
    np.testing.assert_allclose(selectivity_index(activations - 1.0, labels, 3, floor=-1.0),
                               [1.0, 0.0, 0.0], atol=1e-15)
    # Per-neuron floors: a tanh neuron beside a sigmoid one.
    mixed = np.column_stack([only_class_1 - 1.0, only_class_1])
    np.testing.assert_allclose(selectivity_index(mixed, labels, 3, floor=np.array([-1.0, 0.0])), [1.0, 1.0])


def test_selectivity_leaves_out_classes_without_samples():
    # Classes 2, 3, 4 have no samples: means 1.0 and 0.5 only, index (1 - .5) / (1 + .5).
    labels = np.array([0, 0, 1, 1])
    activations = np.array([[1.0], [1.0], [0.5], [0.5]])
    np.testing.assert_allclose(selectivity_index(activations, labels, 5), [1 / 3])


def test_selectivity_errors():
    a = np.ones((4, 2))
    y = np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="labels has"):
        selectivity_index(a, y[:3], 2)
    with pytest.raises(ValueError, match="2-D"):
        selectivity_index(a[:, 0], y, 2)
    with pytest.raises(ValueError, match="lie in"):
        selectivity_index(a, np.array([0, 1, 2, 1]), 2)
    with pytest.raises(ValueError, match="lie in"):
        selectivity_index(a, np.array([0, -1, 0, 1]), 2)
    with pytest.raises(ValueError, match="at least 2"):
        selectivity_index(a, np.zeros(4, dtype=int), 3)
    with pytest.raises(ValueError, match="floor"):
        selectivity_index(a, y, 2, floor=np.zeros(3))
    with pytest.raises(ValueError, match="integers"):
        selectivity_index(a, np.array([0.0, 1.5, 0.0, 1.0]), 2)


# --------------------------------------------------------------------------- preferred class


@SETTINGS
@given(tuning_data(nonnegative=False))
def test_preferred_class_matches_loop(data):
    activations, labels, n_classes, floor = data
    floor = np.broadcast_to(np.asarray(floor, dtype=float), (activations.shape[1],))
    expected = []
    for j in range(activations.shape[1]):
        r = activations[:, j] - floor[j]
        means = {c: r[labels == c].mean() for c in range(n_classes) if np.any(labels == c)}
        best = max(means.values())
        expected.append(min(c for c, v in means.items() if v == best))
    result = preferred_class(activations, labels, n_classes, floor)
    assert result.dtype == np.int64
    np.testing.assert_array_equal(result, expected)


def test_preferred_class_ties_and_absent_classes():
    labels = np.array([1, 1, 3, 3])
    tie = np.array([0.5, 0.5, 0.5, 0.5])
    negative = np.array([-1.0, -1.0, -2.0, -2.0])  # below the floor: an absent class (mean "0") must not win
    result = preferred_class(np.column_stack([tie, negative]), labels, 4)
    np.testing.assert_array_equal(result, [1, 1])
    with pytest.raises(ValueError, match="at least 1"):
        preferred_class(np.ones((0, 2)), np.array([], dtype=int), 4)


# --------------------------------------------------------------------------- mutual information


def test_quantile_bins_equal_frequency_and_ties():
    x = np.column_stack([np.arange(64.0)[::-1], np.full(64, 3.0), np.repeat([0.0, 1.0], 32)])
    codes = quantile_bins(x, 8)
    assert codes.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(codes[:, 0], minlength=8), np.full(8, 8))
    assert np.all(codes[:, 0][:-1] >= codes[:, 0][1:])  # monotone in the value
    assert np.all(codes[:, 1] == 0)  # a constant column is one bin
    assert np.unique(codes[:, 2]).size == 2  # ties never split
    assert np.all(quantile_bins(x, 1) == 0)


@SETTINGS
@given(arrays(np.float64, st.tuples(st.integers(1, 40), st.integers(1, 4)),
              elements=st.floats(-3, 3, allow_subnormal=False) | st.sampled_from([0.0, 1.0])),
       st.integers(1, 6), st.data())
def test_quantile_bins_matches_per_column_digitize(x, bins, data):
    codes = quantile_bins(x, bins)
    assert codes.min() >= 0 and codes.max() < bins
    for j in range(x.shape[1]):
        edges = np.quantile(x[:, j], np.linspace(0, 1, bins + 1)[1:-1])
        np.testing.assert_array_equal(codes[:, j], np.digitize(x[:, j], edges, right=True))


@SETTINGS
@given(st.data())
def test_mutual_information_matches_sklearn_per_column(data):
    samples = data.draw(st.integers(1, 40))
    n_neurons = data.draw(st.integers(1, 4))
    bins = data.draw(st.integers(1, 8))
    x = data.draw(arrays(np.float64, (samples, n_neurons),
                         elements=st.floats(-3, 3, allow_subnormal=False) | st.sampled_from([0.0, 1.0])))
    labels = data.draw(arrays(np.int64, samples, elements=st.sampled_from([-2, 0, 5, 7])))
    mi = mutual_information(x, labels, bins)
    codes = quantile_bins(x, bins)
    expected = [mutual_info_score(labels, codes[:, j]) for j in range(n_neurons)]
    np.testing.assert_allclose(mi, expected, rtol=1e-9, atol=1e-12)
    assert np.all(mi >= 0)


def test_mutual_information_extremes():
    labels = np.repeat([0, 1], 50)
    informative = labels + np.linspace(0, 0.5, 100)
    constant = np.full(100, 0.3)
    mi = mutual_information(np.column_stack([informative, constant]), labels, bins=4)
    np.testing.assert_allclose(mi, [np.log(2), 0.0], atol=1e-12)  # the label entropy, then nothing
    with pytest.raises(ValueError, match="labels"):
        mutual_information(np.ones((4, 2)), np.zeros(3), 2)
    with pytest.raises(ValueError, match="bins"):
        mutual_information(np.ones((4, 2)), np.zeros(4), 0)


# --------------------------------------------------------------------------- purity


def test_purity_textbook_example():
    # Manning, Raghavan & Schütze, Introduction to IR, Figure 16.4: three clusters of 17 points.
    # cluster 1: 5 x, 1 o; cluster 2: 1 x, 4 o, 1 diamond; cluster 3: 2 x, 3 diamond.
    x, o, d = 0, 1, 2
    classes = np.array([x] * 5 + [o] + [x] + [o] * 4 + [d] + [x] * 2 + [d] * 3)
    assignment = np.array([10] * 6 + [-4] * 6 + [99] * 5)  # ids need not be contiguous
    assert purity(assignment, classes) == pytest.approx((5 + 4 + 3) / 17)
    assert round(purity(assignment, classes), 2) == 0.71


@SETTINGS
@given(st.lists(st.tuples(st.integers(-3, 6), st.integers(0, 3)), min_size=1, max_size=40))
def test_purity_matches_contingency_matrix_and_counter(pairs):
    assignment, classes = (np.array(v) for v in zip(*pairs))
    by_cluster = {}
    for a, c in pairs:
        by_cluster.setdefault(a, Counter())[c] += 1
    by_counter = sum(cnt.most_common(1)[0][1] for cnt in by_cluster.values()) / len(pairs)
    by_sklearn = contingency_matrix(classes, assignment).max(axis=0).sum() / len(pairs)
    assert purity(assignment, classes) == pytest.approx(by_counter)
    assert purity(assignment, classes) == pytest.approx(by_sklearn)


def test_shuffled_purity_baseline():
    classes = np.repeat(np.arange(4), 10)
    assignment = classes * 7 + 1  # perfectly pure
    rng = np.random.default_rng(0)
    assert purity(assignment, classes) == 1.0
    assert shuffled_purity(assignment, classes, rng) < 0.9
    assert shuffled_purity(assignment, np.full(40, 2), rng, repeats=5) == 1.0
    a = shuffled_purity(assignment, classes, np.random.default_rng(3), repeats=20)
    b = shuffled_purity(assignment, classes, np.random.default_rng(3), repeats=20)
    assert a == b


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3)), min_size=1, max_size=30),
       st.integers(1, 8), st.integers(0, 2**32 - 1))
def test_shuffled_purity_is_the_mean_over_permutations(pairs, repeats, seed):
    assignment, classes = (np.array(v) for v in zip(*pairs))
    result = shuffled_purity(assignment, classes, np.random.default_rng(seed), repeats)
    # The same permutations (one per row of rng.permuted), scored one at a time.
    perms = np.random.default_rng(seed).permuted(np.tile(classes, (repeats, 1)), axis=1)
    assert result == pytest.approx(np.mean([purity(assignment, p) for p in perms]))
    # Any clustering is at least as pure as the frequency of the most common class.
    assert np.bincount(classes).max() / classes.size - 1e-12 <= result <= 1.0


def test_purity_errors_and_cluster_sizes():
    with pytest.raises(ValueError, match="equal length"):
        purity(np.array([0, 1]), np.array([0]))
    with pytest.raises(ValueError, match="at least one"):
        purity(np.array([], dtype=int), np.array([], dtype=int))
    with pytest.raises(ValueError, match="repeats"):
        shuffled_purity(np.array([0, 1]), np.array([0, 1]), np.random.default_rng(0), repeats=0)
    sizes = cluster_sizes(np.array([5, 5, -1, 9, 9, 9, 5, 9]))
    np.testing.assert_array_equal(sizes, [4, 3, 1])
    assert sizes.dtype == np.int64
    assert cluster_sizes(np.array([], dtype=int)).size == 0


# --------------------------------------------------------------------------- modularity


@st.composite
def graphs(draw):
    n_nodes = draw(st.integers(1, 8))
    n_edges = draw(st.integers(0, 20))
    node = st.integers(0, n_nodes - 1)
    pre = draw(arrays(np.int64, n_edges, elements=node))
    post = draw(arrays(np.int64, n_edges, elements=node))
    # Weights below 1e-6 in magnitude become 0: networkx squares the degree sum and underflows.
    weight = st.floats(-5, 5, allow_subnormal=False).map(lambda w: 0.0 if abs(w) < 1e-6 else w)
    weights = draw(arrays(np.float64, n_edges, elements=weight))
    communities = draw(arrays(np.int64, n_nodes, elements=st.integers(0, 3)))
    return pre, post, weights, communities


@SETTINGS
@given(graphs())
def test_modularity_matches_networkx(graph):
    pre, post, weights, communities = graph
    G = nx.Graph()
    G.add_nodes_from(range(communities.size))
    for u, v, w in zip(pre.tolist(), post.tolist(), np.abs(weights).tolist()):
        if G.has_edge(u, v):
            G[u][v]["weight"] += w
        else:
            G.add_edge(u, v, weight=w)
    q = modularity(pre, post, weights, communities)
    if np.abs(weights).sum() == 0:
        assert q == 0.0
        return
    partition = [set(np.flatnonzero(communities == c).tolist()) for c in np.unique(communities)]
    expected = nx.algorithms.community.modularity(G, partition, weight="weight")
    assert q == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_modularity_two_triangles_and_errors():
    # Two disjoint triangles, one listed in both directions with negative weights: Q = 2 (1/2 - 1/4).
    pre = np.array([0, 1, 2, 3, 4, 5, 1, 2, 0])
    post = np.array([1, 2, 0, 4, 5, 3, 0, 1, 2])
    weights = np.array([-0.5, -0.5, -0.5, 1.0, 1.0, 1.0, -0.5, -0.5, -0.5])
    assert modularity(pre, post, weights, np.array([0, 0, 0, 1, 1, 1])) == pytest.approx(0.5)
    assert modularity(pre, post, weights, np.zeros(6, dtype=int)) == pytest.approx(0.0, abs=1e-15)
    assert modularity(np.array([], dtype=int), np.array([], dtype=int), np.array([]), np.zeros(3, dtype=int)) == 0.0
    with pytest.raises(ValueError, match="equal"):
        modularity(pre, post[:-1], weights, np.zeros(6, dtype=int))
    with pytest.raises(ValueError, match="index nodes"):
        modularity(pre, post, weights, np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match="finite"):
        modularity(pre, post, np.full(9, np.nan), np.zeros(6, dtype=int))


# --------------------------------------------------------------------------- couplings


def test_alpha_summary():
    alpha = np.array([0.3, -1.0, 2.0, 0.5, 0.0])
    summary = alpha_summary(alpha)
    assert list(summary) == ["mean", "std", "min", "q10", "q50", "q90", "max"]
    assert all(type(v) is float for v in summary.values())
    q10, q50, q90 = np.quantile(alpha, [0.1, 0.5, 0.9])
    assert summary == pytest.approx({"mean": alpha.mean(), "std": alpha.std(), "min": -1.0, "q10": q10,
                                     "q50": 0.3, "q90": q90, "max": 2.0})
    assert all(np.isnan(v) for v in alpha_summary(np.array([])).values())
    with pytest.raises(ValueError, match="1-D"):
        alpha_summary(np.ones((2, 2)))


def test_a_spiking_populations_response_is_its_spike_count_over_the_steps():
    """docs/semantics.md, "Specialization metrics": for a spiking population the response to a
    sample is the neuron's spike count over the T steps, above a floor of 0."""
    import ribbed
    from ribbed.scenarios.loader import load_scenario
    from ribbed.specialization import class_responses

    data = load_scenario("digits-spiking").model_dump(mode="json")
    data["run"].update(ticks=3, eval_every=3)
    model = ribbed.NetworkModel(ribbed.load_scenario(data))
    for _ in range(3):
        model.step()
    prediction = model.executor.predict(model.dataset.X_test, keep=["hidden"])
    steps = model.scenario.run.steps_per_sample
    counts = prediction.activations["hidden"] * steps
    assert np.allclose(counts, np.rint(counts), atol=1e-4) and counts.max() > 1
    # The first samples' per-step spikes add up to the same counts.
    assert np.array_equal(prediction.steps["hidden"].sum(axis=1), np.rint(counts[:len(prediction.steps["hidden"])]))
    model.evaluate()
    labels, classes = model.dataset.y_test, model.network.output.size
    expected = class_responses(np.rint(counts), labels, classes, 0.0)
    np.testing.assert_allclose(model.specialization.tuning["hidden"], expected, rtol=0, atol=1e-12)
    assert np.isfinite(model.specialization.values["selectivity"][64:164]).all()
    # The raster is the evaluation's spikes of its first held-out samples.
    assert np.array_equal(model.specialization.raster["hidden"], prediction.steps["hidden"].astype(np.uint8))
