"""Building the network: connectivity rules, seeding, levels, cycle-closing projections,
and the tick semantics of a recurrent network against torch."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import ribbed
from conftest import layered_scenario, model_from, npz_task
from ribbed.environment.connectivity import connect
from ribbed.environment.network import build_network
from ribbed.environment.stream import DataStream
from ribbed.scenarios.schema import (
    AllToAll,
    EdgeList,
    FixedInDegree,
    FixedProbability,
    NetworkxGraph,
    OneToOne,
)

# ----------------------------------------------------------------------------- connectivity


def is_canonical(pre, post, n_pre):
    flat = post * n_pre + pre
    return np.all(np.diff(flat) > 0)


@settings(max_examples=60, deadline=None)
@given(n_pre=st.integers(1, 60), n_post=st.integers(1, 60), data=st.data(), self_projection=st.booleans(),
       allow_self=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_fixed_in_degree_gives_every_neuron_exactly_k_distinct_inputs(n_pre, n_post, data, self_projection,
                                                                      allow_self, seed):
    if self_projection:
        n_post = n_pre
    available = n_pre - (1 if self_projection and not allow_self else 0)
    if available < 1:
        return
    k = data.draw(st.integers(1, available))
    pre, post = connect(FixedInDegree(rule="fixed_in_degree", k=k, allow_self_connections=allow_self),
                        n_pre, n_post, self_projection, np.random.default_rng(seed))
    assert is_canonical(pre, post, n_pre)
    np.testing.assert_array_equal(np.bincount(post, minlength=n_post), np.full(n_post, k))
    assert pre.min() >= 0 and pre.max() < n_pre
    if self_projection and not allow_self:
        assert not np.any(pre == post)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 80), p=st.floats(0.05, 1.0), allow_self=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_fixed_probability_is_canonical_and_respects_self_connections(n, p, allow_self, seed):
    pre, post = connect(FixedProbability(rule="fixed_probability", p=p, allow_self_connections=allow_self),
                        n, n, True, np.random.default_rng(seed))
    assert is_canonical(pre, post, n)
    if not allow_self:
        assert not np.any(pre == post)
    if p == 1.0:
        assert len(pre) == (n * n if allow_self else n * (n - 1))


def test_fixed_probability_makes_the_expected_number_of_synapses():
    n_pre, n_post, p = 400, 300, 0.07
    counts = [len(connect(FixedProbability(rule="fixed_probability", p=p), n_pre, n_post, False,
                          np.random.default_rng(seed))[0]) for seed in range(20)]
    mean, sd = n_pre * n_post * p, np.sqrt(n_pre * n_post * p * (1 - p))
    assert abs(np.mean(counts) - mean) < 5 * sd / np.sqrt(len(counts))
    # Every (pre, post) pair is equally likely: presynaptic indices are uniform.
    pre, _ = connect(FixedProbability(rule="fixed_probability", p=p), n_pre, n_post, False, np.random.default_rng(0))
    histogram = np.bincount(pre // 100, minlength=4)
    assert histogram.min() > 0.9 * histogram.mean()


def test_all_to_all_one_to_one_and_edge_list():
    pre, post = connect(AllToAll(rule="all_to_all"), 3, 2, False, np.random.default_rng(0))
    assert list(zip(pre, post)) == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]
    pre, post = connect(AllToAll(rule="all_to_all", allow_self_connections=False), 3, 3, True,
                        np.random.default_rng(0))
    assert len(pre) == 6 and not np.any(pre == post)
    pre, post = connect(OneToOne(rule="one_to_one"), 4, 4, False, np.random.default_rng(0))
    np.testing.assert_array_equal(pre, post)
    pre, post = connect(EdgeList(rule="edges", edges=[[2, 0], [0, 1], [1, 0]]), 3, 2, False,
                        np.random.default_rng(0))
    assert list(zip(pre, post)) == [(1, 0), (2, 0), (0, 1)]


def test_networkx_generator_edges_become_synapses():
    rule = NetworkxGraph(rule="networkx", generator="watts_strogatz_graph", params={"k": 4, "p": 0.2})
    pre, post = connect(rule, 30, 30, True, np.random.default_rng(7))
    seed = int(np.random.default_rng(7).integers(0, 2**31 - 1))
    graph = nx.watts_strogatz_graph(30, 4, 0.2, seed=seed)
    expected = {(a, b) for a, b in graph.edges()} | {(b, a) for a, b in graph.edges()}
    assert set(zip(pre.tolist(), post.tolist())) == expected
    directed = NetworkxGraph(rule="networkx", generator="gnp_random_graph", params={"p": 0.3, "directed": True})
    pre, post = connect(directed, 20, 20, True, np.random.default_rng(1))
    assert len(set(zip(pre.tolist(), post.tolist()))) == len(pre)


def test_networkx_bipartite_generator_between_two_populations():
    rule = NetworkxGraph(rule="networkx", generator="bipartite.random_graph", params={"p": 0.5})
    pre, post = connect(rule, 6, 9, False, np.random.default_rng(3))
    assert pre.max() < 6 and post.max() < 9 and len(pre) > 0


# ----------------------------------------------------------------------------- seeding


def test_each_component_has_its_own_seed(tmp_path):
    base = layered_scenario([2, 5, 2], ["tanh", "identity"])
    grown = layered_scenario([2, 5, 2], ["tanh", "identity"], extra_projections=[{"pre": "p0", "post": "p2"}])
    a, b = build_network(ribbed.load_scenario(base)), build_network(ribbed.load_scenario(grown))
    for pa, pb in zip(a.projections, b.projections):
        np.testing.assert_array_equal(pa.weights, pb.weights)  # adding a projection changes no other
    reseeded = build_network(ribbed.load_scenario({**base, "seed": 1}))
    assert not np.allclose(a.projections[0].weights, reseeded.projections[0].weights)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 50), batch=st.integers(1, 70), seed=st.integers(0, 1000), ticks=st.integers(1, 12))
def test_data_stream_covers_each_epoch_once_and_seeks_exactly(n, batch, seed, ticks):
    stream = DataStream(n, batch, seed)
    sequence = np.concatenate([stream.indices(t) for t in range(ticks)])
    for epoch_start in range(0, len(sequence) - n + 1, n):
        assert sorted(sequence[epoch_start:epoch_start + n]) == list(range(n))
    fresh = DataStream(n, batch, seed)
    np.testing.assert_array_equal(fresh.indices(ticks - 1), stream.indices(ticks - 1))


# ----------------------------------------------------------------------------- structure


def cyclic_scenario(task):
    return {
        "name": "cyclic", "seed": 2, "task": task,
        "populations": [
            {"name": "in", "size": 3, "role": "input"},
            {"name": "a", "size": 4, "activation": "tanh"},
            {"name": "b", "size": 5, "activation": "sigmoid"},
            {"name": "out", "size": 2, "role": "output", "activation": "identity"},
        ],
        "projections": [
            {"pre": "in", "post": "a"},
            {"pre": "a", "post": "b"},
            {"pre": "b", "post": "a"},  # closes the cycle a -> b -> a
            {"pre": "a", "post": "a", "connectivity": {"rule": "fixed_probability", "p": 0.5}},  # recurrent
            {"pre": "b", "post": "out"},
        ],
        "learning": {"rule": "backprop", "lr": 0.2},
        "run": {"ticks": 5, "batch_size": 6, "eval_every": 5},
    }


def test_cycle_closing_projections_are_delayed_and_levels_follow_the_rest(tmp_path):
    rng = np.random.default_rng(0)
    task = npz_task(tmp_path, rng.standard_normal((30, 3)), rng.standard_normal((30, 2)), "regression", "mse")
    network = build_network(ribbed.load_scenario(cyclic_scenario(task)))
    delayed = {p.name: p.delayed for p in network.projections}
    assert delayed == {"in->a": False, "a->b": False, "b->a": True, "a->a": True, "b->out": False}
    assert [[p.name for p in level] for level in network.levels] == [["in"], ["a"], ["b"], ["out"]]
    graph = network.neuron_graph()
    assert graph.number_of_nodes() == 14 and graph.number_of_edges() == network.n_synapses


def test_recurrent_ticks_match_truncated_backprop_in_torch(tmp_path):
    """Delayed projections deliver last tick's activity (zero at tick 0); credit does not travel
    back along them, and they learn from the activity that was delivered."""
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((30, 3)), rng.standard_normal((30, 2))
    model = model_from(cyclic_scenario(npz_task(tmp_path, X, Y, "regression", "mse")))
    lr = 0.2
    weights, masks = {}, {}
    for name, projection in model.projections.items():
        matrix = projection.get_weights(format="array")
        masks[name] = torch.tensor(~np.isnan(matrix))
        weights[name] = torch.tensor(np.nan_to_num(matrix), requires_grad=True)
    biases = {name: torch.tensor(p.get_biases(), requires_grad=True)
              for name, p in model.populations.items() if p.info.role != "input"}
    previous = {"a": torch.zeros(6, 4, dtype=torch.float64), "b": torch.zeros(6, 5, dtype=torch.float64)}

    def w(name):
        return weights[name] * masks[name]

    for tick in range(5):
        index = model.stream.indices(tick)
        x, target = torch.tensor(X[index]), torch.tensor(Y[index])
        a = torch.tanh(x @ w("in->a") + previous["b"] @ w("b->a") + previous["a"] @ w("a->a") + biases["a"])
        b = torch.sigmoid(a @ w("a->b") + biases["b"])
        out = b @ w("b->out") + biases["out"]
        loss = F.mse_loss(out, target)
        loss.backward()
        with torch.no_grad():
            for tensor in [*weights.values(), *biases.values()]:
                tensor -= lr * tensor.grad
                tensor.grad = None
        previous = {"a": a.detach(), "b": b.detach()}
        model.step()
        assert model.last_result.loss == pytest.approx(float(loss.detach()), rel=1e-10)
    for name, projection in model.projections.items():
        np.testing.assert_allclose(projection.get_weights(), weights[name].detach().numpy()[
            projection.info.pre_idx, projection.info.post_idx], rtol=1e-9, atol=1e-14)


def test_agents_are_mesa_agents_with_global_contiguous_ids():
    model = ribbed.NetworkModel(ribbed.load_scenario("xor"))
    ids = sorted(agent.unique_id for agent in model.agents)
    assert ids == list(range(model.network.n_neurons))
    for name, population in model.populations.items():
        assert sorted(a.unique_id for a in population.agents) == list(population.info.ids)
        assert all(a.population == name for a in population.agents)
    hidden = model.populations["hidden"].agents
    assert all(agent.in_degree == 2 for agent in hidden)


def test_evaluation_reads_cycle_closing_inputs_as_zero(tmp_path):
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((30, 3)), rng.standard_normal((30, 2))
    model = model_from(cyclic_scenario(npz_task(tmp_path, X, Y, "regression", "mse")))
    model.step()  # leaves activity in flight on the delayed projections
    w = {name: np.nan_to_num(p.get_weights(format="array")) for name, p in model.projections.items()}
    b = {name: p.get_biases() for name, p in model.populations.items()}
    a = np.tanh(X @ w["in->a"] + b["a"])  # b->a and a->a read as zero
    hidden_b = 0.5 * (1 + np.tanh(0.5 * (a @ w["a->b"] + b["b"])))
    expected = hidden_b @ w["b->out"] + b["out"]
    np.testing.assert_allclose(model.executor.predict(X).outputs, expected, rtol=1e-12)


def test_fixed_probability_with_a_vanishing_probability_and_a_large_projection():
    pre, _ = connect(FixedProbability(rule="fixed_probability", p=1e-300), 4000, 5000, False,
                     np.random.default_rng(0))
    assert len(pre) == 0
    n, p = 6000, 0.002  # 3.6e7 possible synapses: the binomial path
    pre, post = connect(FixedProbability(rule="fixed_probability", p=p), n, n, True, np.random.default_rng(1))
    assert is_canonical(pre, post, n) and pre.max() < n and post.max() < n
    assert abs(len(pre) - n * n * p) < 5 * np.sqrt(n * n * p)
