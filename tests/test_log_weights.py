"""``log.weights(tick)``: a logged run's weights at any tick, equal to the model's own."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import layered_scenario
from report_runs import run_dir, shortened

import ribbed
from ribbed.errors import RibbedError
from ribbed.log import model_at, open_log


def _dense(model, name: str) -> np.ndarray:
    """The model's own weights as (post, pre), 0 where there is no synapse."""
    return np.nan_to_num(model.projections[name].get_weights(format="array")).T


@pytest.fixture(scope="module")
def digits():
    return run_dir("digits")  # 40 ticks, snapshots at ticks 20 and 40


def test_at_a_snapshot_tick_the_weights_are_the_models(digits):
    with open_log(digits / "run.log") as log:
        assert 20 in log.snapshot_ticks
        weights = log.weights(20)
        synapses = log.weights(20, dense=False)
    model = model_at(digits / "run.log", 20)
    assert set(weights) == {"pixels->hidden", "hidden->classes"}
    for name, matrix in weights.items():
        assert matrix.shape == (model.projections[name].info.post.size, model.projections[name].info.pre.size)
        np.testing.assert_array_equal(matrix, _dense(model, name))
        np.testing.assert_array_equal(synapses[name].weights, model.projections[name].get_weights())
        pre, post = model.projections[name].connections()
        np.testing.assert_array_equal(synapses[name].pre, pre)
        np.testing.assert_array_equal(synapses[name].post, post)


def test_between_snapshots_the_log_replays_to_the_tick(digits):
    with open_log(digits / "run.log") as log:
        assert 33 not in log.snapshot_ticks
        weights = log.weights(33)
        at_20 = log.weights(20)
    live = ribbed.NetworkModel(ribbed.load_scenario(shortened("digits")))
    live.run(33)
    for name, matrix in weights.items():
        np.testing.assert_array_equal(matrix, _dense(live, name))
        np.testing.assert_array_equal(matrix, _dense(model_at(digits / "run.log", 33), name))
        assert not np.array_equal(matrix, at_20[name])  # 13 ticks of learning changed them


def test_the_last_tick_is_the_finished_runs_weights_and_tick_0_the_initial_ones(tmp_path):
    result = ribbed.run(shortened("digits", 30, 10), out=tmp_path / "run")
    with open_log(tmp_path / "run" / "run.log") as log:
        final, initial = log.weights(30), log.weights(0)
    fresh = ribbed.NetworkModel(ribbed.load_scenario(shortened("digits", 30, 10)))
    for name in final:
        np.testing.assert_array_equal(final[name], _dense(result.model, name))
        np.testing.assert_array_equal(initial[name], _dense(fresh, name))


@pytest.mark.parametrize("level", ["summary", "activity"])
def test_a_sparse_projection_has_zeros_where_no_synapse_is(tmp_path, level):
    """Its synapses come from the network the header builds (summary) or the topology record (activity)."""
    data = layered_scenario([2, 12, 2], ["tanh", "identity"], connectivity={0: {"rule": "fixed_probability", "p": 0.4}},
                            ticks=12)
    data["run"]["eval_every"] = 6
    data["log"] = {"level": level}
    result = ribbed.run(data, out=tmp_path / "run")
    with open_log(tmp_path / "run" / "run.log") as log:
        weights = log.weights(12)["p0->p1"]
        synapses = log.weights(12, dense=False)["p0->p1"]
        assert (log.topology() is not None) == (level == "activity")
    present = ~np.isnan(result.model.projections["p0->p1"].get_weights(format="array")).T
    assert 0 < present.sum() < present.size
    np.testing.assert_array_equal(weights != 0, present)
    np.testing.assert_array_equal(weights, _dense(result.model, "p0->p1"))
    assert len(synapses.weights) == present.sum()


def test_a_tick_outside_the_run_is_a_located_error(digits):
    with open_log(digits / "run.log") as log:
        for tick in (41, -1):
            with pytest.raises(RibbedError) as caught:
                log.weights(tick)
            problem = caught.value.problems[0]
            assert problem.source == str(digits / "run.log") and problem.path == "tick"
            assert f"tick {tick}" in problem.message and "0 to 40" in problem.fix


def test_dense_matrices_above_the_limit_are_refused_with_the_per_synapse_way(digits):
    with open_log(digits / "run.log") as log:
        with pytest.raises(RibbedError) as caught:
            log.weights(20, max_dense=1000)
        assert "dense=False" in caught.value.problems[0].fix
        synapses = log.weights(20, dense=False, max_dense=1000)
    assert len(synapses["pixels->hidden"].weights) == 64 * 64
