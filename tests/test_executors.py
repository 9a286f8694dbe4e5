"""The batched executor against the reference executor (DESIGN.md, "One semantics, three
executors"): on generated scenarios, in float64, they agree on the loss of every tick and on
every weight, bias and optimizer state after 20 ticks, to a relative 1e-7; they send the same
messages; their agents read the same."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from conftest import model_from, write_npz
from ribbed import RibbedWarning, ScenarioError

RTOL = 1e-7
#: An absolute floor, for values that pass near zero. The executors sum in different orders, so
#: a gradient that nearly cancels differs in its last digits relative to its own (tiny) size;
#: Adam normalizes each step by the gradient's size, so that relative difference becomes an
#: absolute one of about lr x (relative difference) in the weight, whatever the weight's size.
ATOL = 1e-8
TICKS = 20
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
RULES = ["backprop", "feedback_alignment", "direct_feedback_alignment", "hebbian"]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict:
    """npz tasks by (n_inputs, problem): 3 classes, or 2 regression targets."""
    folder = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(7)
    tasks = {}
    for n_in in range(2, 6):
        X = rng.standard_normal((40, n_in))
        labels = np.arange(40) % 3
        path = write_npz(folder, X, labels, name=f"c{n_in}.npz")
        tasks[n_in, "classification"] = {"kind": "npz", "path": str(path), "problem": "classification",
                                         "loss": "cross_entropy"}
        targets = np.stack([np.sin(X[:, 0]), X[:, 1] * X[:, 0]], axis=1)
        path = write_npz(folder, X, targets, name=f"r{n_in}.npz")
        tasks[n_in, "regression"] = {"kind": "npz", "path": str(path), "problem": "regression", "loss": "mse"}
    for steps in range(2, 6):  # sequences for 4 inputs per step (the timed scenarios below)
        X = rng.standard_normal((40, 4 * steps))
        path = write_npz(folder, X, np.arange(40) % 3, name=f"s{steps}.npz")
        tasks[4 * steps, "classification"] = {"kind": "npz", "path": str(path), "problem": "classification",
                                              "loss": "cross_entropy"}
    return tasks


@st.composite
def connectivities(draw, n_pre: int, n_post: int, same: bool):
    rules = ["all_to_all", "fixed_probability", "fixed_in_degree", "edges", "networkx"]
    if n_pre == n_post:
        rules.append("one_to_one")
    rule = draw(st.sampled_from(rules))
    if rule in ("all_to_all", "one_to_one"):
        return rule
    if rule == "fixed_probability":
        return {"rule": rule, "p": draw(st.floats(0.3, 1.0))}
    if rule == "fixed_in_degree":
        return {"rule": rule, "k": draw(st.integers(1, n_pre))}
    if rule == "networkx":
        if same:
            return {"rule": rule, "generator": "gnp_random_graph", "params": {"p": 0.6, "directed": True}}
        return {"rule": rule, "generator": "bipartite.random_graph", "params": {"p": 0.7}}
    pairs = draw(st.lists(st.tuples(st.integers(0, n_pre - 1), st.integers(0, n_post - 1)), min_size=1,
                          max_size=12, unique=True))
    return {"rule": "edges", "edges": [list(p) for p in pairs]}


@st.composite
def guidance(draw) -> dict:
    """A guide, coupling and meta-controller for a hidden population."""
    guide = draw(st.sampled_from([
        "linear", {"kind": "linear", "forget": 1.0, "ridge": 0.1}, "mlp", {"kind": "mlp", "optimizer": "sgd", "hidden": 3},
        {"kind": "tree", "refit_every": 3, "min_samples_leaf": 2, "max_depth": 3, "buffer": 50},
    ]))
    coupling = draw(st.sampled_from([
        "direct", {"kind": "hash", "bits": 2, "rehash_every": 4}, {"kind": "hash", "bits": 1, "rehash_every": 7},
        {"kind": "tree", "leaf_size": 2, "reorder_every": 5}, {"kind": "tree", "leaf_size": 1, "reorder_every": 3},
    ]))
    meta = draw(st.sampled_from(["confidence", {"kind": "confidence", "decay": 0.5, "alpha_max": 0.8},
                                 {"kind": "fixed", "alpha": 0.4}, "learned", {"kind": "learned", "lr": 2.0}]))
    return {"guide": guide, "coupling": coupling, "meta": meta}


@st.composite
def scenarios(draw, datasets: dict) -> dict:
    """A small network: input, 1-3 hidden populations, output; a rule, optimizer and chiral
    setting per population; random connectivity and storage per projection; sometimes a skip
    projection and a cycle-closing one."""
    n_in = draw(st.integers(2, 5))
    problem = draw(st.sampled_from(["classification", "regression"]))
    n_out = 3 if problem == "classification" else 2
    hidden = draw(st.lists(st.integers(1, 6), min_size=1, max_size=3))
    populations = [{"name": "in", "size": n_in, "role": "input"}]
    for i, size in enumerate(hidden):
        rule = draw(st.sampled_from(RULES))
        learning = {"rule": rule, "optimizer": draw(st.sampled_from(["sgd", "momentum", "adam"])),
                    "lr": draw(st.sampled_from([0.01, 0.05])),
                    "kappa": draw(st.sampled_from([0.0, 0.0, 0.5, -0.7]))}
        population = {"name": f"h{i}", "size": size, "learning": learning,
                      "activation": draw(st.sampled_from(["tanh", "relu", "sigmoid", "leaky_relu", "identity"]))}
        if rule == "hebbian":
            learning["variant"] = draw(st.sampled_from(["oja", "sanger"]))
            learning["lr"] = 0.01
            population.update(activation="identity", bias=False)
        elif draw(st.integers(0, 2)) == 0:
            population.update(draw(guidance()))
        populations.append(population)
    populations.append({"name": "out", "size": n_out, "role": "output",
                        "activation": draw(st.sampled_from(["identity", "tanh"]))})
    sizes = {p["name"]: p["size"] for p in populations}
    names = [p["name"] for p in populations]

    def projection(pre: str, post: str, name: str | None = None) -> dict:
        return {**({"name": name} if name else {}), "pre": pre, "post": post,
                "connectivity": draw(connectivities(sizes[pre], sizes[post], pre == post)),
                "storage": draw(st.sampled_from(["auto", "dense", "sparse"])),
                "frozen": draw(st.booleans()) if draw(st.integers(0, 5)) == 0 else False}

    projections = [projection(a, b) for a, b in zip(names, names[1:])]
    if draw(st.booleans()):  # a skip projection
        projections.append(projection(draw(st.sampled_from(names[:-2])), "out", "skip"))
    if draw(st.booleans()):  # a cycle-closing projection (delayed): back to a hidden population
        projections.append(projection(draw(st.sampled_from(names[1:])), draw(st.sampled_from(names[1:-1])), "cycle"))
    guided = any("guide" in p for p in populations)
    return {
        "schedule": {"backward_every": draw(st.sampled_from([1, 2, 3])) if guided else 1},
        "name": "generated", "seed": draw(st.integers(0, 2**31)), "task": datasets[n_in, problem],
        "populations": populations, "projections": projections,
        "learning": {"rule": "backprop", "lr": 0.05},
        "run": {"ticks": TICKS, "batch_size": draw(st.integers(1, 6)), "eval_every": TICKS},
    }


def pair(data: dict, device: str = "cpu"):
    reference = model_from({**data, "backend": {"kind": "reference"}})
    batched = model_from({**data, "backend": {"kind": "batched", "dtype": "float64", "device": device}})
    return reference, batched


def assert_same_state(reference, batched) -> None:
    for name, projection in reference.projections.items():
        np.testing.assert_allclose(batched.projections[name].get_weights(), projection.get_weights(),
                                   rtol=RTOL, atol=ATOL, err_msg=f"weights of {name}")
    for name, population in reference.populations.items():
        np.testing.assert_allclose(batched.populations[name].get_biases(), population.get_biases(),
                                   rtol=RTOL, atol=ATOL, err_msg=f"biases of {name}")
    for a, b in zip(reference.neurons, batched.neurons):
        for key, state in a.optimizer_state().items():
            for field, value in state.items():
                np.testing.assert_allclose(b.optimizer_state()[key][field], value, rtol=RTOL, atol=ATOL,
                                           err_msg=f"{field} of neuron {a.unique_id} ({key})")


def assert_same_guidance(reference, batched) -> None:
    """Guided populations: the same guidance, alpha and clusters; tree guides bit for bit."""
    for name, guided in reference.network.guided.items():
        expected, got = ({key: model.executor.read(key, name) for key in ("alpha", "cluster", "guidance")}
                         for model in (reference, batched))
        np.testing.assert_array_equal(got["cluster"], expected["cluster"], err_msg=f"clusters of {name}")
        if guided.guide.kind == "tree" and guided.evolution is None:  # an evolving one may serve an mlp
            np.testing.assert_array_equal(got["guidance"], expected["guidance"], err_msg=f"tree guidance of {name}")
        else:
            np.testing.assert_allclose(got["guidance"], expected["guidance"], rtol=RTOL, atol=ATOL,
                                       err_msg=f"guidance of {name}")
        np.testing.assert_allclose(got["alpha"], expected["alpha"], rtol=RTOL, atol=ATOL, err_msg=f"alpha of {name}")


def assert_same_prediction(reference, batched) -> None:
    X = reference.dataset.X_test
    expected, got = reference.executor.predict(X), batched.executor.predict(X)
    for field in ("outputs", "activation_mean", "activation_std"):
        np.testing.assert_allclose(getattr(got, field), getattr(expected, field), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.filterwarnings("ignore::ribbed.RibbedWarning")
@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_batched_agrees_with_reference_on_generated_scenarios(datasets, device, data):
    assert_pair_agrees(data.draw(scenarios(datasets)), device)


def assert_pair_agrees(scenario: dict, device: str = "cpu") -> None:
    """The reference and batched executors agree on ``scenario`` tick by tick (loss, guidance),
    and at the end (state, message counts, predictions)."""
    try:
        reference, batched = pair(scenario, device)
    except ScenarioError as exc:  # a random rule that drew no synapse at all
        assume("made no synapses" not in str(exc))
        raise
    for _ in range(TICKS):
        reference.step()
        batched.step()
        assert batched.last_result.loss == pytest.approx(reference.last_result.loss, rel=RTOL, abs=ATOL)
        assert_same_guidance(reference, batched)
    assert_same_state(reference, batched)
    np.testing.assert_array_equal(batched.executor.message_counts, reference.executor.message_counts)
    assert_same_prediction(reference, batched)


def recurrent_scenario(task: dict, rule: str = "backprop", optimizer: str = "adam") -> dict:
    return {
        "name": "recurrent", "seed": 3, "task": task,
        "populations": [
            {"name": "in", "size": 4, "role": "input"},
            {"name": "a", "size": 6, "activation": "tanh"},
            {"name": "b", "size": 5, "activation": "relu"},
            {"name": "out", "size": 3 if task["problem"] == "classification" else 2, "role": "output",
             "activation": "identity"},
        ],
        "projections": [
            {"pre": "in", "post": "a"},
            {"pre": "a", "post": "b", "connectivity": {"rule": "fixed_in_degree", "k": 3}},
            {"pre": "b", "post": "a", "connectivity": {"rule": "fixed_probability", "p": 0.5}},  # closes a cycle
            {"pre": "b", "post": "b", "connectivity": "one_to_one", "storage": "sparse"},  # onto itself
            {"pre": "b", "post": "out"},
        ],
        "learning": {"rule": rule, "optimizer": optimizer, "lr": 0.02, "kappa": 0.3},
        "run": {"ticks": TICKS, "batch_size": 5, "eval_every": TICKS},
    }


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("rule", ["backprop", "feedback_alignment"])
def test_a_recurrent_network_agrees_tick_by_tick(datasets, device, rule):
    reference, batched = pair(recurrent_scenario(datasets[4, "classification"], rule), device)
    assert [p.delayed for p in reference.network.projections] == [False, False, True, True, False]
    for _ in range(TICKS):
        reference.step()
        batched.step()
        assert batched.last_result.loss == pytest.approx(reference.last_result.loss, rel=RTOL)
        np.testing.assert_allclose(batched.last_result.outputs, reference.last_result.outputs, rtol=RTOL, atol=ATOL)
    assert_same_state(reference, batched)


def test_agent_views_read_like_reference_agents(datasets):
    """Mesa-style analysis code runs unchanged on both executors."""
    reference, batched = pair(recurrent_scenario(datasets[4, "regression"]))
    reference.run(6)
    batched.run(6)

    def analysis(model) -> list:
        return [(agent.unique_id, agent.population, agent.in_degree, agent.bias, agent.weight_norm,
                 agent.activation_mean, agent.activation_std) for agent in model.agents]

    for (a, b) in zip(analysis(reference), analysis(batched)):
        assert a[:3] == b[:3]
        np.testing.assert_allclose(b[3:], a[3:], rtol=RTOL, atol=ATOL)
    for a, b in zip(reference.neurons, batched.neurons):
        np.testing.assert_allclose(b.incoming_weights(), a.incoming_weights(), rtol=RTOL, atol=ATOL)
        for field in ("u", "y", "delta"):
            expected = getattr(a, field)
            if a.population_info.role != "input" or field != "delta":
                np.testing.assert_allclose(getattr(b, field), expected, rtol=RTOL, atol=ATOL)
    assert len(batched.agents) == batched.network.n_neurons
    assert len(batched.populations["b"].agents) == 5
    np.testing.assert_array_equal(batched.metrics["messages"], reference.metrics["messages"])
    np.testing.assert_allclose(batched.agent_metrics["weight_norm"], reference.agent_metrics["weight_norm"],
                               rtol=RTOL)


def test_set_weights_reach_the_batched_tick(datasets):
    reference, batched = pair(recurrent_scenario(datasets[4, "classification"], "backprop", "sgd"))
    rng = np.random.default_rng(0)
    for name in reference.projections:
        values = rng.normal(size=len(reference.projections[name]))
        reference.projections[name].set_weights(values)
        batched.projections[name].set_weights(values)
    reference.populations["a"].set_biases(np.full(6, 0.1))
    batched.populations["a"].set_biases(np.full(6, 0.1))
    reference.step()
    batched.step()
    assert batched.last_result.loss == pytest.approx(reference.last_result.loss, rel=RTOL)
    assert_same_state(reference, batched)


def test_float32_is_the_batched_default_and_float64_on_request(datasets):
    scenario = recurrent_scenario(datasets[4, "classification"])
    default = model_from({**scenario, "backend": {"kind": "batched", "device": "cpu"}})
    assert default.executor.dtype_name == "float32"
    assert default.executor.projections[0].weights.dtype == torch.float32
    reference = model_from({**scenario, "backend": {"kind": "reference"}})
    reference.run(TICKS)
    default.run(TICKS)
    # float32 follows the float64 trajectory to float32 accuracy.
    np.testing.assert_allclose(default.projections["in->a"].get_weights(), reference.projections["in->a"].get_weights(),
                               rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("storage, layout", [("auto", "sparse"), ("dense", "dense"), ("sparse", "sparse")])
def test_storage_is_chosen_by_density_unless_set(datasets, storage, layout):
    scenario = recurrent_scenario(datasets[4, "classification"])
    scenario["projections"][3]["storage"] = storage  # one-to-one: density 1/5
    scenario["backend"] = {"kind": "batched", "sparse_threshold": 0.25}
    model = model_from(scenario)
    assert model.executor.projections[3].layout.layout == layout
    assert model.executor.projections[0].layout.layout == "dense"  # all-to-all


def test_evaluation_in_chunks_gives_the_same_statistics(datasets, monkeypatch):
    """Large networks predict the held-out set in chunks; the statistics must not change."""
    import ribbed.scheduler.batched.executor as batched_module

    reference, batched = pair(recurrent_scenario(datasets[4, "classification"]))
    reference.run(5)
    monkeypatch.setattr(batched_module, "PREDICT_CHUNK", 3 * batched.network.n_neurons)  # 3 samples a chunk
    batched.run(5)
    assert_same_prediction(reference, batched)


def dfa_timing_scenario(task: dict, output_feeds_dfa: bool) -> dict:
    """DFA populations that the output's delta reaches late: one at the output's level, and
    (optionally) one fed by the output, above it."""
    populations = [
        {"name": "in", "size": 4, "role": "input"},
        {"name": "h", "size": 5, "activation": "tanh"},
        {"name": "side", "size": 3, "activation": "tanh", "learning": {"rule": "direct_feedback_alignment"}},
        {"name": "out", "size": 3, "role": "output", "activation": "identity"},
    ]
    projections = [{"pre": "in", "post": "h"}, {"pre": "h", "post": "out"}, {"pre": "h", "post": "side"}]
    if output_feeds_dfa:
        populations.insert(3, {"name": "after", "size": 4, "activation": "relu",
                               "learning": {"rule": "direct_feedback_alignment"}})
        projections += [{"pre": "out", "post": "after"}, {"pre": "after", "post": "h"}]
    return {"name": "dfa-timing", "seed": 5, "task": task, "populations": populations, "projections": projections,
            "learning": {"rule": "backprop", "lr": 0.05, "optimizer": "momentum"},
            "run": {"ticks": TICKS, "batch_size": 4, "eval_every": TICKS}}


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("output_feeds_dfa", [False, True])
def test_dfa_populations_the_output_error_reaches_late_agree(datasets, output_feeds_dfa, steps):
    """Untimed, and through time (where the output sends its delta of each step only to the DFA
    neurons below its level: the message counts agree)."""
    data = dfa_timing_scenario(datasets[4, "classification"], output_feeds_dfa)
    data["run"]["steps_per_sample"] = steps
    with pytest.warns(RibbedWarning, match="'side' learns by direct feedback alignment but acts at or after"):
        reference, batched = pair(data)
    levels = {p.name: p.level for p in reference.network.populations.values()}
    assert levels["side"] == levels["out"]
    if output_feeds_dfa:
        assert levels["after"] > levels["out"]
    for _ in range(TICKS):
        reference.step()
        batched.step()
        assert batched.last_result.loss == pytest.approx(reference.last_result.loss, rel=RTOL, abs=ATOL)
    assert_same_state(reference, batched)
    np.testing.assert_array_equal(batched.executor.message_counts, reference.executor.message_counts)


# --------------------------------------------------------------------------- time within a tick

surrogates = st.builds(dict, kind=st.sampled_from(["atan", "fast_sigmoid", "sigmoid"]),
                       parameter=st.one_of(st.none(), st.floats(0.5, 30)))
firing_policies = st.one_of(
    st.just({}),
    st.builds(dict, policy=st.just("threshold"), threshold=st.floats(-0.5, 1.0), strict=st.booleans(),
              refractory=st.integers(0, 2), surrogate=surrogates),
    st.builds(dict, policy=st.just("lif"), beta=st.floats(0.0, 1.0), threshold=st.floats(0.1, 1.5),
              reset=st.sampled_from(["subtract", "zero", "none"]), reset_delay=st.booleans(), refractory=st.integers(0, 2),
              surrogate=surrogates),
    st.builds(dict, policy=st.just("random"), temperature=st.floats(0.2, 3.0), refractory=st.integers(0, 2),
              surrogate=surrogates),
)


#: The policies of the STDP test below, whose other projections are frozen (it tests the STDP wiring, not
#: BPTT): thresholds away from 0, where an input current that is exactly 0 (no input spike, no bias) sits.
stdp_firing_policies = st.one_of(
    st.builds(dict, policy=st.just("threshold"), threshold=st.floats(0.1, 1.0), strict=st.booleans(),
              refractory=st.integers(0, 2), surrogate=surrogates),
    st.builds(dict, policy=st.just("lif"), beta=st.floats(0.0, 1.0), threshold=st.floats(0.1, 1.5),
              reset=st.sampled_from(["subtract", "zero", "none"]), reset_delay=st.booleans(), surrogate=surrogates),
    st.builds(dict, policy=st.just("random"), temperature=st.floats(0.2, 3.0), refractory=st.integers(0, 2),
              surrogate=surrogates),
)


@st.composite
def timed_scenarios(draw, datasets: dict, stdp: bool = False) -> dict:
    """The recurrent scenario (cycles, a sparse self-projection, chiral kappa, Adam) with time in
    its tick: steps, an encoding (a sequence of T chunks of 4 features among them), a firing policy
    per population, the output's readout, and a BPTT window or none; with ``stdp``, spiking
    populations (a spiking encoding, STDP and R-STDP projections where both ends spike)."""
    rules = ["backprop", "feedback_alignment"] + ([] if stdp else ["direct_feedback_alignment"])
    data = recurrent_scenario(datasets[4, "classification"], draw(st.sampled_from(rules)))
    steps = draw(st.integers(1, 5))
    data["run"] = {**data["run"], "steps_per_sample": steps}
    encoding = draw(st.sampled_from(
        [{"kind": "direct"}, {"kind": "rate", "gain": 2.0}, {"kind": "latency"}, {"kind": "sequence"}] if not stdp else
        [{"kind": "rate", "gain": 2.0}, {"kind": "latency"}, {"kind": "poisson", "rate_hz": 300.0, "dt": 1.0}]))
    task = datasets[4 * steps, "classification"] if encoding["kind"] == "sequence" else data["task"]
    data["task"] = {**task, "encoding": encoding}
    if steps > 1 and draw(st.booleans()):
        data["run"]["bptt_window"] = draw(st.integers(1, steps))
    a, b, out = data["populations"][1], data["populations"][2], data["populations"][3]
    for population in (a, b, out):
        firing = draw(firing_policies if not stdp else stdp_firing_policies)
        if firing:
            population["firing"] = firing
    readouts = ["mean", "last"] + (["count"] if out.get("firing") else []) + (
        ["membrane"] if out.get("firing", {}).get("policy") == "lif" else [])
    out["readout"] = draw(st.sampled_from(readouts))
    # No chiral modulation with time in the tick: it scales a step by the signs of a neuron's
    # gradients, zero counting as a sign, and spikes (0/1) and the `last` readout make many of a
    # tick's gradients sums that cancel: an exact 0 on one executor is rounding noise (1e-20) of
    # either sign on the other, and the sign turns that into a step difference of order lr * kappa
    # (found by this strategy with 40 examples, on main's code too: threshold policies at 0 with
    # kappa 0.3 and one step). The untimed strategy above keeps kappa.
    data["learning"] = {**data["learning"], "kappa": 0.0}
    for what in (f"rule {data['learning']['rule']}", f"encoding {encoding['kind']}", f"readout {out['readout']}",
                 f"bptt_window {'set' if 'bptt_window' in data['run'] else 'full'}"):
        event(what)  # (pytest --hypothesis-show-statistics shows how often each was drawn)
    if not stdp:
        return data
    spiking = {p["name"] for p in (a, b, out) if p.get("firing")}
    if data["task"]["encoding"]["kind"] != "direct":
        spiking.add("in")
    reward = draw(st.sampled_from(["correct", "negative_loss"]))
    for projection in data["projections"]:  # STDP or R-STDP where both ends spike
        if projection["pre"] in spiking and projection["post"] in spiking and draw(st.booleans()):
            projection["learning"] = {"rule": draw(st.sampled_from(["stdp", "r_stdp"])),
                                      "lr": draw(st.floats(0.1, 2.0)), "stdp": draw(stdp_settings(reward))}
        else:
            projection["frozen"] = True
    return data


@st.composite
def stdp_settings(draw, reward: str) -> dict:
    """STDP parameters with weight bounds around the recurrent scenario's initial weights."""
    w_min = draw(st.floats(-1.0, -0.3))
    return {"tau_plus": draw(st.floats(0.5, 30.0)), "tau_minus": draw(st.floats(0.5, 30.0)),
            "a_plus": draw(st.floats(0.0, 0.3)), "a_minus": draw(st.floats(0.0, 0.3)), "w_min": w_min,
            "w_max": w_min + draw(st.floats(0.6, 2.0)), "pairing": draw(st.sampled_from(["all_to_all", "nearest"])),
            "bounds": draw(st.sampled_from(["hard", "soft"])), "dt": draw(st.floats(0.5, 2.0)),
            "tau_e": draw(st.floats(1.0, 50.0)), "reward": reward}


@pytest.mark.filterwarnings("ignore::ribbed.RibbedWarning")
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_batched_agrees_with_reference_with_time_in_the_tick(datasets, data):
    """Spiking populations, T steps, every policy, encoding and readout: the same losses, state,
    message counts (spike messages included) and predictions (docs/semantics.md, "Time within a tick")."""
    assert_pair_agrees(data.draw(timed_scenarios(datasets)))


@pytest.mark.filterwarnings("ignore::ribbed.RibbedWarning")
@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_batched_agrees_with_reference_with_stdp(datasets, data):
    """STDP and R-STDP projections (random parameters, both pairings and bounds) where both ends
    spike, the other projections frozen (biases still learn by the gradient): the same weights after
    20 ticks (the STDP weights identical: the same arithmetic, summed in the same order, wherever
    its inputs are exact: spikes, and the ``correct`` reward; R-STDP with the ``negative_loss``
    reward takes each sample's loss, which the executors compute in libraries of their own, so there
    they agree to rounding), losses, messages (reward messages included) and predictions
    (docs/semantics.md, "STDP in a tick")."""
    scenario = data.draw(timed_scenarios(datasets, stdp=True))
    assert_pair_agrees(scenario)
    reference, batched = pair(scenario)
    for _ in range(TICKS):
        reference.step()
        batched.step()
    for name, projection in reference.projections.items():
        info = reference.network.projections[projection.info.index]
        if not info.stdp:
            continue
        got, expected = batched.projections[name].get_weights(), projection.get_weights()
        if info.learning.rule == "r_stdp" and info.learning.stdp.reward == "negative_loss":
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15, err_msg=f"R-STDP weights of {name}")
        else:
            np.testing.assert_array_equal(got, expected, err_msg=f"STDP weights of {name}")
