"""Null baselines and statistics of the specialization metrics (issue 15): the label-permutation
null, the purity null, permutation p-values, cluster stability, per-cluster records, the
class-tuning matrix, and analysis read the Mesa way (agent attributes, AgentSets, groupby)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from mesa.agent import AgentSet
from sklearn.metrics import adjusted_rand_score

import ribbed
from ribbed import specialization as spec
from ribbed.specialization_recorder import null_repeats

SETTINGS = settings(derandomize=True, max_examples=60, deadline=None)


@st.composite
def tuning_data(draw):
    samples = draw(st.integers(4, 40))
    n_neurons = draw(st.integers(1, 4))
    n_classes = draw(st.integers(2, 4))
    labels = draw(arrays(np.int64, samples, elements=st.integers(0, n_classes - 1)))
    if np.unique(labels).size < 2:
        labels[:2] = [0, 1]
    activations = draw(arrays(np.float64, (samples, n_neurons), elements=st.floats(0.0, 1.0, allow_subnormal=False)))
    return activations, labels, n_classes


@SETTINGS
@given(tuning_data(), st.integers(0, 2**32 - 1), st.integers(1, 6))
def test_the_null_is_the_metrics_under_each_permutation(data, seed, repeats):
    """Row k of the null is selectivity_index and mutual_information with the k-th permutation
    (rng.permuted on a repeats x samples array) of the labels."""
    activations, labels, n_classes = data
    null = spec.label_permutation_null(activations, labels, n_classes, np.random.default_rng(seed), repeats)
    permuted = np.random.default_rng(seed).permuted(np.broadcast_to(labels, (repeats, labels.size)), axis=1)
    for k in range(repeats):
        np.testing.assert_allclose(null["selectivity"][k],
                                   spec.selectivity_index(activations, permuted[k], n_classes), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(null["mutual_info"][k], spec.mutual_information(activations, permuted[k]),
                                   rtol=1e-12, atol=1e-13)


def test_tuned_neurons_lie_far_above_the_null_and_noise_does_not():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 400)
    tuned = (labels[:, None] == np.arange(4)[None, :]).astype(float) + 0.1 * rng.random((400, 4))
    noise = rng.random((400, 4))
    for activations, selective in ((tuned, True), (noise, False)):
        null = spec.label_permutation_null(activations, labels, 4, np.random.default_rng(1), 200)
        observed = spec.selectivity_index(activations, labels, 4).mean()
        p = spec.permutation_p_value(observed, null["selectivity"].mean(axis=1))
        assert (p == 1 / 201) if selective else (p > 0.05)


def test_permutation_p_value():
    null = np.arange(10.0)
    assert spec.permutation_p_value(9.5, null) == 1 / 11
    assert spec.permutation_p_value(-1.0, null) == 1.0
    assert spec.permutation_p_value(4.0, null) == 7 / 11  # 4..9 are >= 4, plus the observed one
    assert np.isnan(spec.permutation_p_value(float("nan"), null))
    with pytest.raises(ValueError):
        spec.permutation_p_value(1.0, np.array([]))


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 3)), min_size=1, max_size=40),
       st.integers(1, 8), st.integers(0, 2**32 - 1))
def test_the_purity_null_is_purity_under_each_permutation_and_its_mean_the_shuffled_purity(pairs, repeats, seed):
    assignment, classes = (np.array(column) for column in zip(*pairs))
    null = spec.purity_null(assignment, classes, np.random.default_rng(seed), repeats)
    permuted = np.random.default_rng(seed).permuted(np.broadcast_to(classes, (repeats, classes.size)), axis=1)
    np.testing.assert_allclose(null, [spec.purity(assignment, row) for row in permuted], rtol=0, atol=1e-15)
    assert spec.shuffled_purity(assignment, classes, np.random.default_rng(seed), repeats) == pytest.approx(
        null.mean(), rel=1e-12)


@SETTINGS
@given(arrays(np.int64, st.integers(1, 50), elements=st.integers(0, 5)), st.integers(0, 2**32 - 1))
def test_cluster_stability(previous, seed):
    current = np.random.default_rng(seed).permutation(6)[previous]  # the same grouping, other ids
    kept, ari = spec.cluster_stability(previous, current)
    assert ari == pytest.approx(1.0) and kept == pytest.approx(np.mean(previous == current))
    assert spec.cluster_stability(previous, previous) == (1.0, pytest.approx(1.0))
    other = np.random.default_rng(seed + 1).integers(0, 6, previous.size)
    assert spec.cluster_stability(previous, other)[1] == pytest.approx(adjusted_rand_score(previous, other))


def test_class_responses_is_the_matrix_preference_and_selectivity_are_read_from():
    rng = np.random.default_rng(3)
    labels = np.array([0, 0, 1, 2, 2, 2, 1, 0])
    activations = rng.random((8, 5))
    matrix = spec.class_responses(activations, labels, 4, floor=0.0)
    assert matrix.shape == (4, 5) and np.all(np.isnan(matrix[3]))
    np.testing.assert_allclose(matrix[1], activations[labels == 1].mean(axis=0))
    np.testing.assert_array_equal(np.nanargmax(matrix, axis=0), spec.preferred_class(activations, labels, 4))


def test_null_repeats_shrink_only_for_very_large_populations():
    assert null_repeats(360, 64) == 100
    assert null_repeats(10_000, 10_000) == 20


# --------------------------------------------------------------------------- in a run


@pytest.fixture(scope="module")
def specialize_run(tmp_path_factory) -> tuple[Path, ribbed.NetworkModel]:
    scenario = ribbed.load_scenario("digits-specialize").model_dump(mode="json", exclude_none=True)
    scenario["run"].update(ticks=300, eval_every=100)
    scenario["log"] = {"level": "off"}
    out = tmp_path_factory.mktemp("runs") / "specialize"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ribbed.RibbedWarning)
        result = ribbed.run(scenario, out=out)
    return out, result.model


def test_every_tuning_metric_is_recorded_with_its_null(specialize_run):
    out, _ = specialize_run
    metrics = pd.read_csv(out / "metrics.csv")
    for metric in ("selectivity", "mutual_info"):
        mean, lo, hi = (metrics[f"hidden_{metric}_{key}"] for key in ("null_mean", "null_lo", "null_hi"))
        assert np.all((lo <= mean) & (mean <= hi)) and np.all(lo > 0)
        p = metrics[f"hidden_{metric}_p"]
        assert np.all((p >= 1 / 101) & (p <= 1))
        share = metrics[f"hidden_{metric}_above_null"]
        assert np.all((share >= 0) & (share <= 1))
    # A network whose input carries its classes is selective beyond chance from the start.
    assert metrics["hidden_selectivity_mean"][0] > metrics["hidden_selectivity_null_hi"][0]
    assert metrics["hidden_preferred_kept"][0] == 1.0 and 0 <= metrics["hidden_preferred_kept"].iloc[-1] <= 1
    assert np.isnan(metrics["hidden_cluster_kept"][0]) and np.isnan(metrics["hidden_cluster_ari"][0])
    later = metrics.iloc[1:]
    assert np.all((later["hidden_cluster_ari"] <= 1) & (later["hidden_cluster_kept"] >= 0))
    assert np.all(metrics["hidden_purity_null_lo"] <= metrics["hidden_purity_shuffled"])
    assert np.all(metrics["hidden_purity_shuffled"] <= metrics["hidden_purity_null_hi"])


def test_cluster_rows_hold_size_guide_r2_and_alpha(specialize_run):
    out, model = specialize_run
    agents = pd.read_csv(out / "agents.csv")
    clusters = agents[agents["agent_kind"] == "cluster"]
    neurons = agents[agents["agent_kind"] == "neuron"]
    for tick, rows in clusters.groupby("tick"):
        assert rows["size"].sum() == 64  # every hidden neuron in exactly one unit
        hidden = neurons[(neurons["tick"] == tick) & (neurons["population"] == "hidden")]
        sizes = hidden["cluster"].value_counts()
        for _, row in rows.iterrows():
            assert row["size"] == sizes.get(row["cluster"], 0)
            assert np.isnan(row["guide_r2"]) == (row["size"] == 0)
        served = rows[rows["size"] > 0].set_index("cluster")["alpha"].sort_index()
        np.testing.assert_allclose(served, hidden.groupby("cluster")["alpha"].first().sort_index(), rtol=1e-12)
    assert clusters["guide_r2"].notna().any()


def test_pooled_unit_sums_give_the_population_r2(specialize_run):
    """The per-neuron held-out sums behind the unit R^2 add up to the population's R^2."""
    _, model = specialize_run
    sums = model.executor.held_out_credit(model.dataset.X_test, model.targets_test)["hidden"]
    assert sums.shape == (4, 64) and np.all(sums[3] == len(model.dataset.X_test))
    ss_res, total, square, count = sums.sum(axis=1)
    assert model.last_metrics["hidden_guide_r2"] == pytest.approx(1 - ss_res / (square - total**2 / count))


def test_the_tuning_matrix_in_tuning_csv_gives_the_agents_preferences(specialize_run):
    out, model = specialize_run
    tuning = pd.read_csv(out / "tuning.csv")
    agents = pd.read_csv(out / "agents.csv")
    last = tuning[tuning["tick"] == 300].pivot(index="AgentID", columns="class", values="response")
    preferred = agents[(agents["tick"] == 300) & agents["AgentID"].isin(last.index)].set_index("AgentID")
    np.testing.assert_array_equal(last.to_numpy().argmax(axis=1), preferred.loc[last.index, "preferred_class"])
    pd.testing.assert_frame_equal(model.tuning.reset_index(drop=True), tuning, check_dtype=False)
    assert set(tuning["tick"]) == {0, 100, 200, 300} and len(tuning) == 4 * 64 * 10


def test_analysis_reads_like_mesa(specialize_run):
    _, model = specialize_run
    assert isinstance(model.neurons, AgentSet) and isinstance(model.clusters, AgentSet)
    assert len(model.neurons) == model.network.n_neurons and len(model.clusters) == 8
    groups = model.agents.groupby("population")
    assert set(groups.groups) == {"pixels", "hidden", "classes"}
    assert len(groups.groups["hidden"]) == 64 + 8  # the hidden neurons and their clusters
    hidden = model.neurons.select(lambda a: a.population == "hidden")
    for agent in hidden:
        assert agent.selectivity == model.specialization.values["selectivity"][agent.unique_id]
        assert agent.preferred_class in range(10) and agent.mutual_info >= 0
    assert np.isnan(model.neurons.select(lambda a: a.population == "pixels")[0].selectivity)
    assert sum(model.clusters.get("size")) == 64
    selective = hidden.select(lambda a: a.selectivity > 0.3)
    assert 0 < len(selective) < 64


def test_the_per_neuron_credit_sums_agree_between_executors():
    sums = {}
    for backend in ("reference", "batched"):
        scenario = ribbed.load_scenario("digits-specialize").model_dump(mode="json", exclude_none=True)
        scenario["backend"] = {"kind": backend, "dtype": "float64"}
        model = ribbed.NetworkModel(scenario)
        for _ in range(5):
            model.advance()
        sums[backend] = model.executor.held_out_credit(model.dataset.X_test, model.targets_test)["hidden"]
    assert sums["batched"].shape == (4, 64)
    np.testing.assert_allclose(sums["reference"], sums["batched"], rtol=1e-9, atol=1e-12)
