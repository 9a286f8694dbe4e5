"""Pair-based STDP and R-STDP (ribbed.agents.stdp): the exact weight change of one pairing, the
pairing schemes, the bounds, numpy == torch, the eligibility trace, and the Song–Miller–Abbott
experiment's bimodal weights (docs/semantics.md, "STDP")."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from song_abbott import fixed_weight_rate, song_miller_abbott

from ribbed.agents.stdp import (RewardParams, STDPParams, STDPTraces, initial_traces, rstdp_step, stdp_step)
from ribbed.errors import ScenarioError

#: Distinct constants, so that a swapped τ or amplitude changes the numbers.
PARAMS = dict(tau_plus=17.0, tau_minus=23.0, a_plus=0.01, a_minus=0.012, w_min=0.0, w_max=1.0, dt=0.5)


def as_array(values, xp, dtype=None):
    """``values`` as a float64 (or ``dtype``) array of the namespace ``xp``."""
    if xp is np:
        return np.asarray(values, dtype=dtype or np.float64)
    return torch.as_tensor(np.asarray(values), dtype=dtype or torch.float64)


def index(values, xp):
    return np.asarray(values, dtype=np.int64) if xp is np else torch.as_tensor(np.asarray(values), dtype=torch.long)


def to_numpy(array):
    return array.numpy() if isinstance(array, torch.Tensor) else np.asarray(array)


def run(params, pre_spikes, post_spikes, pre_index, post_index, w0, xp):
    """Weights after driving ``stdp_step`` with spike rasters (steps, [batch,] n)."""
    weights = as_array(w0, xp)
    pre_spikes, post_spikes = as_array(pre_spikes, xp), as_array(post_spikes, xp)
    traces = initial_traces(pre_spikes.shape[-1], post_spikes.shape[-1], weights, tuple(pre_spikes.shape[1:-1]))
    for s_pre, s_post in zip(pre_spikes, post_spikes):
        weights, traces = stdp_step(weights, traces, s_pre, s_post, index(pre_index, xp), index(post_index, xp),
                                    params, xp)
    return to_numpy(weights)


def raster(steps, n, spikes):
    """A (steps, n) 0/1 raster with a spike of neuron i at step t for each (t, i) in ``spikes``."""
    out = np.zeros((steps, n))
    for t, i in spikes:
        out[t, i] = 1.0
    return out


XPS = pytest.mark.parametrize("xp", [np, torch], ids=["numpy", "torch"])
PAIRINGS = pytest.mark.parametrize("pairing", ["all_to_all", "nearest"])


@XPS
@PAIRINGS
@pytest.mark.parametrize("lag", [1, 7, 40])
def test_one_pre_post_pair_changes_the_weight_by_a_plus_exp(xp, pairing, lag):
    params = STDPParams(**PARAMS, pairing=pairing)
    steps, t_pre = 3 + lag + 6, 3
    w = run(params, raster(steps, 1, [(t_pre, 0)]), raster(steps, 1, [(t_pre + lag, 0)]), [0], [0], [0.5], xp)
    expected = 0.5 + params.a_plus * math.exp(-lag * params.dt / params.tau_plus)
    assert abs(w[0] - expected) <= 1e-12


@XPS
@PAIRINGS
@pytest.mark.parametrize("lag", [1, 7, 40])
def test_one_post_pre_pair_changes_the_weight_by_minus_a_minus_exp(xp, pairing, lag):
    params = STDPParams(**PARAMS, pairing=pairing)
    steps, t_post = 3 + lag + 6, 3
    w = run(params, raster(steps, 1, [(t_post + lag, 0)]), raster(steps, 1, [(t_post, 0)]), [0], [0], [0.5], xp)
    expected = 0.5 - params.a_minus * math.exp(-lag * params.dt / params.tau_minus)
    assert abs(w[0] - expected) <= 1e-12


@XPS
def test_a_pair_changes_only_its_own_synapse(xp):
    # 3 pre, 2 post, all to all in canonical order (sorted by post, then pre): pre 1 -> post 0 pairs.
    post_index, pre_index = np.divmod(np.arange(6), 3)
    params = STDPParams(**PARAMS)
    w0 = np.linspace(0.2, 0.7, 6)
    w = run(params, raster(12, 3, [(2, 1)]), raster(12, 2, [(5, 0)]), pre_index, post_index, w0, xp)
    expected = w0.copy()
    expected[1] += params.a_plus * math.exp(-3 * params.dt / params.tau_plus)  # (post 0, pre 1): pre then post
    np.testing.assert_allclose(w, expected, rtol=0, atol=1e-12)
    assert w[1] != w0[1]


@XPS
@PAIRINGS
def test_spikes_in_the_same_step_do_not_pair(xp, pairing):
    params = STDPParams(**PARAMS, pairing=pairing)
    w = run(params, raster(8, 1, [(3, 0)]), raster(8, 1, [(3, 0)]), [0], [0], [0.5], xp)
    assert w[0] == 0.5


@XPS
def test_all_to_all_and_nearest_differ_as_defined_on_pre_pre_post(xp):
    t1, t2, t3 = 2, 6, 15
    pre, post = raster(20, 1, [(t1, 0), (t2, 0)]), raster(20, 1, [(t3, 0)])
    lag = lambda t: math.exp(-(t3 - t) * PARAMS["dt"] / PARAMS["tau_plus"])  # noqa: E731
    all_pairs = run(STDPParams(**PARAMS, pairing="all_to_all"), pre, post, [0], [0], [0.5], xp)[0]
    nearest = run(STDPParams(**PARAMS, pairing="nearest"), pre, post, [0], [0], [0.5], xp)[0]
    assert abs(all_pairs - (0.5 + PARAMS["a_plus"] * (lag(t1) + lag(t2)))) <= 1e-12  # both pre spikes pair
    assert abs(nearest - (0.5 + PARAMS["a_plus"] * lag(t2))) <= 1e-12  # only the latest one does
    assert all_pairs - nearest > 1e-4


@XPS
def test_all_to_all_and_nearest_differ_as_defined_on_post_post_pre(xp):
    t1, t2, t3 = 1, 4, 9
    pre, post = raster(12, 1, [(t3, 0)]), raster(12, 1, [(t1, 0), (t2, 0)])
    lag = lambda t: math.exp(-(t3 - t) * PARAMS["dt"] / PARAMS["tau_minus"])  # noqa: E731
    all_pairs = run(STDPParams(**PARAMS, pairing="all_to_all"), pre, post, [0], [0], [0.5], xp)[0]
    nearest = run(STDPParams(**PARAMS, pairing="nearest"), pre, post, [0], [0], [0.5], xp)[0]
    assert abs(all_pairs - (0.5 - PARAMS["a_minus"] * (lag(t1) + lag(t2)))) <= 1e-12
    assert abs(nearest - (0.5 - PARAMS["a_minus"] * lag(t2))) <= 1e-12


@XPS
def test_soft_bounds_scale_by_the_distance_to_the_bound(xp):
    params = STDPParams(**{**PARAMS, "w_min": -0.5, "w_max": 2.0}, bounds="soft")
    up = run(params, raster(10, 1, [(2, 0)]), raster(10, 1, [(6, 0)]), [0], [0], [0.5], xp)[0]
    down = run(params, raster(10, 1, [(6, 0)]), raster(10, 1, [(2, 0)]), [0], [0], [0.5], xp)[0]
    assert abs(up - (0.5 + params.a_plus * math.exp(-4 * params.dt / params.tau_plus) * (2.0 - 0.5))) <= 1e-12
    assert abs(down - (0.5 - params.a_minus * math.exp(-4 * params.dt / params.tau_minus) * (0.5 + 0.5))) <= 1e-12


@XPS
def test_the_batch_shares_the_weights_through_the_mean_of_its_changes(xp):
    # Sample 0 pairs pre -> post at a lag of 2 steps, sample 1 stays silent: half the change.
    params = STDPParams(**PARAMS)
    pre = np.zeros((8, 2, 1))
    post = np.zeros((8, 2, 1))
    pre[1, 0, 0], post[3, 0, 0] = 1.0, 1.0
    w = run(params, pre, post, [0], [0], [0.5], xp)[0]
    assert abs(w - (0.5 + params.a_plus * math.exp(-2 * params.dt / params.tau_plus) / 2)) <= 1e-12


BRIAN2_PAIRS = Path(__file__).parent / "fixtures" / "brian2" / "stdp_pair.json"


@XPS
@PAIRINGS
def test_one_pair_matches_brian2s_stdp_example_synapse(xp, pairing):
    """Brian2's synapse model of examples/synapses/STDP.py, recorded by
    tests/fixtures/brian2/record_stdp_pair.py (Brian2 does not import with this NumPy)."""
    brian = json.loads(BRIAN2_PAIRS.read_text())
    params = STDPParams(tau_plus=brian["tau_pre_ms"], tau_minus=brian["tau_post_ms"], a_plus=brian["dApre"],
                        a_minus=-brian["dApost"], w_min=0.0, w_max=brian["gmax"], pairing=pairing, dt=brian["dt_ms"])
    assert len(brian["cases"]) == 8
    for case in brian["cases"]:
        first, second = 10, 10 + case["lag_steps"]
        t_pre, t_post = (first, second) if case["order"] == "pre_post" else (second, first)
        steps = second + 20
        w = run(params, raster(steps, 1, [(t_pre, 0)]), raster(steps, 1, [(t_post, 0)]), [0], [0],
                [case["w_before"]], xp)
        assert abs(w[0] - case["w_after"]) <= 1e-15, case


@XPS
def test_weights_with_the_batch_shape_are_independent_copies(xp):
    params = STDPParams(**PARAMS)
    pre = np.zeros((8, 2, 1))
    post = np.zeros((8, 2, 1))
    pre[1, 0, 0], post[3, 0, 0] = 1.0, 1.0  # sample 0 potentiates,
    pre[5, 1, 0], post[2, 1, 0] = 1.0, 1.0  # sample 1 depresses
    w = run(params, pre, post, [0], [0], [[0.5], [0.5]], xp)
    assert abs(w[0, 0] - (0.5 + params.a_plus * math.exp(-2 * params.dt / params.tau_plus))) <= 1e-12
    assert abs(w[1, 0] - (0.5 - params.a_minus * math.exp(-3 * params.dt / params.tau_minus))) <= 1e-12


# ---------------------------------------------------------------------- properties


@st.composite
def spiking(draw, batch=()):
    """Random parameters, spike rasters and starting weights in bounds, with a small network."""
    n_pre, n_post, steps = draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(1, 30))
    w_min = draw(st.floats(-2.0, 1.0))
    w_max = w_min + draw(st.floats(0.01, 3.0))
    params = STDPParams(tau_plus=draw(st.floats(0.5, 50.0)), tau_minus=draw(st.floats(0.5, 50.0)),
                        a_plus=draw(st.floats(0.0, 2.0)), a_minus=draw(st.floats(0.0, 2.0)), w_min=w_min, w_max=w_max,
                        pairing=draw(st.sampled_from(["all_to_all", "nearest"])),
                        bounds=draw(st.sampled_from(["hard", "soft"])), dt=draw(st.floats(0.1, 5.0)))
    rate = draw(st.floats(0.05, 0.9))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pre = (rng.random((steps, *batch, n_pre)) < rate).astype(np.float64)
    post = (rng.random((steps, *batch, n_post)) < rate).astype(np.float64)
    post_index, pre_index = np.divmod(np.arange(n_pre * n_post), n_pre)
    w0 = w_min + rng.random(n_pre * n_post) * (w_max - w_min)
    rewards = rng.normal(size=(steps, *batch)) * (rng.random((steps, *batch)) < 0.3)
    return params, pre, post, pre_index, post_index, w0, rewards


@settings(max_examples=60, deadline=None)
@given(spiking())
def test_weights_stay_within_their_bounds(case):
    params, pre, post, pre_index, post_index, w0, _ = case
    weights, traces = w0, initial_traces(pre.shape[-1], post.shape[-1], w0)
    for s_pre, s_post in zip(pre, post):
        weights, traces = stdp_step(weights, traces, s_pre, s_post, pre_index, post_index, params, np)
        assert np.all(weights >= params.w_min) and np.all(weights <= params.w_max)


@settings(max_examples=40, deadline=None)
@given(spiking(batch=(2,)), st.booleans())
def test_numpy_and_torch_agree(case, rewarded):
    params, pre, post, pre_index, post_index, w0, rewards = case
    reward_params = RewardParams(tau_e=7.0, lr=0.5)
    results = []
    for xp in (np, torch):
        weights = as_array(w0, xp)
        traces = initial_traces(pre.shape[-1], post.shape[-1], weights, (2,))
        eligibility = as_array(np.zeros((2, w0.size)), xp)
        i_pre, i_post = index(pre_index, xp), index(post_index, xp)
        for s_pre, s_post, reward in zip(as_array(pre, xp), as_array(post, xp), as_array(rewards, xp)):
            if rewarded:
                weights, traces, eligibility = rstdp_step(weights, traces, eligibility, s_pre, s_post, reward, i_pre,
                                                          i_post, params, reward_params, xp)
            else:
                weights, traces = stdp_step(weights, traces, s_pre, s_post, i_pre, i_post, params, xp)
        results.append([to_numpy(a) for a in (weights, traces.pre, traces.post, eligibility)])
    for ours, theirs in zip(*results):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------------- reward-modulated STDP


def rstdp_run(params, reward_params, pre, post, rewards, w0, xp):
    """Weights and eligibility after each step of ``rstdp_step`` on one synapse."""
    weights = as_array([w0], xp)
    traces, eligibility = initial_traces(1, 1, weights), as_array([0.0], xp)
    history = []
    for s_pre, s_post, reward in zip(as_array(pre, xp), as_array(post, xp), rewards):
        weights, traces, eligibility = rstdp_step(weights, traces, eligibility, s_pre, s_post, reward,
                                                  index([0], xp), index([0], xp), params, reward_params, xp)
        history.append((float(weights[0]), float(eligibility[0])))
    return history


@XPS
def test_rstdp_without_reward_leaves_the_weights_alone(xp):
    rng = np.random.default_rng(3)
    pre, post = (rng.random((200, 1)) < 0.2).astype(float), (rng.random((200, 1)) < 0.2).astype(float)
    history = rstdp_run(STDPParams(**PARAMS), RewardParams(tau_e=50.0, lr=2.0), pre, post, [0.0] * 200, 0.5, xp)
    assert all(w == 0.5 for w, _ in history)
    assert max(abs(e) for _, e in history) > 1e-3  # the pairings did reach the eligibility


@XPS
def test_eligibility_decays_with_tau_e_and_a_reward_spends_it(xp):
    params, reward_params = STDPParams(**PARAMS), RewardParams(tau_e=40.0, lr=3.0)
    t_pre, t_post, t_reward, steps = 2, 5, 30, 35
    rewards = [0.0] * steps
    rewards[t_reward] = 0.7
    history = rstdp_run(params, reward_params, raster(steps, 1, [(t_pre, 0)]), raster(steps, 1, [(t_post, 0)]),
                        rewards, 0.5, xp)
    paired = params.a_plus * math.exp(-(t_post - t_pre) * params.dt / params.tau_plus)
    for t, (w, e) in enumerate(history):
        expected_e = 0.0 if t < t_post else paired * math.exp(-(t - t_post) * params.dt / reward_params.tau_e)
        assert abs(e - expected_e) <= 1e-12, t
        expected_w = 0.5 if t < t_reward else 0.5 + reward_params.lr * 0.7 * (
            paired * math.exp(-(t_reward - t_post) * params.dt / reward_params.tau_e))
        assert abs(w - expected_w) <= 1e-12, t


# ---------------------------------------------------------------------- bad input


@pytest.mark.parametrize("field, value", [("tau_plus", 0.0), ("tau_minus", -1.0), ("dt", float("nan")),
                                          ("a_plus", -0.1), ("w_max", -1.0), ("pairing", "nearest_neighbour"),
                                          ("bounds", "multiplicative")])
def test_bad_parameters_name_their_field(field, value):
    with pytest.raises(ScenarioError) as caught:
        STDPParams(**{**PARAMS, field: value})
    assert caught.value.problems[0].path == field
    assert caught.value.problems[0].fix


def test_bad_reward_parameters_name_their_field():
    with pytest.raises(ScenarioError) as caught:
        RewardParams(tau_e=0.0)
    assert caught.value.problems[0].path == "tau_e"


def test_traces_start_at_zero_on_the_weights_device_and_dtype():
    traces = initial_traces(3, 2, torch.zeros(6, dtype=torch.float64), (4,))
    assert isinstance(traces, STDPTraces)
    assert traces.pre.shape == (4, 3) and traces.post.shape == (4, 2) and traces.pre.dtype == torch.float64
    assert not traces.pre.any() and not traces.post.any()


# ---------------------------------------------------------------------- Song, Miller & Abbott (2000)


def test_the_neuron_at_1_ms_fires_as_brian2s_euler_neuron_at_0_1_ms():
    """The reduction of the experiment below is faithful for the neuron: with the weights held
    fixed, the exponential integrator at dt = 1 ms and Brian2's Euler at 0.1 ms fire alike."""
    fine = fixed_weight_rate(20.0, 0.1, "euler", seed=1)
    coarse = fixed_weight_rate(20.0, 1.0, "exponential", seed=1)
    assert fine > 30.0
    assert abs(coarse - fine) < 0.06 * fine


def test_song_miller_abbott_ends_bimodal():
    """Brian2's example run to equilibrium: most weights end within 10% of 0 or of g_max, both
    modes well populated, and the output rate falls from about 44 Hz to Song et al.'s regime.
    At 100 s, the example's length, neither Brian2 nor this run is there yet (46% and 42% within
    10% of a bound); both settle after a few hundred seconds (tests/song_abbott.py has the numbers)."""
    outcome = song_miller_abbott(seconds=400.0, dt=1.0, seed=0)
    low, high = outcome.near_bounds(0.1)
    print(outcome.histogram())
    assert low + high > 0.5
    assert low > 0.2 and high > 0.2
    middle = np.mean((outcome.weights > 0.3) & (outcome.weights < 0.7))
    assert middle / 0.4 < 0.25 * min(low, high) / 0.1  # a trough between the modes: < 1/4 of their density
    assert 5.0 < outcome.post_rate_hz < 30.0
