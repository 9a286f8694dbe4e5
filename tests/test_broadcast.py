"""Broadcast credit (``broadcast: dfa``, docs/semantics.md "Broadcast credit"): the unguided
control that receives what guides see (the task's label and surprise) on ticks without
propagated error.  It follows its formula, it moves weights on exactly the ticks where plain
unguided neurons get nothing, it is counted honestly, and the three executors agree on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import ribbed
from conftest import layered_scenario, model_from
from ribbed import RibbedWarning
from ribbed.agents.guides import task_context
from ribbed.environment.losses import sample_losses
from ribbed.log import verify
from ribbed.scheduler.messages import Kind
from ribbed.seeding import component_rng
from test_executors import assert_pair_agrees, assert_same_state, datasets, scenarios  # noqa: F401 (datasets: a fixture)


def control(backward_every: int = 4, broadcast: bool = True, optimizer: str = "sgd") -> dict:
    """xor, 2-6-2, the error every ``backward_every`` ticks; the hidden population with broadcast credit."""
    scenario = layered_scenario([2, 6, 2], ["tanh", "identity"], lr=0.1, optimizer=optimizer, ticks=8, batch_size=5)
    if broadcast:
        scenario["populations"][1]["broadcast"] = "dfa"
    scenario["schedule"] = {"backward_every": backward_every}
    return scenario


def hidden_state(model) -> tuple[np.ndarray, np.ndarray]:
    return model.projections["p0->p1"].get_weights().copy(), model.populations["p1"].get_biases().copy()


# --------------------------------------------------------------------------- the rule


@pytest.mark.parametrize("backend", ["reference", "batched"])
def test_broadcast_moves_hidden_weights_on_ticks_without_error_where_plain_ones_stay(backend):
    runs = {}
    for broadcast in (True, False):
        model = model_from({**control(broadcast=broadcast), "backend": {"kind": backend, "dtype": "float64"}})
        model.step()  # tick 0: the propagated error
        before = hidden_state(model)
        model.step()  # tick 1: none
        runs[broadcast] = [np.abs(a - b).max() for a, b in zip(hidden_state(model), before)]
    assert runs[False] == [0.0, 0.0]  # plain SGD with no credit: nothing moves
    assert min(runs[True]) > 1e-4  # weights and biases learn from the broadcast


def test_broadcast_credit_is_the_dfa_formula_of_minus_surprise_times_label():
    """On a tick without error the credit is f'(u) (-s t) B^T, B ~ U(+-1/sqrt(n_out)) from ("broadcast", population)."""
    model = model_from({**control(), "backend": {"kind": "reference"}})
    model.step()
    model.step()
    targets = model.targets_train[model.stream.indices(1)]
    u = model.executor.read("u", "p1")
    outputs = model.executor.read("y", "p2")
    context = task_context(targets, sample_losses("cross_entropy", outputs, targets))
    B = component_rng(0, "broadcast", "p1").uniform(-1.0, 1.0, (6, 2)) / np.sqrt(2)
    s, t = context[:, 2:3], context[:, :2]
    assert t.sum() == 5 and np.all(s > 0)  # one-hot labels of the 5 samples, some surprise
    expected = (1 - np.tanh(u) ** 2) * ((-s * t) @ B.T)
    np.testing.assert_allclose(model.executor.read("credit", "p1"), expected, rtol=1e-12)
    np.testing.assert_array_equal(model.network.broadcast_matrices["p1"], B)


def test_broadcast_is_counted_as_one_target_message_per_neuron_on_ticks_without_error():
    with_broadcast = model_from({**control(backward_every=3), "backend": {"kind": "reference"}})
    plain = model_from({**control(backward_every=3, broadcast=False), "backend": {"kind": "reference"}})
    with_broadcast.run(6)
    plain.run(6)
    extra = with_broadcast.executor.message_counts - plain.executor.message_counts
    assert extra[Kind.TARGET] == 6 * 4  # 6 neurons, ticks 1, 2, 4, 5
    assert np.count_nonzero(extra) == 1  # nothing else: the same error messages


def test_broadcast_with_the_error_every_tick_is_warned_about_and_changes_nothing():
    with pytest.warns(RibbedWarning, match="broadcast credit.*backward_every is 1"):
        with_broadcast = model_from({**control(backward_every=1), "backend": {"kind": "reference"}})
    plain = model_from({**control(backward_every=1, broadcast=False), "backend": {"kind": "reference"}})
    with_broadcast.run(5)
    plain.run(5)
    for a, b in zip(hidden_state(with_broadcast), hidden_state(plain)):
        np.testing.assert_array_equal(a, b)


def test_a_logged_run_with_broadcast_credit_verifies(tmp_path: Path):
    scenario = {**control(), "log": {"level": "messages"}, "run": {"ticks": 12, "batch_size": 5, "eval_every": 6}}
    ribbed.run(scenario, out=tmp_path / "run")
    report = verify(tmp_path / "run" / "run.log")
    assert report.ok, report.difference
    assert report.ticks_checked == 12


# --------------------------------------------------------------------------- the executors agree


@st.composite
def broadcast_scenarios(draw, datasets: dict) -> dict:
    """A generated scenario (test_executors.scenarios) whose unguided gradient-rule hidden
    populations get broadcast credit (the first always, the others by a coin), the error every
    2nd or 3rd tick."""
    scenario = draw(scenarios(datasets))
    candidates = [p for p in scenario["populations"][1:-1] if "guide" not in p and p["learning"]["rule"] != "hebbian"]
    for k, population in enumerate(candidates):
        if k == 0 or draw(st.booleans()):
            population["broadcast"] = "dfa"
    scenario["schedule"] = {"backward_every": draw(st.sampled_from([2, 3]))}
    return scenario


@pytest.mark.filterwarnings("ignore::ribbed.RibbedWarning")
@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_batched_agrees_with_reference_on_generated_scenarios_with_broadcast(datasets, data):
    scenario = data.draw(broadcast_scenarios(datasets))
    assume(any("broadcast" in p for p in scenario["populations"]))
    assert_pair_agrees(scenario)


@pytest.mark.filterwarnings("ignore::ribbed.RibbedWarning")
def test_ray_agrees_with_batched_with_broadcast_on_one_two_and_three_shards(datasets):
    """As test_ray's equivalence test: float64, split populations, the batched tolerance; and
    2 and 3 shards bit for bit."""
    import ray

    scenario = control(backward_every=3, optimizer="adam")
    scenario["populations"][1]["size"] = 7
    scenario["populations"].insert(2, {"name": "q", "size": 5, "activation": "relu", "broadcast": "dfa"})
    scenario["projections"] = [{"pre": "p0", "post": "p1"}, {"pre": "p1", "post": "q"}, {"pre": "q", "post": "p2"},
                               {"pre": "p1", "post": "p2", "name": "skip"}]
    scenario["run"] = {"ticks": 12, "batch_size": 5, "eval_every": 12}
    batched = model_from({**scenario, "backend": {"kind": "batched", "dtype": "float64", "device": "cpu"}})
    batched.run(12)
    ray.shutdown()
    ray.init(num_cpus=3, object_store_memory=100 * 2**20, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    try:
        results = {}
        for shards in (1, 2, 3):
            sharded = model_from({**scenario, "backend": {"kind": "ray", "dtype": "float64", "shards": shards,
                                                          "partitions": 4, "split_above": 2}})
            try:
                for _ in range(12):
                    sharded.step()
                assert_same_state(batched, sharded)
                np.testing.assert_array_equal(sharded.executor.message_counts, batched.executor.message_counts)
                results[shards] = [sharded.projections[name].get_weights() for name in sharded.projections]
            finally:
                sharded.executor.close()
        for a, b in zip(results[2], results[3]):
            np.testing.assert_array_equal(a, b)
    finally:
        ray.shutdown()
