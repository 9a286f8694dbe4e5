"""STDP and R-STDP wired into the timed tick (docs/semantics.md, "STDP in a tick"): the scenario
sections and their located refusals, the conductance neuron against the Song–Miller–Abbott oracle
(tests/song_abbott.py), both executors against that oracle on the same draws, R-STDP's arithmetic
through both executors against :mod:`ribbed.agents.stdp`'s, and the built-in ``stdp-pairs`` run to
its bimodal equilibrium."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from song_abbott import E_E, E_L, TAU_E, TAU_M, V_R, V_T, drive, membrane_step

from conftest import model_from
from ribbed.agents.activations import ACTIVATIONS
from ribbed.agents.firing import Conductance, FiringPolicy, fire, initial_state
from ribbed.agents.stdp import RewardParams, STDPParams, initial_traces, rstdp_step
from ribbed.errors import ScenarioError
from ribbed.scenarios.loader import load_scenario
from ribbed.scheduler.plasticity import stdp_params
from ribbed.seeding import component_uniforms

STDP = {"tau_plus": 20.0, "tau_minus": 20.0, "a_plus": 0.0001, "a_minus": 0.000105, "w_min": 0.0, "w_max": 0.01}


def pairs_scenario(n_inputs: int = 100, rate_hz: float = 150.0, steps: int = 250, ticks: int = 3,
                   backend: str = "batched", carry: bool = True) -> dict:
    """stdp-pairs made small: ``n_inputs`` Poisson inputs (at a rate that gives the neuron the
    built-in's drive), ``steps`` 1 ms steps per tick."""
    return {
        "name": "pairs", "seed": 5,
        "task": {"kind": "constant", "n_inputs": n_inputs, "encoding": {"kind": "poisson", "rate_hz": rate_hz}},
        "populations": [{"name": "in", "size": n_inputs, "role": "input"},
                        {"name": "out", "size": 1, "role": "output", "bias": False, "activation": "identity",
                         "firing": {"policy": "conductance"}}],
        "projections": [{"pre": "in", "post": "out", "init": {"kind": "uniform", "low": 0.0, "high": 0.01}}],
        "learning": {"rule": "stdp", "stdp": STDP},
        "run": {"ticks": ticks, "batch_size": 1, "eval_every": ticks, "steps_per_sample": steps, "carry_state": carry},
        "backend": {"kind": backend} if backend == "reference" else {"kind": backend, "dtype": "float64",
                                                                      "device": "cpu"},
    }


def poisson_chunks(seed: int, ticks: int, steps: int, n: int, rate_hz: float):
    """The encoding's spikes of each training tick, as the oracle reads them: (steps, n) 0/1."""
    p = rate_hz * 1.0 / 1000.0 * 1.0
    for tick in range(ticks):
        yield (component_uniforms(seed, ("encoding", tick), (steps, 1, n))[:, 0, :] < p).astype(np.float64)


def refusal(data: dict) -> tuple[str, str]:
    with pytest.raises(ScenarioError) as caught:
        model_from(data)
    problem = caught.value.problems[0]
    assert problem.fix
    return problem.path, problem.message


# ---------------------------------------------------------------------- the scenario sections


def test_an_override_of_stdp_changes_only_the_keys_it_sets():
    data = pairs_scenario()
    data["projections"][0]["learning"] = {"stdp": {"a_plus": 0.5, "pairing": "nearest"}}
    scenario = load_scenario(data)
    learning = scenario.projection_learning(scenario.projections[0])
    assert learning.rule == "stdp" and learning.stdp.a_plus == 0.5 and learning.stdp.pairing == "nearest"
    assert learning.stdp.w_max == 0.01 and learning.stdp.a_minus == 0.000105  # the network's, kept
    params, reward = stdp_params(learning)
    assert params == STDPParams(**{**STDP, "a_plus": 0.5, "pairing": "nearest"}) and reward is None


@pytest.mark.parametrize("change, path, words", [
    (lambda d: d["populations"][1].pop("firing"), "learning.rule", "postsynaptic population 'out' emits none"),
    (lambda d: d["task"].pop("encoding"), "learning.rule", "presynaptic population 'in' emits none"),
    (lambda d: d["projections"][0].update(learning={"rule": "r_stdp"}), "projections[0].learning.stdp.reward",
     "no classes"),
    (lambda d: d["projections"][0].update(learning={"rule": "r_stdp", "stdp": {"reward": "shuffled"}}),
     "projections[0].learning.stdp.reward", "correct readout (shuffled), and task 'constant' has no classes"),
    (lambda d: d["projections"][0].update(learning={"rule": "backprop"}), "projections[0].learning.rule",
     "no surrogate"),
    (lambda d: d["projections"].append({"pre": "out", "post": "out"}), "run.carry_state", "delayed"),
    (lambda d: d["learning"]["stdp"].update(w_max=-1.0), "learning.stdp", "w_max"),
])
def test_what_stdp_cannot_run_on_is_refused_where_it_is_set(change, path, words):
    data = copy.deepcopy(pairs_scenario())
    change(data)
    where, message = refusal(data)
    assert where == path and words in message


@pytest.mark.filterwarnings("ignore::ribbed.RibbedWarning")
def test_a_conductance_neuron_that_credit_must_cross_is_refused():
    """A gradient rule before a conductance population would need credit through it: refused at
    its policy; the same network with STDP before it runs."""
    data = copy.deepcopy(pairs_scenario())
    data["populations"] = [data["populations"][0], {"name": "h1", "size": 3, "firing": {"policy": "lif", "beta": 0.9}},
                           {"name": "hidden", "size": 3, "bias": False, "firing": {"policy": "conductance"}},
                           {"name": "out", "size": 1, "role": "output", "activation": "identity",
                            "firing": {"policy": "lif", "beta": 0.9}}]
    data["projections"] = [{"pre": "in", "post": "h1"}, {"pre": "h1", "post": "hidden", "frozen": True},
                           {"pre": "hidden", "post": "out"}]
    data["learning"]["rule"] = "backprop"
    assert refusal(data)[0] == "populations[2].firing.policy"
    data["projections"][1] = {"pre": "h1", "post": "hidden", "learning": {"rule": "stdp"}}
    data["projections"][0]["learning"] = {"rule": "stdp"}
    model_from(data).step()


# ---------------------------------------------------------------------- the conductance neuron


@pytest.mark.parametrize("xp", [np, torch], ids=["numpy", "torch"])
def test_the_conductance_policy_is_the_oracles_neuron_step_for_step(xp):
    """agents/firing.py's conductance policy against tests/song_abbott.py's loop (membrane step,
    threshold, this step's input into g, reset), spike for spike, on a drive that makes it fire."""
    policy = FiringPolicy(policy="conductance")
    assert policy.conductance == Conductance(TAU_M, TAU_E, E_E, E_L, V_T, V_R, 1.0)
    rng = np.random.default_rng(0)
    drives = rng.random(3000) * 0.2
    state = initial_state((1,), xp, policy=policy)
    v, g, fired = V_R, 0.0, 0
    for drive_now in drives:
        v, g = membrane_step(v, g, 1.0)
        spike = v > V_T
        g += drive_now
        if spike:
            v = V_R
        current = np.array([drive_now]) if xp is np else torch.tensor([drive_now], dtype=torch.float64)
        out, state = fire(policy, state, current, xp)
        assert float(out[0]) == float(spike)
        # the same operations; a vectorized exp may differ from math.exp in the last bit
        assert abs(float(state.membrane[0]) - v) < 1e-12 and float(state.conductance[0]) == g
        fired += spike
    assert fired > 50


# ---------------------------------------------------------------------- both executors and the oracle


def test_both_executors_run_the_oracles_experiment_on_the_same_draws():
    """Poisson inputs, the conductance neuron and all-to-all STDP over three ticks of carried state:
    the reference (agent by agent, from spike messages) and batched executors end with the weights
    tests/song_abbott.py's loop computes from the same initial weights and input spikes, exactly."""
    ticks, steps, n, rate = 3, 250, 100, 150.0
    models = {kind: model_from(pairs_scenario(n, rate, steps, ticks, kind)) for kind in ("reference", "batched")}
    w0 = models["batched"].projections["in->out"].get_weights()
    params, _ = stdp_params(models["batched"].network.projections[0].learning)
    expected, fired = drive(w0.copy(), poisson_chunks(5, ticks, steps, n, rate), params, 1.0)
    assert fired > 10 and np.abs(expected - w0).max() > 1e-4
    for kind, model in models.items():
        spikes = 0.0
        for _ in range(ticks):
            model.step()
            spikes += float(model.last_result.outputs.sum())
        assert spikes == fired, kind
        np.testing.assert_array_equal(model.projections["in->out"].get_weights(), expected, err_msg=kind)
    counts = [model.executor.message_counts for model in models.values()]
    np.testing.assert_array_equal(counts[0], counts[1])


def test_without_carried_state_each_tick_starts_from_rest():
    """The same run with carry_state off: each tick's neuron and traces restart (the oracle run one
    tick at a time from the weights the last left)."""
    ticks, steps, n, rate = 3, 250, 100, 150.0
    model = model_from(pairs_scenario(n, rate, steps, ticks, "batched", carry=False))
    params, _ = stdp_params(model.network.projections[0].learning)
    weights = model.projections["in->out"].get_weights()
    for tick, chunk in enumerate(poisson_chunks(5, ticks, steps, n, rate)):
        weights, _ = drive(weights, [chunk], params, 1.0)
        model.step()
    np.testing.assert_array_equal(model.projections["in->out"].get_weights(), weights)


# ---------------------------------------------------------------------- R-STDP


def rewarded_scenario(backend: str, reward: str = "correct") -> dict:
    return {
        "name": "rewarded", "seed": 2, "task": {"kind": "xor", "encoding": {"kind": "rate", "gain": 2.0}},
        "populations": [{"name": "in", "size": 2, "role": "input"},
                        {"name": "out", "size": 2, "role": "output", "bias": False, "activation": "identity",
                         "firing": {"policy": "threshold", "threshold": 0.5}}],
        "projections": [{"pre": "in", "post": "out", "init": {"kind": "uniform", "low": 0.2, "high": 0.8}}],
        "learning": {"rule": "r_stdp", "lr": 0.7,
                     "stdp": {"tau_plus": 5.0, "tau_minus": 7.0, "a_plus": 0.05, "a_minus": 0.04, "w_min": 0.0,
                              "w_max": 1.0, "tau_e": 10.0, "reward": reward}},
        "run": {"ticks": 4, "batch_size": 4, "eval_every": 4, "steps_per_sample": 10},
        "backend": {"kind": backend} if backend == "reference" else {"kind": backend, "dtype": "float64",
                                                                      "device": "cpu"},
    }


@pytest.mark.parametrize("reward_kind", ["correct", "shuffled"])
@pytest.mark.parametrize("backend", ["reference", "batched"])
def test_r_stdp_through_the_executor_is_the_stdp_modules_arithmetic(backend, reward_kind):
    """The weights after four ticks are agents/stdp.py's rstdp_step over each tick's spikes (inputs
    from the encoding's draws; outputs from the tick's fixed weights, which R-STDP changes only at
    the reward), with reward 0 at every step but the last, where it is +1 for a sample whose label's
    spike count beats the other's and -1 otherwise (``correct``), or, with ``shuffled``, those
    rewards permuted across the batch by the documented draw: sample i gets sample order[i]'s, order
    the stable argsort of the uniforms keyed ("reward-shuffle", tick)."""
    model = model_from(rewarded_scenario(backend, reward_kind))
    params, reward_params = stdp_params(model.network.projections[0].learning)
    assert reward_params == RewardParams(tau_e=10.0, lr=0.7)
    sigmoid = ACTIVATIONS["sigmoid"].f
    w = model.projections["in->out"].get_weights()
    post_index, pre_index = np.divmod(np.arange(4), 2)  # canonical order: by post, then pre
    rewards_seen = []
    for tick in range(4):
        index = model.stream.indices(tick)
        x, labels = model.dataset.X_train[index], model.dataset.y_train[index]
        pre = (component_uniforms(2, ("encoding", tick), (10, 4, 2)) < sigmoid(2.0 * x)).astype(np.float64)
        matrix = w.reshape(2, 2)
        post = np.stack([(s @ matrix.T > 0.5).astype(np.float64) for s in pre])
        counts = post.sum(axis=0)
        reward = np.where(counts[np.arange(4), labels] > counts[np.arange(4), 1 - labels], 1.0, -1.0)
        if reward_kind == "shuffled":
            reward = reward[np.argsort(component_uniforms(2, ("reward-shuffle", tick), (4,)), kind="stable")]
        rewards_seen += list(reward)
        traces, eligibility = initial_traces(2, 2, w, (4,)), np.zeros((4, 4))
        for s in range(10):
            r = reward if s == 9 else np.zeros(4)
            w, traces, eligibility = rstdp_step(w, traces, eligibility, pre[s], post[s], r, pre_index, post_index,
                                                params, reward_params, np)
        model.step()
        np.testing.assert_allclose(model.projections["in->out"].get_weights(), w, rtol=0, atol=1e-12)
    assert set(rewards_seen) == {1.0, -1.0}  # both rewards were given
    assert np.abs(w - model.network.projections[0].weights).max() > 1e-3
    assert model.executor.message_counts[4] == 4 * 2  # one reward message per output neuron and tick


@pytest.mark.parametrize("reward", ["correct", "shuffled"])
def test_reward_messages_and_weights_agree_between_executors(reward):
    reference, batched = (model_from(rewarded_scenario(kind, reward)) for kind in ("reference", "batched"))
    for _ in range(4):
        reference.step()
        batched.step()
    np.testing.assert_array_equal(batched.executor.message_counts, reference.executor.message_counts)
    np.testing.assert_allclose(batched.projections["in->out"].get_weights(),
                               reference.projections["in->out"].get_weights(), rtol=0, atol=1e-12)


# ---------------------------------------------------------------------- the built-in


def test_stdp_pairs_is_the_oracle_and_ends_bimodal():
    """The built-in ``stdp-pairs`` (batched, float64): its first 20 simulated seconds are
    tests/song_abbott.py's experiment on the built-in's own draws, weight for weight; after 400 s
    most weights sit within 10% of 0 or of w_max, both modes populated with a trough between them,
    and the output rate has fallen into Song et al.'s regime (tests/test_stdp.py's criteria)."""
    model = model_from(load_scenario("stdp-pairs"))
    w0 = model.projections["inputs->neuron"].get_weights()
    params, _ = stdp_params(model.network.projections[0].learning)
    rates = []
    for _ in range(20):
        model.step()
        rates.append(float(model.last_result.outputs.sum()))
    expected, fired = drive(w0.copy(), poisson_chunks(0, 20, 1000, 1000, 15.0), params, 1.0)
    np.testing.assert_array_equal(model.projections["inputs->neuron"].get_weights(), expected)
    assert sum(rates) == fired
    for _ in range(380):
        model.step()
        rates.append(float(model.last_result.outputs.sum()))
    weights = model.projections["inputs->neuron"].get_weights() / 0.01
    low, high = float(np.mean(weights < 0.1)), float(np.mean(weights > 0.9))
    assert low + high > 0.5
    assert low > 0.2 and high > 0.2
    middle = np.mean((weights > 0.3) & (weights < 0.7))
    assert middle / 0.4 < 0.25 * min(low, high) / 0.1
    print(f"near 0: {low:.3f}, near w_max: {high:.3f}; rate {np.mean(rates[:5]):.1f} Hz (first 5 s), "
          f"{np.mean(rates[-100:]):.1f} Hz (last 100 s)")
    assert 5.0 < np.mean(rates[-100:]) < 30.0 and np.mean(rates[:5]) > 1.2 * np.mean(rates[-100:])


@pytest.mark.parametrize("backend", ["reference", "batched"])
def test_a_snapshot_holds_the_carried_state(backend):
    """With run.carry_state a snapshot (executor state) holds the neuron's state and the traces, so
    a run continued from it computes what the uninterrupted run does; the weights alone do not."""
    data = pairs_scenario(60, 250.0, 200, 4, backend)
    whole = model_from(data)
    for _ in range(4):
        whole.step()
    first = model_from(data)
    for _ in range(2):
        first.step()
    values, kinds = first.executor.state()
    assert any(key.startswith("/carried_state/") for key in values)
    weights = first.projections["in->out"].get_weights()
    for restore in (True, False):
        resumed = model_from(data)
        resumed.executor.write("weights", "in->out", weights)
        if restore:
            resumed.executor.load_state(values, kinds)
        for tick in (2, 3):
            resumed.executor.tick(tick, resumed.stream.indices(tick))
        same = np.array_equal(resumed.projections["in->out"].get_weights(), whole.projections["in->out"].get_weights())
        assert same == restore


def test_the_ray_executor_takes_stdp_and_carried_state():
    """STDP, the conductance policy, the poisson encoding and carried state run on Ray too
    (tests/test_ray.py checks that it computes what batched does): nothing is refused there."""
    from ribbed.scenarios.validation import backend_problems

    data = load_scenario("stdp-pairs").model_dump(mode="json")
    data["backend"] = {"kind": "ray"}
    assert [p for p in backend_problems(load_scenario(data)) if p.path != "backend.kind"] == []