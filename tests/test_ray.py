"""The Ray executor: the same results as the batched executor, whatever the number of shards;
failures that name the shard and the tick; runs that are logged, resumed and cleaned up.

Ray runs quietly in this process with a small object store, started once for the module.
The multi-node test is in test_ray_cluster.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

ray = pytest.importorskip("ray")

import ribbed  # noqa: E402
from conftest import model_from  # noqa: E402
from ribbed.errors import ScenarioError  # noqa: E402
from ribbed.log import open_log, verify  # noqa: E402
from ribbed.runner import resume  # noqa: E402
from ribbed.scenarios.loader import load_scenario  # noqa: E402
from ribbed.scheduler.ray.partitioning import partition_network  # noqa: E402
from ribbed.scheduler.ray.executor import ShardError  # noqa: E402
from test_executors import (ATOL, RTOL, assert_same_guidance, assert_same_state, datasets,  # noqa: E402,F401
                            recurrent_scenario, scenarios, timed_scenarios)
from test_stdp_wiring import pairs_scenario, rewarded_scenario  # noqa: E402

TICKS = 12


@pytest.fixture(scope="module", autouse=True)
def ray_session():
    ray.shutdown()
    ray.init(num_cpus=4, object_store_memory=100 * 2**20, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    yield
    ray.shutdown()


def on_ray(scenario: dict, shards: int, **backend) -> dict:
    return {**scenario, "backend": {"kind": "ray", "dtype": "float64", "shards": shards, **backend}}


def on_batched(scenario: dict) -> dict:
    return {**scenario, "backend": {"kind": "batched", "dtype": "float64", "device": "cpu"}}


def builtin(name: str, ticks: int = 30, **run) -> dict:
    scenario = load_scenario(name).model_dump(mode="json", exclude_none=True)
    scenario["run"].update({"ticks": ticks, "eval_every": 10, **run})
    return scenario


def weights(model) -> list[np.ndarray]:
    return [model.executor.read("weights", p.name) for p in model.network.projections]


# ---------------------------------------------------------------------------- equivalence


@pytest.mark.filterwarnings("ignore::ribbed.RibbedWarning")
@settings(max_examples=8, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_ray_agrees_with_batched_on_generated_scenarios(datasets, data):
    """1, 2 or 3 shards, populations split over partitions (split_above is drawn small), float64,
    to the tolerance the batched executor keeps with the reference one."""
    scenario = data.draw(scenarios(datasets))
    shards = data.draw(st.sampled_from([1, 2, 3]), label="shards")
    split_above = data.draw(st.integers(1, 4), label="split_above")
    try:
        batched = model_from(on_batched(scenario))
    except ScenarioError as exc:  # a random rule that drew no synapse at all
        assume("made no synapses" not in str(exc))
        raise
    sharded = model_from(on_ray(scenario, shards, partitions=4, split_above=split_above))
    try:
        for _ in range(TICKS):
            batched.step()
            sharded.step()
            assert sharded.last_result.loss == pytest.approx(batched.last_result.loss, rel=RTOL, abs=ATOL)
            np.testing.assert_allclose(sharded.last_result.outputs, batched.last_result.outputs, rtol=RTOL, atol=ATOL)
        assert_same_guidance(batched, sharded)
        assert_same_state(batched, sharded)
        np.testing.assert_array_equal(sharded.executor.message_counts, batched.executor.message_counts)
        X = batched.dataset.X_test
        np.testing.assert_allclose(sharded.executor.predict(X).outputs, batched.executor.predict(X).outputs,
                                   rtol=RTOL, atol=ATOL)
    finally:
        sharded.executor.close()


@pytest.mark.filterwarnings("ignore::ribbed.RibbedWarning")
@pytest.mark.parametrize("name", ["digits-guide-tree", "digits-dfa", "digits-hebbian", "sine"])
def test_two_and_three_shards_give_identical_results(name):
    """Bit for bit: sums are taken partition by partition, in partition order, on any shards
    (guides, the DFA broadcast, Sanger's lateral messages, a regression the shards answer)."""
    scenario = builtin(name, ticks=15)
    runs = []
    for shards in (2, 3):
        model = model_from(on_ray(scenario, shards, split_above=16))
        try:
            for _ in range(15):
                model.step()
            runs.append(([model.last_result.loss], weights(model),
                         [model.executor.read("bias", name) for name in model.network.populations]))
        finally:
            model.executor.close()
    for a, b in zip(*runs):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


# ---------------------------------------------------------------------------- time within a tick

#: Rows of the state table a timed tick leaves (its last step's), compared between executors.
TICK_ROWS = ("u", "y", "delta", "credit", "membrane", "refractory")


def assert_same_timed_run(batched, sharded, ticks: int) -> None:
    """Tick by tick the same loss and outputs; then the same state, last-tick rows, message counts
    (spike messages included) and evaluation."""
    for _ in range(ticks):
        batched.step()
        sharded.step()
        assert sharded.last_result.loss == pytest.approx(batched.last_result.loss, rel=RTOL, abs=ATOL)
        np.testing.assert_allclose(sharded.last_result.outputs, batched.last_result.outputs, rtol=RTOL, atol=ATOL)
    assert_same_state(batched, sharded)
    for name in TICK_ROWS:
        for where in batched.network.populations:
            a, b = batched.executor.read(name, where), sharded.executor.read(name, where)
            assert (a is None) == (b is None), (name, where)
            if a is not None:
                np.testing.assert_allclose(b, a, rtol=RTOL, atol=ATOL, err_msg=f"{name} of {where}")
    np.testing.assert_array_equal(sharded.executor.message_counts, batched.executor.message_counts)
    X = batched.dataset.X_test
    expected, got = batched.executor.predict(X), sharded.executor.predict(X)
    for field in ("outputs", "activation_mean", "activation_std", "firing_rate"):
        np.testing.assert_allclose(getattr(got, field), getattr(expected, field), rtol=RTOL, atol=ATOL, err_msg=field)


@pytest.mark.filterwarnings("ignore::ribbed.RibbedWarning")
@settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_ray_agrees_with_batched_with_time_in_the_tick(datasets, data):
    """Spiking populations, T steps, every policy, encoding and readout on a recurrent network
    (cycles, a sparse self-projection), over 1-3 shards with populations split across them: the
    same losses, state, rows, message counts (spike messages included) and predictions."""
    scenario = data.draw(timed_scenarios(datasets))
    scenario["run"] = {**scenario["run"], "ticks": 8, "eval_every": 8}
    shards = data.draw(st.sampled_from([1, 2, 3]), label="shards")
    split_above = data.draw(st.integers(1, 4), label="split_above")
    batched = model_from(on_batched(scenario))
    sharded = model_from(on_ray(scenario, shards, partitions=4, split_above=split_above))
    try:
        assert_same_timed_run(batched, sharded, 8)
    finally:
        sharded.executor.close()


def spiking_regression() -> dict:
    """A timed regression (MSE: the shards answer their output neurons themselves): rate-encoded
    inputs, a random-policy layer with a delayed self-projection, a lif output read on its membrane."""
    return {
        "name": "timed-sine", "seed": 4, "task": {"kind": "sine", "n_samples": 80, "encoding": {"kind": "rate"}},
        "populations": [{"name": "x", "size": 1, "role": "input"},
                        {"name": "h", "size": 12, "firing": {"policy": "random", "temperature": 0.5, "refractory": 1}},
                        {"name": "y", "size": 1, "role": "output", "activation": "identity",
                         "firing": {"policy": "lif", "beta": 0.7}, "readout": "membrane"}],
        "projections": [{"pre": "x", "post": "h", "init": {"kind": "uniform", "low": -2, "high": 2}},
                        {"pre": "h", "post": "h", "connectivity": {"rule": "fixed_probability", "p": 0.3}},
                        {"pre": "h", "post": "y"}],
        "learning": {"rule": "backprop", "optimizer": "adam", "lr": 0.01},
        "run": {"ticks": 10, "batch_size": 8, "eval_every": 5, "steps_per_sample": 5},
    }


@pytest.mark.filterwarnings("ignore::ribbed.RibbedWarning")
def test_digits_spiking_on_ray_agrees_with_batched_and_counts_the_same_spikes():
    """The built-in, float64, its hidden layer split over 3 shards: the same ticks, and the same
    spike messages (one per outgoing synapse and actual spike)."""
    scenario = builtin("digits-spiking", ticks=3, batch_size=8)
    batched = model_from(on_batched(scenario))
    sharded = model_from(on_ray(scenario, 3, partitions=4, split_above=16))
    try:
        assert len(sharded.executor.partitioning.blocks["hidden"]) == 4
        assert_same_timed_run(batched, sharded, 3)
        from ribbed.scheduler.messages import Kind

        assert sharded.executor.message_counts[Kind.SPIKE] > 0
    finally:
        sharded.executor.close()


@pytest.mark.filterwarnings("ignore::ribbed.RibbedWarning")
def test_a_timed_regression_on_ray_agrees_with_batched():
    scenario = spiking_regression()
    batched = model_from(on_batched(scenario))
    sharded = model_from(on_ray(scenario, 2, partitions=4, split_above=4))
    try:
        assert_same_timed_run(batched, sharded, 10)
    finally:
        sharded.executor.close()


@pytest.mark.filterwarnings("ignore::ribbed.RibbedWarning")
def test_dfa_through_time_on_ray_agrees_with_batched(datasets):
    """Direct feedback alignment over the steps, every hidden population a DFA population (lif and
    random neurons, a cycle), split over 3 shards: each DFA block takes the output blocks' delta of
    every step; the same losses, rows, message counts and predictions as batched."""
    scenario = recurrent_scenario(datasets[4, "classification"], "direct_feedback_alignment")
    scenario["run"] = {**scenario["run"], "ticks": 5, "eval_every": 5, "steps_per_sample": 4}
    scenario["learning"] = {**scenario["learning"], "kappa": 0.0}
    scenario["populations"][1]["firing"] = {"policy": "lif", "beta": 0.8, "threshold": 0.3}
    scenario["populations"][2]["firing"] = {"policy": "random", "temperature": 0.8}
    batched = model_from(on_batched(scenario))
    sharded = model_from(on_ray(scenario, 3, partitions=4, split_above=2))
    try:
        assert any(len(blocks) > 1 for blocks in sharded.executor.partitioning.blocks.values())
        assert_same_timed_run(batched, sharded, 5)
        assert np.abs(batched.executor.read("delta", "a")).sum() > 0  # the broadcast reached it
    finally:
        sharded.executor.close()


@pytest.mark.filterwarnings("ignore::ribbed.RibbedWarning")
def test_timed_results_do_not_depend_on_the_number_of_shards():
    """Bit for bit on 2 and 3 shards: every sum is still taken partition by partition, step by step."""
    runs = []
    for shards in (2, 3):
        model = model_from(on_ray(spiking_regression(), shards, partitions=4, split_above=4))
        try:
            model.run(6)
            runs.append(([model.last_result.loss], weights(model), [model.executor.read("membrane", "y")]))
        finally:
            model.executor.close()
    for a, b in zip(*runs):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


# ---------------------------------------------------------------------------- STDP, R-STDP, carried state


def stdp_weights(model) -> dict[str, np.ndarray]:
    return {p.name: model.executor.read("weights", p.name) for p in model.network.projections if p.stdp}


@pytest.mark.filterwarnings("ignore::ribbed.RibbedWarning")
@settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_ray_agrees_with_batched_with_stdp(datasets, data):
    """STDP and R-STDP projections (random parameters, pairings, bounds; delayed ones among them),
    spiking encodings (poisson included), over 1-3 shards with populations split across them: the
    STDP weights identical (the same arithmetic on each block's rows, with the pre spikes the shard
    receives for the forward), the same losses, state, rows, message counts (reward messages
    included) and predictions (docs/semantics.md, "STDP in a tick")."""
    scenario = data.draw(timed_scenarios(datasets, stdp=True))
    scenario["run"] = {**scenario["run"], "ticks": 8, "eval_every": 8}
    shards = data.draw(st.sampled_from([1, 2, 3]), label="shards")
    split_above = data.draw(st.integers(1, 3), label="split_above")
    batched = model_from(on_batched(scenario))
    sharded = model_from(on_ray(scenario, shards, partitions=4, split_above=split_above))
    try:
        before = stdp_weights(batched)
        assert_same_timed_run(batched, sharded, 8)
        expected, got = stdp_weights(batched), stdp_weights(sharded)
        for name, values in expected.items():
            np.testing.assert_array_equal(got[name], values, err_msg=f"STDP weights of {name}")
        from ribbed.scheduler.messages import Kind

        rewarded = {p.post.name for p in batched.network.projections if p.stdp and p.learning.rule == "r_stdp"}
        per_tick = sum(batched.network.populations[name].size for name in rewarded)
        assert sharded.executor.message_counts[Kind.REWARD] == 8 * per_tick
        event(f"{len(expected)} STDP projection(s), {len(rewarded)} rewarded population(s), "
              f"{sum(not np.array_equal(before[n], expected[n]) for n in expected)} changed")
    finally:
        sharded.executor.close()


@contextlib.contextmanager
def ray_model(scenario: dict):
    """A model on Ray whose shards are stopped on leaving (its state stays readable)."""
    model = model_from(scenario)
    try:
        yield model
    finally:
        model.executor.close()


def split_pairs(ticks: int = 4) -> dict:
    """tests/test_stdp_wiring.py's small stdp-pairs with a layer of three conductance neurons
    between the inputs and the output, which a Ray run splits over its shards: poisson inputs,
    STDP into the layer (which fires), a frozen projection strong enough for the output to fire,
    carried state."""
    data = pairs_scenario(60, 250.0, 100, ticks, "batched")
    inputs, out = data["populations"]
    data["populations"] = [inputs, {**out, "name": "h", "size": 3, "role": "hidden"}, out]
    data["projections"] = [{"pre": "in", "post": "h", "init": {"kind": "uniform", "low": 0.0, "high": 0.01}},
                           {"pre": "h", "post": "out", "init": {"kind": "uniform", "low": 0.3, "high": 0.6},
                            "frozen": True}]
    return data


@pytest.mark.filterwarnings("ignore::ribbed.RibbedWarning")
def test_shuffled_rewards_on_ray_equal_batched():
    """R-STDP with the shuffled reward (tests/test_stdp_wiring.py's small rewarded xor) on 2 shards:
    the driver draws the same permutation as the batched executor, so the weights are identical."""
    scenario = rewarded_scenario("batched", "shuffled")
    batched = model_from(on_batched(scenario))
    sharded = model_from(on_ray(scenario, 2))
    try:
        before = stdp_weights(batched)
        for _ in range(4):
            batched.step()
            sharded.step()
        for name, values in stdp_weights(batched).items():
            assert np.abs(values - before[name]).max() > 1e-3
            np.testing.assert_array_equal(stdp_weights(sharded)[name], values)
    finally:
        sharded.executor.close()


@pytest.mark.filterwarnings("ignore::ribbed.RibbedWarning")
def test_stdp_pairs_on_ray_equals_batched():
    """The built-in stdp-pairs (1000 poisson inputs, a conductance neuron, STDP, carried state) for
    a few 1 s ticks on 2 shards: the same spikes and the same weights, bit for bit."""
    scenario = builtin("stdp-pairs", ticks=3)
    batched = model_from(on_batched(scenario))
    sharded = model_from(on_ray(scenario, 2))
    try:
        for _ in range(3):
            batched.step()
            sharded.step()
            np.testing.assert_array_equal(sharded.last_result.outputs, batched.last_result.outputs)
        assert batched.last_result.outputs.sum() > 0
        for name, values in stdp_weights(batched).items():
            np.testing.assert_array_equal(stdp_weights(sharded)[name], values)
        np.testing.assert_array_equal(sharded.executor.message_counts, batched.executor.message_counts)
    finally:
        sharded.executor.close()


@pytest.mark.filterwarnings("ignore::ribbed.RibbedWarning")
def test_a_snapshot_on_ray_holds_the_carried_state():
    """The carried state (firing state, traces) is kept by the shards, block by block (three shards,
    a block each; tests/test_ray.py's resumed carried-state run has two), and a Ray
    snapshot holds it as the batched executor's does: the same values (to rounding: a block's
    current is its rows of the product), and a run continued from it computes, bit for bit, what
    the uninterrupted run does (the weights alone do not)."""
    data = split_pairs()
    scenario = on_ray(data, 3, partitions=4, split_above=1)
    batched, twin = model_from(data), model_from(data)
    for model in (batched, twin):
        model.run(4 if model is batched else 2)
    expected, _ = twin.executor.state()
    with ray_model(scenario) as whole:  # one Ray model at a time: the module's Ray has 4 CPUs
        assert len(whole.executor.partitioning.blocks["h"]) == 3
        whole.run(4)
        final = stdp_weights(whole)
    for name, values in stdp_weights(batched).items():
        np.testing.assert_array_equal(final[name], values)
    assert not np.array_equal(final["in->h"], model_from(data).executor.read("weights", "in->h"))  # it learned
    with ray_model(scenario) as first:
        first.run(2)
        values, kinds = first.executor.state()
        weights = first.executor.read("weights", "in->h")
    carried = sorted(key for key in expected if key.startswith("/carried_state/"))
    assert carried and carried == sorted(key for key in values if key.startswith("/carried_state/"))
    for key in carried:  # the block's currents are its rows of the product: equal up to rounding
        assert (values[key] is None) == (expected[key] is None), key
        if expected[key] is not None:
            np.testing.assert_allclose(values[key], expected[key], rtol=RTOL, atol=ATOL, err_msg=key)
    for restore in (True, False):
        with ray_model(scenario) as resumed:
            resumed.executor.write("weights", "in->h", weights)
            if restore:
                resumed.executor.load_state(values, kinds)
            for tick in (2, 3):
                resumed.executor.tick(tick, resumed.stream.indices(tick))
            assert np.array_equal(resumed.executor.read("weights", "in->h"), final["in->h"]) == restore


def test_a_carried_state_run_on_ray_resumes_identically(tmp_path: Path):
    """A run with carried state and STDP on shards, stopped by a killed shard, resumes from its
    log's last snapshot to the same metrics and weights as the uninterrupted run."""
    scenario = on_ray(split_pairs(ticks=12), 2, partitions=4, split_above=1)
    scenario["run"].update(eval_every=4)
    scenario["log"] = {"level": "summary"}
    whole = quiet_run(scenario, tmp_path / "whole")
    assert_a_killed_shard_resumes_identically(scenario, whole, tmp_path, 9)


def test_partitions_do_not_depend_on_shards_and_keep_small_populations_whole():
    network = model_from(builtin("digits")).network
    small = partition_network(network, 12, 4096, 2)
    assert all(len(blocks) == 1 for blocks in small.blocks.values())  # hidden (64) and output (10) stay whole
    split = {s: partition_network(network, 12, 16, s) for s in (1, 2, 3, 5)}
    assert len({tuple((b.population, b.partition, b.start, b.stop) for blocks in p.blocks.values() for b in blocks)
                for p in split.values()}) == 1
    for shards, partitioning in split.items():
        report = partitioning.report(network)
        assert sum(report["neurons_per_shard"]) == network.n_neurons - network.input.size
        assert sum(report["synapses_per_shard"]) == network.n_synapses
        assert report["cut_synapses"] == 0 if shards == 1 else report["cut_synapses"] > 0


# ---------------------------------------------------------------------------- runs, logs, failures


def quiet_run(scenario, out: Path, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ribbed.RibbedWarning)
        return ribbed.run(scenario, out=out, **options)


@pytest.mark.parametrize("name, level", [("xor", "activity"), ("sine", "messages")])
def test_a_sharded_run_is_logged_and_verifies(tmp_path: Path, name: str, level: str):
    """Every built-in loss: cross-entropy is read out on the driver, MSE on the shards."""
    scenario = on_ray(builtin(name, ticks=30), 2, split_above=2, partitions=4)
    scenario["log"] = {"level": level}
    result = quiet_run(scenario, tmp_path / "run")
    summary = pd.read_json(tmp_path / "run" / "summary.json", typ="series")
    assert summary["shards"] == 2 and summary["partitioning"]["partitions"] == 4
    with open_log(tmp_path / "run" / "run.log") as log:
        assert log.header["executor"] == "ray" and list(log.ticks) == list(range(30))
    report = verify(tmp_path / "run" / "run.log")
    assert report.ok, report.difference
    assert report.ticks_checked == 30
    # The closed executor still answers reads from its final state.
    assert np.isfinite(result.model.executor.read("weights", result.model.network.projections[0].name)).all()


def assert_a_killed_shard_resumes_identically(scenario: dict, whole, tmp_path: Path, tick: int,
                                              stopped=lambda error: None) -> None:
    """Run ``scenario`` again into tmp_path/killed, kill shard 1 at ``tick`` (the run stops with a
    ShardError, which ``stopped`` checks), resume it from its log, and check it ends as the
    uninterrupted run ``whole`` (metrics and weights)."""
    def kill(model):
        if model.tick == tick:
            ray.kill(model.executor._actors[1])

    with pytest.raises(ShardError) as caught:
        quiet_run(scenario, tmp_path / "killed", on_tick=kill)
    stopped(caught.value)
    resumed = resume(tmp_path / "killed")
    assert resumed.model.tick == whole.model.tick
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "killed" / "metrics.csv"),
                                  pd.read_csv(tmp_path / "whole" / "metrics.csv"))
    for a, b in zip(weights(resumed.model), weights(whole.model)):
        np.testing.assert_array_equal(a, b)


def test_a_timed_run_on_ray_is_logged_verifies_and_resumes_identically(tmp_path: Path):
    """A spiking scenario on shards, logged at the messages level: the log verifies bit for bit,
    and a run stopped by a killed shard resumes to the same metrics and weights."""
    scenario = on_ray(spiking_regression(), 2, partitions=4, split_above=4)
    scenario["run"].update(ticks=16, eval_every=4)
    scenario["log"] = {"level": "messages"}
    whole = quiet_run(scenario, tmp_path / "whole")
    report = verify(tmp_path / "whole" / "run.log")
    assert report.ok, report.difference
    assert report.ticks_checked == 16
    # The per-step activity and deltas the shards hand the log are those the batched executor logs.
    quiet_run({**on_batched(scenario), "log": {"level": "messages"}}, tmp_path / "batched")
    with open_log(tmp_path / "whole" / "run.log") as on_shards, open_log(tmp_path / "batched" / "run.log") as alone:
        for tick in (0, 7, 15):
            a, b = on_shards.step_activity(tick), alone.step_activity(tick)
            assert a is not None and a.keys() == b.keys()
            for name in a:
                np.testing.assert_allclose(a[name], b[name], rtol=RTOL, atol=ATOL, err_msg=f"{name} at tick {tick}")
            np.testing.assert_allclose(on_shards.step_delta(tick), alone.step_delta(tick), rtol=RTOL, atol=ATOL)
    assert_a_killed_shard_resumes_identically(scenario, whole, tmp_path, 9)


def test_a_killed_shard_stops_the_run_with_its_name_and_tick_and_the_run_resumes_identically(tmp_path: Path):
    scenario = on_ray(builtin("digits", ticks=40, eval_every=10), 2, split_above=16)
    scenario["log"] = {"level": "summary"}
    whole = quiet_run(scenario, tmp_path / "whole")

    def stopped(error: ShardError) -> None:
        assert error.shard == 1 and error.tick == 25
        assert "shard 1 of 2" in str(error) and "tick 25" in str(error) and "--resume" in str(error)
        with open_log(tmp_path / "killed" / "run.log") as log:
            assert list(log.ticks) == list(range(25))
            assert log.end["status"] == "failed"

    assert_a_killed_shard_resumes_identically(scenario, whole, tmp_path, 25, stopped)


def test_bad_ray_settings_name_the_field_and_the_fix():
    scenario = builtin("xor")
    with pytest.raises(ScenarioError, match=r"backend.*partitions"):
        load_scenario({**scenario, "backend": {"kind": "ray", "shards": 5, "partitions": 4}})
    with pytest.raises(ScenarioError, match=r"applies to the ray executor only"):
        load_scenario({**scenario, "backend": {"kind": "batched", "shards": 2}})
    with pytest.raises(ScenarioError, match=r"one dict of resources per shard"):
        load_scenario({**scenario, "backend": {"kind": "ray", "shards": 2, "shard_resources": [{"a": 1}]}})
    with pytest.raises(ScenarioError, match=r"shards compute on the CPU"):
        model_from({**scenario, "backend": {"kind": "ray", "device": "cuda"}})


def test_the_cli_runs_on_ray_and_leaves_no_ray_process_behind(tmp_path: Path):
    """A run that starts Ray itself stops it: no Ray process of its session outlives it."""
    ray_dir = tempfile.mkdtemp(prefix="rbt", dir="/tmp")  # short: Ray's socket paths are limited in length
    try:
        done = subprocess.run([sys.executable, "-m", "ribbed.cli", "run", "xor", "--backend", "ray", "--shards", "2",
                               "--ticks", "20", "--out", str(tmp_path / "run")], capture_output=True, text=True,
                              timeout=300, env={**os.environ, "RAY_TMPDIR": ray_dir})
        assert done.returncode == 0, done.stderr
        assert "2 shards on 1 Ray node(s)" in done.stdout
        left = subprocess.run(["pgrep", "-f", ray_dir], capture_output=True, text=True)
        assert left.stdout.strip() == "", f"Ray processes outlived the run: {left.stdout}"
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)


def test_a_killed_shard_gives_one_clean_error_and_leaves_no_ray_process(tmp_path: Path):
    """A shard process killed from outside: the run reports it once, by shard and tick (Ray's
    own raylet message with the worker's address is not printed), and stops every Ray process
    it started."""
    import json
    import time

    scenario = builtin("xor", ticks=100000, eval_every=20)
    scenario["backend"] = {"kind": "ray", "shards": 2}
    path = tmp_path / "xor.yaml"
    path.write_text(json.dumps(scenario), encoding="utf-8")
    ray_dir = tempfile.mkdtemp(prefix="rbk", dir="/tmp")  # short: Ray's socket paths are limited in length
    try:
        process = subprocess.Popen([sys.executable, "-m", "ribbed.cli", "run", str(path), "--out",
                                    str(tmp_path / "run")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env={**os.environ, "RAY_TMPDIR": ray_dir})
        metrics, deadline = tmp_path / "run" / "metrics.csv", time.monotonic() + 180
        while not (metrics.exists() and metrics.read_text().count("\n") > 2) and time.monotonic() < deadline:
            time.sleep(0.1)
        raylet = subprocess.run(["pgrep", "-f", f"raylet.*{ray_dir}"], capture_output=True, text=True).stdout.split()
        shards = subprocess.run(["pgrep", "-P", raylet[0], "-f", "ShardActor"], capture_output=True,
                                text=True).stdout.split()
        assert len(shards) == 2
        os.kill(int(shards[0]), 9)
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 2
        assert "(raylet)" not in stdout + stderr and "Worker IP" not in stdout + stderr
        assert stderr.count("error:") == 1 and "of 2 stopped" in stderr and "--resume" in stderr, stderr
        assert "Traceback" not in stderr
        left = subprocess.run(["pgrep", "-f", ray_dir], capture_output=True, text=True)
        assert left.stdout.strip() == "", f"Ray processes outlived the run: {left.stdout}"
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)
