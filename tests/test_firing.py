"""Firing policies and surrogate gradients (:mod:`ribbed.agents.firing`), held to snnTorch.

snnTorch is the oracle for ``lif`` (its ``Leaky`` neuron) and for the surrogates (its
``surrogate.atan``, ``fast_sigmoid``, ``sigmoid``): the membrane and the spikes over 1,000 steps,
on numpy and torch, and the gradients of a small network trained through time.  The other
policies and the refractory period are held to their laws (docs/semantics.md, "Spiking
neurons") with hypothesis.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import snntorch
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from snntorch import surrogate as snn_surrogate

from ribbed.agents import firing
from ribbed.agents.firing import FiringPolicy, FiringState, Surrogate
from ribbed.errors import RibbedError

STEPS, BATCH, NEURONS = 1000, 4, 32
TOLERANCE = {torch.float32: 1e-6, torch.float64: 1e-12}
SNN_SURROGATES = {"atan": snn_surrogate.atan, "fast_sigmoid": snn_surrogate.fast_sigmoid,
                  "sigmoid": snn_surrogate.sigmoid}
SNN_FUNCTIONS = {"atan": snn_surrogate.ATan, "fast_sigmoid": snn_surrogate.FastSigmoid,
                 "sigmoid": snn_surrogate.Sigmoid}


def snn_leaky(beta: float, reset: str, dtype: torch.dtype, reset_delay: bool = True,
              spike_grad=None) -> snntorch.Leaky:
    """snnTorch's Leaky with beta and theta as tensors of ``dtype``: given as Python floats,
    snnTorch stores them as float32 buffers, so a float64 network would decay by float32(beta)."""
    return snntorch.Leaky(beta=torch.tensor(beta, dtype=dtype), threshold=torch.tensor(1.0, dtype=dtype),
                          reset_mechanism=reset, reset_delay=reset_delay, spike_grad=spike_grad)


def currents(dtype: torch.dtype, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (0.2 + 0.6 * torch.randn(STEPS, BATCH, NEURONS, generator=generator, dtype=torch.float64)).to(dtype)


# ---------------------------------------------------------------------- lif against snnTorch's Leaky


@pytest.mark.parametrize("reset_delay", [True, False], ids=["reset_delay", "immediate_reset"])
@pytest.mark.parametrize("reset", firing.RESETS)
@pytest.mark.parametrize("beta", [0.5, 0.9, 0.95])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_lif_is_snntorch_leaky_spike_for_spike(dtype, beta, reset, reset_delay):
    """1,000 steps of random current: the same spikes at every step, and the membrane within
    1e-6 (float32) / 1e-12 (float64), on torch and on numpy (the policy through :func:`fire`)."""
    current = currents(dtype, seed=int(beta * 100) + 7 * firing.RESETS.index(reset))
    policy = FiringPolicy("lif", beta=beta, reset=reset, reset_delay=reset_delay)
    oracle = snn_leaky(beta, reset, dtype, reset_delay)
    theirs = torch.zeros(BATCH, NEURONS, dtype=dtype)
    on_torch = firing.initial_state((BATCH, NEURONS), torch, dtype)
    on_numpy = firing.initial_state((BATCH, NEURONS), np, torch.empty((), dtype=dtype).numpy().dtype)
    spikes, worst = 0.0, 0.0
    for t in range(STEPS):
        their_spike, theirs = oracle(current[t], theirs)
        torch_spike, on_torch = firing.fire(policy, on_torch, current[t], torch)
        numpy_spike, on_numpy = firing.fire(policy, on_numpy, current[t].numpy(), np)
        assert torch.equal(torch_spike, their_spike.to(dtype)), f"step {t}: torch spikes differ"
        np.testing.assert_array_equal(numpy_spike, their_spike.numpy(), err_msg=f"step {t}: numpy spikes differ")
        assert torch_spike.dtype == dtype and numpy_spike.dtype == on_numpy.membrane.dtype
        worst = max(worst, (on_torch.membrane - theirs).abs().max().item(),
                    float(np.abs(on_numpy.membrane - theirs.numpy()).max()))
        spikes += their_spike.sum().item()
    assert worst <= TOLERANCE[dtype]
    rate = spikes / (STEPS * BATCH * NEURONS)
    assert 0.05 < rate < 0.999, f"spike rate {rate}: the comparison would not test the dynamics"


def run_network(step, weight: torch.Tensor, bias: torch.Tensor, inputs: torch.Tensor, target: float) -> torch.Tensor:
    """A linear layer feeding a LIF layer for every step of ``inputs``; the loss is half the
    squared distance of each neuron's spike count from ``target``."""
    membrane = torch.zeros(inputs.shape[1], weight.shape[0], dtype=torch.float64)
    count = 0
    for x in inputs:
        spikes, membrane = step(x @ weight.T + bias, membrane)
        count = count + spikes
    return 0.5 * ((count - target) ** 2).sum()


@pytest.mark.parametrize("reset", firing.RESETS)
@pytest.mark.parametrize("kind", list(firing.SURROGATES))
def test_surrogate_gradients_equal_autograd_through_snntorch(kind, reset):
    """Backprop through 300 steps of a linear layer -> LIF network (float64): the gradients of
    the spike-count loss w.r.t. the linear weights and bias with our Function and with
    snnTorch's Leaky and matching surrogate agree to 1e-10 relative."""
    generator = torch.Generator().manual_seed(3)
    inputs = torch.randn(300, 4, 10, generator=generator, dtype=torch.float64)
    weight0 = 0.5 * torch.randn(16, 10, generator=generator, dtype=torch.float64)
    bias0 = 0.3 + 0.1 * torch.randn(16, generator=generator, dtype=torch.float64)
    policy = FiringPolicy("lif", beta=0.9, reset=reset, surrogate=Surrogate(kind))
    oracle = snn_leaky(0.9, reset, torch.float64, spike_grad=SNN_SURROGATES[kind]())

    def ours(current, membrane):
        return firing.lif_step(membrane, current, policy.beta, policy.threshold, policy.reset, policy.reset_delay,
                               policy.surrogate, policy.strict, torch)

    gradients = []
    for step in (ours, oracle):
        weight, bias = weight0.clone().requires_grad_(), bias0.clone().requires_grad_()
        # target 30 spikes in 300 steps; snnTorch's spikes are float32, so the loss's gradient
        # w.r.t. them must be exact in float32: integers are.
        run_network(step, weight, bias, inputs, target=30.0).backward()
        gradients.append((weight.grad, bias.grad))
    (w_ours, b_ours), (w_theirs, b_theirs) = gradients
    assert w_theirs.abs().max() > 1e-3, "the surrogate carried no gradient: the test would be vacuous"
    for mine, theirs in ((w_ours, w_theirs), (b_ours, b_theirs)):
        scale = theirs.abs().max().item()
        torch.testing.assert_close(mine, theirs, rtol=1e-10, atol=1e-10 * scale)


def test_a_float64_snntorch_network_decays_by_float32_beta():
    """Why :func:`snn_leaky` passes beta as a float64 tensor: snnTorch turns a Python beta into a
    float32 buffer (``torch.as_tensor(beta)``), which a float64 membrane then multiplies."""
    current = torch.ones(1, 1, dtype=torch.float64) * 0.1
    _, membrane = snntorch.Leaky(beta=0.9)(current, torch.ones(1, 1, dtype=torch.float64) * 0.5)
    assert membrane.item() == float(np.float32(0.9)) * 0.5 + 0.1 != 0.9 * 0.5 + 0.1


# ---------------------------------------------------------------------- the surrogate derivatives

finite = st.floats(-20.0, 20.0, allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(list(firing.SURROGATES)), parameter=st.integers(1, 200).map(lambda m: m / 4),
       x=arrays(np.float64, st.integers(1, 40), elements=finite),
       strict=st.booleans())
def test_numpy_derivative_is_the_torch_functions_backward(kind, parameter, x, strict):
    """spike_derivative on numpy = the autograd Function's backward on torch = snnTorch's
    surrogate backward (float64), and the forward is the same Heaviside on both.

    snnTorch's spikes are float32 (``.float()``) even for a float64 input, so the gradient that
    reaches its backward is float32, and its sigmoid backward multiplies it by the slope in
    float32 (``grad_input * ctx.slope``) before the float64 part: the upstream gradients (k / 8)
    and slopes (m / 4) here are dyadic so that those float32 steps are exact."""
    surrogate = Surrogate(kind, parameter)
    upstream = (np.arange(x.size) % 17 - 8) / 8.0  # any upstream gradient, with both signs
    on_torch = torch.tensor(x, requires_grad=True)
    spikes = firing.spike(on_torch, surrogate, strict, torch)
    spikes.backward(torch.tensor(upstream))
    by_hand = upstream * firing.spike_derivative(x, surrogate, np)
    np.testing.assert_allclose(on_torch.grad.numpy(), by_hand, rtol=1e-13, atol=0)
    np.testing.assert_array_equal(spikes.detach().numpy(), firing.spike(x, surrogate, strict, np))
    theirs = torch.tensor(x, requires_grad=True)
    SNN_FUNCTIONS[kind].apply(theirs, parameter).backward(torch.tensor(upstream))
    # snnTorch's sigmoid squares exp(-k x) + 1: inf (a derivative of 0 instead of ~1e-154) below
    # k x = -354, and exp(-k x) itself is inf (a nan) below -709; ours has neither (see below)
    assert np.all(np.isfinite(by_hand))
    if kind == "sigmoid":
        assert np.all(np.isfinite(theirs.grad.numpy()) | (parameter * x < -709))
    exact = parameter * x > -354 if kind == "sigmoid" else np.ones(x.shape, bool)
    np.testing.assert_allclose(by_hand[exact], theirs.grad.numpy()[exact], rtol=1e-12, atol=1e-300)


def test_the_surrogate_defaults_are_snntorchs():
    """atan alpha 2, fast_sigmoid slope 25, sigmoid slope 25; atan's derivative at 0 is alpha/2."""
    assert [Surrogate(kind).parameter for kind in ("atan", "fast_sigmoid", "sigmoid")] == [2.0, 25.0, 25.0]
    assert FiringPolicy("lif", beta=0.9).surrogate == Surrogate("atan", 2.0)
    zero = np.zeros(1)
    assert firing.spike_derivative(zero, Surrogate("atan"), np)[0] == 1.0
    assert firing.spike_derivative(zero, Surrogate("fast_sigmoid"), np)[0] == 1.0
    assert firing.spike_derivative(zero, Surrogate("sigmoid"), np)[0] == 25.0 / 4


def test_the_sigmoid_surrogate_stays_finite_where_snntorchs_overflows():
    """snnTorch's sigmoid backward is exp(-k x) / (exp(-k x) + 1)^2: inf / inf = nan for a
    membrane 4 below threshold in float32; ours is the same function without the overflow."""
    x = torch.tensor([-4.0, -1000.0, 1000.0], requires_grad=True)
    SNN_FUNCTIONS["sigmoid"].apply(x, 25).sum().backward()
    assert torch.isnan(x.grad[0])
    ours = firing.spike_derivative(x.detach(), Surrogate("sigmoid"), torch)
    assert torch.isfinite(ours).all() and (ours >= 0).all() and ours[1] == 0.0


# ---------------------------------------------------------------------- laws of the other policies

values = st.floats(-5.0, 5.0, allow_nan=False, width=64)


@settings(max_examples=60, deadline=None)
@given(u=arrays(np.float64, st.integers(1, 30), elements=values), theta=values, strict=st.booleans(),
       on_torch=st.booleans())
def test_threshold_spikes_iff_u_crosses_theta(u, theta, strict, on_torch):
    """S = 1 iff u > theta (strict) or u >= theta, hit exactly too."""
    u = np.concatenate([u, [theta]])  # one neuron exactly at threshold
    policy = FiringPolicy("threshold", threshold=theta, strict=strict)
    xp = torch if on_torch else np
    array = torch.tensor(u) if on_torch else u
    spikes, _ = firing.fire(policy, firing.initial_state(u.shape, xp), array, xp)
    spikes = np.asarray(spikes)
    np.testing.assert_array_equal(spikes, (u > theta) if strict else (u >= theta))
    assert spikes[-1] == (0.0 if strict else 1.0)


@settings(max_examples=60, deadline=None)
@given(u=arrays(np.float64, st.integers(1, 30), elements=values),
       seed=st.integers(0, 2**32 - 1), temperature=st.floats(0.05, 20.0), on_torch=st.booleans())
def test_random_spikes_iff_the_uniform_is_below_the_probability(u, seed, temperature, on_torch):
    """S = 1 iff v < sigmoid(u / T), with the uniforms v the caller passes (strict default)."""
    xp = torch if on_torch else np
    cast = torch.tensor if on_torch else np.asarray
    # The probability as this namespace computes it: numpy's and torch's tanh may differ in the last
    # bit, so the tie v == p is made with the namespace's own p.
    probability = np.asarray(firing.spike_probability(cast(u), temperature, xp))
    uniforms = np.random.default_rng(seed).random(u.shape)
    uniforms[0] = probability[0]  # v == p exactly: no spike
    policy = FiringPolicy("random", temperature=temperature)
    spikes, _ = firing.fire(policy, firing.initial_state(u.shape, xp), cast(u), xp, uniforms=cast(uniforms))
    # ribbed's sigmoid is 0.5 (1 + tanh(x / 2)): exact to 1e-15 absolute, not relative in the tail
    np.testing.assert_allclose(probability, 1.0 / (1.0 + np.exp(-u / temperature)), rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(np.asarray(spikes), uniforms < probability)
    assert np.asarray(spikes)[0] == 0.0


def test_random_spike_frequency_is_the_probability():
    """Over 200,000 draws, the spike frequency of each pre-activation is sigmoid(u / T) within
    5 standard errors."""
    u = np.array([-2.0, -0.5, 0.0, 1.0, 3.0])
    draws = np.random.default_rng(0).random((200_000, u.size))
    spikes = firing.random_spike(np.broadcast_to(u, draws.shape), draws, 2.0, Surrogate(), True, np)
    p = 1.0 / (1.0 + np.exp(-u / 2.0))
    assert np.all(np.abs(spikes.mean(axis=0) - p) < 5 * np.sqrt(p * (1 - p) / draws.shape[0]))


@settings(max_examples=80, deadline=None)
@given(raw=arrays(np.bool_, st.tuples(st.integers(1, 60), st.integers(1, 5))), period=st.integers(0, 6),
       on_torch=st.booleans())
def test_refractory_silences_exactly_period_steps_after_each_spike(raw, period, on_torch):
    """No emitted spike within ``period`` steps after an emitted spike, and every raw spike
    outside those windows is emitted."""
    xp = torch if on_torch else np
    state = firing.initial_state(raw.shape[1:], xp)
    counter, emitted = state.refractory, []
    for row in raw.astype(np.float64):
        spikes, counter = firing.refractory_step(torch.tensor(row) if on_torch else row, counter, period, xp)
        emitted.append(np.asarray(spikes))
    emitted = np.array(emitted)
    for neuron in range(raw.shape[1]):
        last = None
        for t in range(raw.shape[0]):
            silenced = last is not None and t - last <= period
            assert emitted[t, neuron] == (0.0 if silenced else float(raw[t, neuron])), (t, neuron, period)
            if emitted[t, neuron]:
                last = t


def test_refractory_lif_integrates_input_and_only_silences_output():
    """With a refractory period the membrane is the one without it (input integrates, resets
    follow the membrane as snnTorch's do); only the emitted spikes differ, and they are a subset."""
    current = currents(torch.float64, seed=11)[:200].numpy()
    free, silenced = FiringPolicy("lif", beta=0.9), FiringPolicy("lif", beta=0.9, refractory=3)
    a = b = firing.initial_state(current.shape[1:], np)
    differs = False
    for step in current:
        sa, a = firing.fire(free, a, step, np)
        sb, b = firing.fire(silenced, b, step, np)
        np.testing.assert_array_equal(a.membrane, b.membrane)
        assert np.all(sb <= sa)
        differs |= bool(np.any(sb != sa))
    assert differs, "the refractory period never silenced a spike: the test would be vacuous"


def test_refractory_gradient_stops_at_a_silenced_spike():
    x = torch.tensor([0.5, 0.5], requires_grad=True)
    raw = firing.spike(x, Surrogate(), True, torch)
    emitted, counter = firing.refractory_step(raw, torch.tensor([0, 2]), 2, torch)
    emitted.sum().backward()
    assert emitted.tolist() == [1.0, 0.0] and counter.tolist() == [2, 1]
    assert x.grad[0] > 0 and x.grad[1] == 0


@pytest.mark.parametrize("strict", [True, False])
def test_lif_comparison_option_at_exactly_threshold(strict):
    """A membrane that reaches theta exactly spikes only with the non-strict comparison (snnTorch
    is strict), and the reset follows the same comparison on the next step."""
    policy = FiringPolicy("lif", beta=0.5, strict=strict)
    state = firing.initial_state((1,), np)
    spikes, state = firing.fire(policy, state, np.array([1.0]), np)
    assert state.membrane[0] == 1.0 and spikes[0] == (0.0 if strict else 1.0)
    _, state = firing.fire(policy, state, np.array([0.0]), np)
    assert state.membrane[0] == (0.5 if strict else -0.5)


def test_rate_policy_is_the_activation():
    u = np.linspace(-2, 2, 9)
    y, state = firing.fire(FiringPolicy(), firing.initial_state(u.shape, np), u, np, activation="tanh")
    np.testing.assert_array_equal(y, np.tanh(u))
    assert not FiringPolicy().spiking and FiringPolicy("threshold").spiking


# ---------------------------------------------------------------------- bad input


@pytest.mark.parametrize("arguments, field", [
    ({"policy": "poisson"}, "policy"),
    ({"policy": "lif"}, "beta"),
    ({"policy": "lif", "beta": 1.5}, "beta"),
    ({"policy": "lif", "beta": 0.9, "reset": "hard"}, "reset"),
    ({"policy": "threshold", "threshold": math.nan}, "threshold"),
    ({"policy": "random", "temperature": 0.0}, "temperature"),
    ({"policy": "threshold", "refractory": -1}, "refractory"),
    ({"policy": "threshold", "refractory": 1.5}, "refractory"),
    ({"policy": "rate", "refractory": 2}, "refractory"),
])
def test_a_bad_policy_is_refused_with_its_field(arguments, field):
    with pytest.raises(RibbedError) as caught:
        FiringPolicy(**arguments)
    assert caught.value.problems[0].path == field and caught.value.problems[0].fix


@pytest.mark.parametrize("arguments, field", [(("tanh",), "surrogate.kind"), (("atan", -1.0), "surrogate.alpha"),
                                              (("sigmoid", math.inf), "surrogate.slope")])
def test_a_bad_surrogate_is_refused(arguments, field):
    with pytest.raises(RibbedError) as caught:
        Surrogate(*arguments)
    assert caught.value.problems[0].path == field


def test_the_random_policy_needs_uniforms_of_its_shape():
    policy, state = FiringPolicy("random"), firing.initial_state((2, 3), np)
    with pytest.raises(RibbedError, match="uniform draws"):
        firing.fire(policy, state, np.zeros((2, 3)), np)
    with pytest.raises(RibbedError, match="shape"):
        firing.fire(policy, state, np.zeros((2, 3)), np, uniforms=np.zeros((3,)))
    assert isinstance(state, FiringState)
