"""Shared guides that tell their members apart (issue 17): ``identity: [readout, weights]`` appends
each neuron's weight to the sample's target (readout) and its outgoing weights to what its guide
sees.

The executors compute the same identity features (reference and batched in float64, and Ray
against batched); bad settings get located errors; identity is off by default; and on digits
with the error every 4th tick, 8 hash-shared guides with identity features predict the held-out
credit about as well as 64 direct ones (the issue's bar: at least 0.8 times their R^2)."""

from __future__ import annotations

import numpy as np
import pytest

import ribbed
from conftest import model_from, write_npz
from ribbed import ScenarioError
from ribbed.agents.guides import identity_features
from ribbed.scenarios.loader import load_scenario
from test_executors import ATOL, RTOL, assert_pair_agrees

TICKS = 20


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("identity")
    rng = np.random.default_rng(3)
    X = rng.standard_normal((48, 4))
    path = write_npz(folder, X, (X[:, 0] > 0).astype(int) + (X[:, 1] > 0), name="c.npz")
    return {"kind": "npz", "path": str(path), "problem": "classification", "loss": "cross_entropy"}


def identity_scenario(task: dict, guide: dict, coupling: dict, storage: str = "auto", dims: int = 16,
                      identity: tuple = ("readout", "weights")) -> dict:
    """in(4) -> h(6, guided) -> out(3), and h -> g(5) -> out: h's fan-out is 3 + 5 = 8, so
    ``dims`` below 8 goes through the random projection."""
    return {
        "name": "identity", "seed": 11, "task": task,
        "populations": [{"name": "in", "size": 4, "role": "input"},
                        {"name": "h", "size": 6, "activation": "tanh",
                         "guide": {**guide, "identity": list(identity), "identity_dims": dims}},
                        {"name": "g", "size": 5, "activation": "relu"},
                        {"name": "out", "size": 3, "role": "output", "activation": "identity"}],
        "projections": [{"pre": "in", "post": "h"},
                        {"pre": "h", "post": "out", "storage": storage},
                        {"pre": "h", "post": "g", "connectivity": {"rule": "fixed_probability", "p": 0.6},
                         "storage": storage},
                        {"pre": "g", "post": "out"}],
        "coupling": coupling,
        "learning": {"rule": "backprop", "lr": 0.05, "optimizer": "adam"},
        "schedule": {"backward_every": 2},
        "run": {"ticks": TICKS, "batch_size": 5, "eval_every": TICKS},
    }


CASES = [
    ({"kind": "mlp", "hidden": 4}, {"kind": "hash", "bits": 1, "rehash_every": 3}, "dense", 16, ("readout", "weights")),
    ({"kind": "linear"}, {"kind": "tree", "leaf_size": 2, "reorder_every": 4}, "sparse", 4, ("weights", "readout")),
    ({"kind": "mlp", "optimizer": "sgd", "hidden": 3}, {"kind": "direct"}, "sparse", 3, ("weights",)),
    ({"kind": "tree", "refit_every": 3, "min_samples_leaf": 2, "max_depth": 3, "buffer": 60},
     {"kind": "hash", "bits": 2, "rehash_every": 5}, "dense", 5, ("readout",)),
]


@pytest.mark.parametrize("guide,coupling,storage,dims,identity", CASES)
def test_reference_and_batched_agree_with_identity_features(task, guide, coupling, storage, dims, identity):
    """Loss, guidance, alpha and clusters every tick; state, messages and predictions at the end
    (float64, relative 1e-7; tree guides bit for bit)."""
    assert_pair_agrees(identity_scenario(task, guide, coupling, storage, dims, identity))


def test_held_out_credit_agrees_and_the_features_are_what_the_semantics_say(task):
    data = identity_scenario(task, *CASES[0][:2], dims=4)
    reference = model_from({**data, "backend": {"kind": "reference"}})
    batched = model_from({**data, "backend": {"kind": "batched", "dtype": "float64", "device": "cpu"}})
    for _ in range(7):
        reference.step()
        batched.step()
    X, T = reference.dataset.X_test, reference.targets_test
    expected, got = reference.executor.held_out_credit(X, T), batched.executor.held_out_credit(X, T)
    np.testing.assert_allclose(got["h"], expected["h"], rtol=RTOL, atol=ATOL)

    guided = batched.network.guided["h"]
    assert guided.identity_projection.shape == (8, 4)  # fan-out 8 > identity_dims 4
    assert guided.n_features == 3 + 2 * 7 + 4 + 4
    out = batched.executor.read("weights", "h->out")
    to_output = np.zeros((6, 3))
    to_output[batched.network.projections[1].pre_idx, batched.network.projections[1].post_idx] = out
    outgoing, got_to_output = guided.identity_weights(lambda p: batched.executor.read("weights", p.name))
    np.testing.assert_array_equal(got_to_output, to_output)
    assert outgoing.shape == (6, 4)
    # One sample of class 2 with surprise 0.25: a = W[2, j], then s a, f'(u) a, f'(u) s a.
    context = np.array([[0.0, 0.0, 1.0, 0.25, 0.0, 0.0, 0.25]])
    derivative = np.linspace(0.1, 0.6, 6)[None, :]
    features = identity_features(outgoing, to_output, derivative, context)
    a = to_output[:, 2]
    np.testing.assert_allclose(features[0], np.column_stack([a, 0.25 * a, derivative[0] * a,
                                                             derivative[0] * 0.25 * a, outgoing]))


def test_identity_is_off_by_default_and_bad_settings_are_located(task):
    data = identity_scenario(task, *CASES[0][:2])
    plain = dict(data, populations=[dict(p) for p in data["populations"]])
    plain["populations"][1]["guide"] = {"kind": "mlp", "hidden": 4}
    guided = model_from(plain).network.guided["h"]
    assert guided.n_identity == 0 and guided.n_features == 3 + 2 * 7

    def error(guide: dict, projections=None) -> str:
        broken = dict(data, populations=[dict(p) for p in data["populations"]])
        broken["populations"][1]["guide"] = guide
        if projections is not None:
            broken["projections"] = projections
        with pytest.raises(ScenarioError) as info:
            model_from(broken)
        return str(info.value)

    message = error({"kind": "mlp", "identity": ["weights", "weights"]})
    assert "populations[1].guide" in message and "twice" in message
    message = error({"kind": "linear", "identity": ["embedding"]})
    assert "populations[1].guide" in message and "identity" in message
    # Readout needs a projection into the output population.
    message = error({"kind": "mlp", "identity": ["readout"]},
                    projections=[{"pre": "in", "post": "h"}, {"pre": "h", "post": "g"}, {"pre": "g", "post": "out"}])
    assert "populations[1].guide.identity" in message and "output population" in message
    assert "populations[1].guide" in message and "identity" in message
    message = error({"kind": "mlp", "identity_dims": 0})
    assert "identity_dims" in message
    # A guided population with no outgoing projection has no outgoing weights to show.
    message = error({"kind": "mlp", "identity": ["weights"]},
                    projections=[{"pre": "in", "post": "h"}, {"pre": "in", "post": "g"}, {"pre": "g", "post": "out"}])
    assert "populations[1].guide.identity" in message and "no outgoing projection" in message


def digits(name: str, seed: int, ticks: int, identity: bool, coupling: dict | None = None) -> dict:
    data = load_scenario(name).model_dump(exclude_none=True)
    data.update(seed=seed, backend={"kind": "batched", "device": "cpu"})
    data["run"].update(ticks=ticks, eval_every=100)
    if identity:
        data["populations"][1]["guide"]["identity"] = ["readout"]
    if coupling is not None:
        data["coupling"] = coupling
    return data


#: Leaves of 16 neurons: 4 leaves, 2 inner nodes and the root, 7 guides for 64 neurons.
TREE_OF_7 = {"kind": "tree", "leaf_size": 16, "reorder_every": 50}


def test_shared_guides_with_identity_reach_most_of_the_direct_guides_r2():
    """The issue's must-show at a reduced size (400 ticks, 2 seeds): 8 hash guides, or 7 tree
    guides, for 64 neurons, with identity features, reach at least 0.8 x the held-out credit R^2 of
    64 direct guides (evaluations from tick 200 on); without identity the hash guides stay far
    below (the problem this solves)."""
    runs = {"direct": ("digits-guide-direct", False, None), "hash": ("digits-guide-hash", False, None),
            "hash+identity": ("digits-guide-hash", True, None), "tree+identity": ("digits-guide-tree", True, TREE_OF_7)}
    r2 = {}
    for key, (name, identity, coupling) in runs.items():
        values = []
        for seed in (0, 1):
            model = ribbed.NetworkModel(digits(name, seed, 400, identity, coupling))
            assert model.network.guided["hidden"].coupling.n_guides <= (64 if key == "direct" else 8)
            metrics = model.run()
            values += metrics[metrics["tick"] >= 200]["hidden_guide_r2"].tolist()
        r2[key] = float(np.mean(values))
    assert r2["direct"] > 0.5, r2
    assert r2["hash+identity"] >= 0.8 * r2["direct"], r2
    assert r2["tree+identity"] >= 0.8 * r2["direct"], r2
    assert r2["hash"] < 0.5 * r2["direct"], r2


@pytest.mark.filterwarnings("ignore::ribbed.RibbedWarning")
def test_ray_agrees_with_batched_with_identity_features(task):
    """The Ray executor runs guides on the driver: it reads the shards' outgoing weights before
    each tick's learn and gets what the batched executor gets (2 shards, float64)."""
    ray = pytest.importorskip("ray")
    ray.shutdown()
    ray.init(num_cpus=2, object_store_memory=100 * 2**20, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    try:
        data = identity_scenario(task, *CASES[1][:4], identity=("readout", "weights"))
        batched = model_from({**data, "backend": {"kind": "batched", "dtype": "float64", "device": "cpu"}})
        sharded = model_from({**data, "backend": {"kind": "ray", "dtype": "float64", "shards": 2, "partitions": 4,
                                                  "split_above": 2}})
        try:
            for _ in range(12):
                batched.step()
                sharded.step()
                assert sharded.last_result.loss == pytest.approx(batched.last_result.loss, rel=RTOL, abs=ATOL)
                for key in ("guidance", "alpha"):
                    np.testing.assert_allclose(sharded.executor.read(key, "h"), batched.executor.read(key, "h"),
                                               rtol=RTOL, atol=ATOL, err_msg=key)
            X, T = batched.dataset.X_test, batched.targets_test
            np.testing.assert_allclose(sharded.executor.held_out_credit(X, T)["h"],
                                       batched.executor.held_out_credit(X, T)["h"], rtol=RTOL, atol=ATOL)
        finally:
            sharded.executor.close()
    finally:
        ray.shutdown()
