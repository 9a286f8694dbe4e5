"""A timed run's log holds what every neuron emitted at every step (spikes as bits) and, at level
messages, every step's deltas; both executors write the same, and a replay verifies it bit for bit
(docs/semantics.md, "The state logged")."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

import ribbed
from ribbed.log import open_log, verify
from ribbed.log.format import pack_spikes, unpack_spikes

STEPS, BATCH = 5, 6

SCENARIO = {
    "name": "timed-log",
    "seed": 4,
    "task": {"kind": "xor", "n_samples": 40, "encoding": {"kind": "rate", "gain": 2.0}},
    "populations": [
        {"name": "in", "size": 2, "role": "input"},
        {"name": "hidden", "size": 11, "firing": {"policy": "lif", "beta": 0.8, "threshold": 0.3}},
        {"name": "relay", "size": 3},  # a rate population: its per-step output is a float
        {"name": "out", "size": 2, "role": "output", "activation": "identity",
         "firing": {"policy": "lif", "beta": 0.7, "threshold": 0.2}},
    ],
    "projections": [{"pre": "in", "post": "hidden", "init": {"kind": "uniform", "low": -1.5, "high": 1.5}},
                    {"pre": "hidden", "post": "relay"},
                    {"pre": "relay", "post": "out", "init": {"kind": "uniform", "low": -1.5, "high": 1.5}},
                    {"pre": "hidden", "post": "out", "init": {"kind": "uniform", "low": -1.5, "high": 1.5}}],
    "learning": {"lr": 0.5},
    "run": {"ticks": 4, "eval_every": 2, "batch_size": BATCH, "steps_per_sample": STEPS},
    "backend": {"kind": "batched", "dtype": "float64", "device": "cpu"},
    "output": {"agent_metrics": False},
    "log": {"level": "messages"},
}


def run(tmp_path, backend: str, level: str = "messages"):
    data = copy.deepcopy(SCENARIO)
    data["backend"]["kind"] = backend
    data["log"]["level"] = level
    result = ribbed.run(data, out=tmp_path / f"{backend}-{level}")
    return result.directory / "run.log"


def test_spikes_pack_eight_neurons_a_byte_and_unpack_exactly() -> None:
    spikes = (np.random.default_rng(0).random((3, 4, 13)) < 0.3).astype(np.float32)
    packed = pack_spikes(spikes)
    assert packed.dtype == np.uint8 and packed.shape == (3, 4, 2)
    assert packed[0, 0, 0] == sum(int(spikes[0, 0, i]) << i for i in range(8))
    assert np.array_equal(unpack_spikes(packed, 13), spikes)


def test_a_timed_log_holds_every_step_and_both_executors_write_the_same(tmp_path) -> None:
    logs = {backend: run(tmp_path, backend) for backend in ("batched", "reference")}
    with open_log(logs["batched"]) as batched, open_log(logs["reference"]) as reference:
        assert batched.header["time"] == {"steps": STEPS, "spiking": ["in", "hidden", "out"]}
        for tick in range(4):
            steps = batched.step_activity(tick)
            assert set(steps) == {"in", "hidden", "relay", "out"}
            assert all(steps[name].shape == (BATCH, STEPS, size) for name, size in
                       (("in", 2), ("hidden", 11), ("relay", 3), ("out", 2)))
            for name in ("in", "hidden", "out"):
                assert set(np.unique(steps[name])) <= {0.0, 1.0}
            assert steps["hidden"].sum() > 0  # the test sees spikes, not only silence
            # The last step's is the activation the record held before.
            hidden = next(p for p in batched.header["populations"] if p["name"] == "hidden")
            activation = batched.tick(tick).array("activation")
            assert np.array_equal(steps["hidden"][:, -1], activation[:, hidden["start"]:hidden["start"] + 11])
            # The spikes give the tick's spike messages: out-degree 3 + 2 per hidden spike, 11 per input spike.
            counts = batched.tick(tick).array("counts")
            assert counts[7] == steps["in"].sum() * 11 + steps["hidden"].sum() * 5 + 0
            delta = batched.step_delta(tick)
            assert delta.shape == (BATCH, STEPS, 18)
            assert np.isnan(delta[:, :, :2]).all() and np.isfinite(delta[:, :, 2:]).all()
            # The summed deltas are the record's delta.
            assert np.allclose(delta[:, :, 2:].sum(axis=1), batched.tick(tick).array("delta")[:, 2:], rtol=0,
                               atol=1e-12)
            other = reference.step_activity(tick)
            for name in steps:
                assert np.allclose(other[name], steps[name], rtol=0, atol=1e-12), name
            assert np.allclose(reference.step_delta(tick), delta, rtol=0, atol=1e-10, equal_nan=True)


@pytest.mark.parametrize("backend", ["batched", "reference"])
def test_a_timed_log_replays_bit_for_bit(tmp_path, backend: str) -> None:
    report = verify(run(tmp_path, backend))
    assert report.ok, report


def test_the_activity_level_holds_steps_without_deltas(tmp_path) -> None:
    with open_log(run(tmp_path, "batched", "activity")) as log:
        assert log.step_activity(1)["hidden"].shape == (BATCH, STEPS, 11)
        assert log.step_delta(1) is None
        assert "step_delta" not in log.tick(1).body


def test_an_untimed_log_has_no_steps(tmp_path) -> None:
    data = copy.deepcopy(SCENARIO)
    data["task"].pop("encoding")
    data["run"]["steps_per_sample"] = 1
    for population in data["populations"]:
        population.pop("firing", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = ribbed.run(data, out=tmp_path / "untimed")
    with open_log(result.directory / "run.log") as log:
        assert "time" not in log.header
        assert log.step_activity(0) is None and log.step_delta(0) is None


def test_a_record_whose_steps_break_the_header_is_refused(tmp_path) -> None:
    from ribbed.log.bodies import BodyRules
    from ribbed.log.format import FormatViolation, encode_array

    with open_log(run(tmp_path, "batched")) as log:
        rules = BodyRules(log.header)
        body = dict(log.tick(0).body)
    rules.check("tick", body)
    wrong = dict(body, step_activity=dict(body["step_activity"], hidden=encode_array(np.zeros((BATCH, STEPS, 11),
                                                                                               np.uint8))))
    with pytest.raises(FormatViolation, match="step_activity/hidden"):
        rules.check("tick", wrong)
    with pytest.raises(FormatViolation, match="step_activity"):
        rules.check("tick", {k: v for k, v in body.items() if k != "step_activity"})


def test_both_executors_return_the_same_evaluation_steps(tmp_path) -> None:
    predictions = {}
    for backend in ("batched", "reference"):
        data = copy.deepcopy(SCENARIO)
        data["backend"]["kind"] = backend
        data["log"]["level"] = "off"
        model = ribbed.NetworkModel(ribbed.load_scenario(data))
        model.step()
        inputs = model.dataset.X_test
        predictions[backend] = model.executor.predict(inputs, keep=["hidden", "relay"])
    batched, reference = predictions["batched"], predictions["reference"]
    assert set(batched.steps) == {"hidden", "relay"}
    assert batched.steps["hidden"].shape == (min(8, len(inputs)), STEPS, 11)
    for name in ("hidden", "relay"):
        np.testing.assert_allclose(reference.steps[name], batched.steps[name], rtol=0, atol=1e-12)
        # Averaged over the steps, they are the activations the evaluation returns.
        np.testing.assert_allclose(batched.steps[name].mean(axis=1), batched.activations[name][:8], atol=1e-12)
