"""Hierarchical meta units (issue 17, docs/semantics.md "Hierarchical meta units"): a second-level
controller over groups of meta units whose members' credit and activity correlate.

Groups are the connected components of a hand-made R (merges and splits counted), the running
correlations match a numpy oracle, w = 0 gives exactly the run without a hierarchy, the reference
and batched executors agree (with merges and splits happening) and count the same messages, Ray
agrees with batched, a run resumes bit for bit and verifies with the hierarchy in metrics.csv and
agents.csv, and bad settings get located errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import assert_resume_is_exact, model_from
from ribbed import ScenarioError
from ribbed.meta import make_controller
from ribbed.meta.hierarchy import Hierarchy, correlations, group_changes, groups_of
from ribbed.scenarios.guidance import ConfidenceMetaSpec, HierarchySpec
from test_executors import ATOL, RTOL, assert_same_state

TICKS = 16


def hierarchical(coupling: dict | None = None, meta: str = "confidence", seed: int = 3, ticks: int = TICKS,
                 backend: str = "reference", second_level: bool = True, **hierarchy) -> dict:
    """xor: in(2) -> h(12, linear guides) -> out(2), the error every 2nd tick, regrouping every 4
    (without the ``hierarchy`` section when not ``second_level``)."""
    settings = {"regroup_every": 4, "threshold": 0.2, "decay": 0.5, **hierarchy}
    return {"name": "hier", "seed": seed, "task": {"kind": "xor", "n_samples": 64},
            "populations": [{"name": "in", "size": 2, "role": "input"},
                            {"name": "h", "size": 12, "activation": "tanh", "guide": {"kind": "linear"}},
                            {"name": "out", "size": 2, "role": "output", "activation": "identity"}],
            "projections": [{"pre": "in", "post": "h"}, {"pre": "h", "post": "out"}],
            "coupling": coupling or {"kind": "hash", "bits": 2, "rehash_every": 3},
            "meta": {"kind": meta, **({"hierarchy": settings} if second_level else {})},
            "learning": {"rule": "backprop", "lr": 0.05, "optimizer": "adam"},
            "schedule": {"backward_every": 2},
            "run": {"ticks": ticks, "batch_size": 8, "eval_every": ticks // 2},
            "backend": ({"kind": "reference"} if backend == "reference"
                        else {"kind": backend, "dtype": "float64", "device": "cpu"})}


# ---------------------------------------------------------------------------- shared numpy code


def test_groups_are_components_of_links_by_both_correlations_and_merges_and_splits_are_counted():
    n = 6
    r_c, r_a = np.eye(n), np.eye(n)
    for u, v, c, a in [(0, 1, 0.9, 0.8), (1, 2, 0.6, 0.7),  # 0-1-2 a chain: one group though 0-2 is not linked
                       (3, 4, 0.9, 0.1),  # credit alike, activity not: no link
                       (4, 5, 0.5, 0.5)]:  # exactly at the threshold: linked
        r_c[u, v] = r_c[v, u] = c
        r_a[u, v] = r_a[v, u] = a
    groups = groups_of(r_c, r_a, 0.5)
    np.testing.assert_array_equal(groups, [0, 0, 0, 3, 4, 4])
    previous = np.array([0, 0, 2, 3, 3, 5])  # {0,1} {2} {3,4} {5}
    # {0,1} and {2} merge into 0; {3,4} splits into {3} and {4,5}, where {5} merges with 4.
    assert group_changes(previous, groups) == (2, 1)
    assert group_changes(groups, groups) == (0, 0)


def test_correlations_and_their_running_means_match_a_numpy_oracle():
    rng = np.random.default_rng(0)
    values = rng.standard_normal((7, 4))
    values[:, 2] = 1.5  # zero variance: 0 with the others, 1 with itself
    expected = np.corrcoef(values[:, [0, 1, 3]], rowvar=False)
    got = correlations(values)
    np.testing.assert_allclose(got[np.ix_([0, 1, 3], [0, 1, 3])], expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(got[2], [0.0, 0.0, 1.0, 0.0])

    controller = make_controller(ConfidenceMetaSpec(kind="confidence"))
    hierarchy = Hierarchy(HierarchySpec(decay=0.25), controller, 5)
    present = np.array([True, True, False, True, True])  # unit 2 has no members: its rows stay out
    first, second = rng.standard_normal((2, 7, 5)), rng.standard_normal((2, 7, 5))
    r = np.eye(5)
    for credit, activity in (first, second):
        hierarchy.observe(credit, activity, present)
        kept = [0, 1, 3, 4]
        now = np.corrcoef(credit[:, kept], rowvar=False)
        r[np.ix_(kept, kept)] += 0.25 * (now - r[np.ix_(kept, kept)])
    np.testing.assert_allclose(hierarchy.r_c, r, rtol=1e-12, atol=1e-12)
    assert hierarchy.r_a[2, 3] == 0.0 and hierarchy.r_a[2, 2] == 1.0 and np.all(np.diag(hierarchy.r_a) == 1.0)


def test_a_new_group_starts_from_its_units_mean_state_and_pools_their_sums():
    controller = make_controller(ConfidenceMetaSpec(kind="confidence", decay=0.5))
    hierarchy = Hierarchy(HierarchySpec(threshold=0.5), controller, 3)
    hierarchy.r_c[0, 1] = hierarchy.r_c[1, 0] = hierarchy.r_a[0, 1] = hierarchy.r_a[1, 0] = 0.7
    hierarchy.regroup({"error": np.array([1.0, 3.0, 5.0]), "square": np.array([2.0, 4.0, 8.0])})
    np.testing.assert_array_equal(hierarchy.groups, [0, 0, 2])
    assert (hierarchy.merges, hierarchy.splits) == (1, 0)
    assert hierarchy.group_state["error"][[0, 2]].tolist() == [2.0, 5.0]
    # Sums (error, square, cross, guide_square, count): group 0 pools units 0 and 1.
    sums = np.array([[1.0, 3.0, 0.0], [4.0, 4.0, 1.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [2.0, 2.0, 1.0]])
    alpha = hierarchy.update(sums, 0.0)
    e, v = 2.0 + 0.5 * (4.0 / 4 - 2.0), 3.0 + 0.5 * (8.0 / 4 - 3.0)
    assert alpha[0] == alpha[1] == pytest.approx(1 - e / v)
    assert hierarchy.blend(0.2, 0.6) == pytest.approx(0.4)


# ---------------------------------------------------------------------------- executors


@pytest.mark.parametrize("backend", ["reference", "batched"])
def test_weight_zero_gives_exactly_the_run_without_a_hierarchy(backend):
    plain = model_from(hierarchical(backend=backend, second_level=False))
    zero = model_from(hierarchical(backend=backend, weight=0.0))
    assert plain.network.guided["h"].hierarchy is None
    for _ in range(TICKS):
        plain.step()
        zero.step()
        assert zero.last_result.loss == plain.last_result.loss
        np.testing.assert_array_equal(zero.executor.read("alpha", "h"), plain.executor.read("alpha", "h"))
    for name, projection in plain.projections.items():
        np.testing.assert_array_equal(zero.projections[name].get_weights(), projection.get_weights())
    assert zero.executor.read("hierarchy", "h")["merges"] > 0  # the second level did run


@pytest.mark.parametrize("coupling,meta", [({"kind": "hash", "bits": 2, "rehash_every": 3}, "confidence"),
                                           ({"kind": "tree", "leaf_size": 2, "reorder_every": 5}, "learned")])
def test_reference_and_batched_agree_on_groups_alpha_and_messages(coupling, meta):
    reference = model_from(hierarchical(coupling, meta))
    other = model_from(hierarchical(coupling, meta, backend="batched"))
    changes = 0
    for _ in range(TICKS):
        reference.step()
        other.step()
        assert other.last_result.loss == pytest.approx(reference.last_result.loss, rel=RTOL, abs=ATOL)
        expected, got = reference.executor.read("hierarchy", "h"), other.executor.read("hierarchy", "h")
        np.testing.assert_array_equal(got["groups"], expected["groups"])
        assert (got["merges"], got["splits"]) == (expected["merges"], expected["splits"])
        for name in ("r_c", "r_a", "unit_group_alpha"):
            np.testing.assert_allclose(got[name], expected[name], rtol=RTOL, atol=ATOL, err_msg=name)
        for name in ("alpha", "meta_group", "group_alpha", "guide_alpha"):
            np.testing.assert_allclose(other.executor.read(name, "h"), reference.executor.read(name, "h"),
                                       rtol=RTOL, atol=ATOL, err_msg=name)
        np.testing.assert_array_equal(other.executor.message_counts, reference.executor.message_counts)
        changes = expected["merges"] + expected["splits"]
    assert changes > 0 and 1 < expected["n_groups"] < len(expected["groups"])
    # The blend reached the neurons: a neuron's alpha is (1 - w) alpha_unit + w alpha_group.
    units = reference.network.guided["h"].coupling.unit_guides()
    cluster = reference.executor.read("cluster", "h")
    blend = 0.5 * reference.executor.read("guide_alpha", "h")[units] + 0.5 * expected["unit_group_alpha"]
    np.testing.assert_allclose(reference.executor.read("alpha", "h"), blend[cluster], rtol=1e-12)
    assert_same_state(reference, other)


def test_ray_agrees_with_batched():
    ray = pytest.importorskip("ray")
    ray.shutdown()
    ray.init(num_cpus=2, object_store_memory=100 * 2**20, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    try:
        on_ray = model_from({**hierarchical(backend="batched"),
                             "backend": {"kind": "ray", "dtype": "float64", "shards": 2}})
        other = model_from(hierarchical(backend="batched"))
        try:
            for _ in range(TICKS):
                on_ray.step()
                other.step()
            for name in ("alpha", "meta_group", "group_alpha"):
                np.testing.assert_array_equal(on_ray.executor.read(name, "h"), other.executor.read(name, "h"))
            np.testing.assert_array_equal(on_ray.executor.read("hierarchy", "h")["r_c"],
                                          other.executor.read("hierarchy", "h")["r_c"])
        finally:
            on_ray.executor.close()
    finally:
        ray.shutdown()


@pytest.mark.parametrize("backend", ["reference", "batched"])
def test_a_resumed_run_continues_bit_for_bit_verifies_and_records_the_hierarchy(tmp_path: Path, backend: str):
    data = {**hierarchical(ticks=24, backend=backend, regroup_every=5), "log": {"level": "summary", "snapshot_every": 6}}
    data["run"]["eval_every"] = 6

    # cut after the snapshot of tick 12, past the regroups of ticks 4, 9 and 14
    whole, _, values = assert_resume_is_exact(data, 17, tmp_path)
    assert any("hierarchy/r_c" in key for key in values)
    metrics = whole.model.metrics
    assert {"h_meta_groups", "h_merges", "h_splits"} <= set(metrics.columns)
    assert metrics["h_merges"].iloc[-1] + metrics["h_splits"].iloc[-1] > 0
    agents = whole.model.agent_metrics
    clusters = agents[(agents["population"] == "h") & (agents["agent_kind"] == "cluster")]
    last = clusters[clusters.index.get_level_values(0) == clusters.index.get_level_values(0).max()]
    np.testing.assert_array_equal(last["meta_group"].to_numpy(dtype=float),
                                  whole.model.executor.read("hierarchy", "h")["groups"])
    np.testing.assert_array_equal(last["group_alpha"].to_numpy(dtype=float), whole.model.executor.read("group_alpha", "h"))


# ---------------------------------------------------------------------------- bad input


def test_direct_coupling_and_too_many_units_are_refused_naming_the_field():
    with pytest.raises(ScenarioError) as caught:
        model_from(hierarchical({"kind": "direct"}))
    problem = caught.value.problems[0]
    assert problem.path == "meta.hierarchy" and "direct coupling" in problem.message and "hash or tree" in problem.fix
    with pytest.raises(ScenarioError) as caught:
        model_from(hierarchical({"kind": "hash", "bits": 11}))
    problem = caught.value.problems[0]
    assert "2048 meta units" in problem.message and "at most 1024" in problem.message and "fewer hash bits" in problem.fix


@pytest.mark.parametrize("change,where", [({"regroup_every": 0}, "regroup_every"), ({"threshold": 1.5}, "threshold"),
                                          ({"decay": 0.0}, "decay"), ({"weight": -0.1}, "weight"),
                                          ({"every": 3}, "every")])
def test_bad_hierarchy_settings_are_refused_naming_the_field(change, where):
    with pytest.raises(ScenarioError) as caught:
        model_from(hierarchical(**change))
    assert any(p.path.endswith(f"hierarchy.{where}") for p in caught.value.problems), caught.value.problems
