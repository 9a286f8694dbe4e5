"""Learning rules against their published definitions: feedback alignment (Lillicrap et al.
2016), direct feedback alignment (Nokland 2016), chiral modulation, Oja's rule (Oja 1982)
and Sanger's generalized Hebbian algorithm (Sanger 1989); optimizers against torch.optim."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from conftest import layered_scenario, model_from, npz_task
from ribbed.agents.rules import chiral_scale
from torch_reference import TorchMirror


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("rules")


def classification_task(folder, n_features=5, n_classes=3, n=48, seed=0, loss="cross_entropy"):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_features))
    y = rng.integers(0, n_classes, n)
    y[:n_classes] = np.arange(n_classes)
    return npz_task(folder, X, y, "classification", loss)


def snapshot(model):
    return ({name: p.get_weights() for name, p in model.projections.items()},
            {name: p.get_biases() for name, p in model.populations.items() if p.info.role != "input"})


def assert_same_state(a, b, rtol=1e-12):
    for name, projection in a.projections.items():
        np.testing.assert_allclose(projection.get_weights(), b.projections[name].get_weights(), rtol=rtol, atol=1e-15)
    for name, population in a.populations.items():
        np.testing.assert_allclose(population.get_biases(), b.populations[name].get_biases(), rtol=rtol, atol=1e-15)


# ----------------------------------------------------------------------------- feedback alignment


def test_feedback_alignment_with_feedback_equal_to_weights_is_backprop(data_dir):
    task = classification_task(data_dir)
    sizes, activations = [5, 7, 6, 3], ["tanh", "relu", "identity"]
    backprop = model_from(layered_scenario(sizes, activations, task=task, lr=0.3, batch_size=16))
    aligned = model_from(layered_scenario(sizes, activations, task=task, lr=0.3, batch_size=16,
                                          rule="feedback_alignment"))
    for name, projection in aligned.projections.items():
        feedback = projection.get_feedback()
        assert feedback is not None and not np.allclose(feedback, projection.get_weights())
        projection.set_feedback(projection.get_weights())
    assert_same_state(backprop, aligned)  # the weights are drawn from the same seed, whatever the rule
    backprop.step()
    aligned.step()
    assert_same_state(backprop, aligned)


def test_feedback_alignment_uses_its_random_feedback(data_dir):
    """With its own random B the hidden update differs from backprop's; the output layer's does not."""
    task = classification_task(data_dir)
    sizes, activations = [5, 7, 3], ["tanh", "identity"]
    backprop = model_from(layered_scenario(sizes, activations, task=task, lr=0.3, batch_size=16))
    aligned = model_from(layered_scenario(sizes, activations, task=task, lr=0.3, batch_size=16,
                                          rule="feedback_alignment"))
    backprop.step()
    aligned.step()
    np.testing.assert_allclose(aligned.projections["p1->p2"].get_weights(),
                               backprop.projections["p1->p2"].get_weights(), rtol=1e-12)
    assert not np.allclose(aligned.projections["p0->p1"].get_weights(),
                           backprop.projections["p0->p1"].get_weights(), rtol=1e-6)


# ----------------------------------------------------------------------------- direct feedback alignment


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_direct_feedback_alignment_matches_its_closed_form(data_dir, loss):
    """Nokland (2016): e = dL/da_out; hidden delta = f'(u) * (D e); dW = -lr <x delta>."""
    lr = 0.3
    model = model_from(layered_scenario([5, 6, 3], ["tanh", "identity"], task=classification_task(data_dir, loss=loss),
                                        lr=lr, batch_size=16, rule="direct_feedback_alignment", loss=loss))
    (w1, w2), biases = [p.get_weights(format="array") for p in model.projections.values()], snapshot(model)[1]
    D = model.populations["p1"].get_dfa_matrix()
    assert D.shape == (6, 3)
    index = model.stream.indices(0)
    X, T = model.dataset.X_train[index], model.targets_train[index]
    B = X.shape[0]

    u1 = X @ w1 + biases["p1"]
    h = np.tanh(u1)
    logits = torch.tensor(h @ w2 + biases["p2"], requires_grad=True)
    target = torch.tensor(T)
    loss_value = F.cross_entropy(logits, target.argmax(1)) if loss == "cross_entropy" else F.mse_loss(logits, target)
    loss_value.backward()
    e = logits.grad.numpy() * B  # per-sample output error
    delta_h = (1 - h**2) * (e @ D.T)

    model.step()
    w1_after, w2_after = [p.get_weights(format="array") for p in model.projections.values()]
    np.testing.assert_allclose(w2_after - w2, -lr * h.T @ e / B, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(w1_after - w1, -lr * X.T @ delta_h / B, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(model.populations["p2"].get_biases() - biases["p2"], -lr * e.mean(0), rtol=1e-9)
    np.testing.assert_allclose(model.populations["p1"].get_biases() - biases["p1"], -lr * delta_h.mean(0), rtol=1e-9)


def test_direct_feedback_alignment_broadcasts_only_output_errors(data_dir):
    model = model_from(layered_scenario([5, 6, 4, 3], ["tanh", "tanh", "identity"], task=classification_task(data_dir),
                                        rule="direct_feedback_alignment", batch_size=4))
    model.step()
    counts = model.executor.message_counts
    # task -> 3 outputs, then each output broadcasts to the 6 + 4 hidden neurons; nothing else.
    assert counts[1] == 3 + 3 * (6 + 4)


def test_dfa_population_feeding_a_backprop_layer_takes_only_the_broadcast(data_dir):
    """in -> h1 (DFA) -> h2 -> out (backprop): h2 learns from propagated errors, h1 from the
    output error through its own D, and h2 sends nothing back to h1."""
    lr = 0.3
    data = layered_scenario([5, 4, 2, 3], ["tanh", "tanh", "identity"], task=classification_task(data_dir), lr=lr,
                            batch_size=16)
    data["populations"][1]["learning"] = {"rule": "direct_feedback_alignment"}
    model = model_from(data)
    w = [p.get_weights(format="array") for p in model.projections.values()]
    biases = snapshot(model)[1]
    D = model.populations["p1"].get_dfa_matrix()
    index = model.stream.indices(0)
    X, T = model.dataset.X_train[index], model.targets_train[index]
    B = len(X)
    h1 = np.tanh(X @ w[0] + biases["p1"])
    h2 = np.tanh(h1 @ w[1] + biases["p2"])
    logits = h2 @ w[2] + biases["p3"]
    p = np.exp(logits - logits.max(1, keepdims=True))
    e = p / p.sum(1, keepdims=True) - T
    delta2 = (1 - h2**2) * (e @ w[2].T)
    delta1 = (1 - h1**2) * (e @ D.T)
    model.step()
    after = [p.get_weights(format="array") for p in model.projections.values()]
    for before, now, grad in zip(w, after, [X.T @ delta1 / B, h1.T @ delta2 / B, h2.T @ e / B]):
        np.testing.assert_allclose(now - before, -lr * grad, rtol=1e-9, atol=1e-15)
    # task -> 3 outputs, outputs -> h2 along 2*3 synapses, outputs -> h1 broadcast 3*4.
    assert model.executor.message_counts[1] == 3 + 6 + 12


def test_dfa_population_learns_when_the_readout_is_frozen(data_dir):
    """The output error is computed for the broadcast even when the output layer learns nothing."""
    data = layered_scenario([5, 6, 3], ["tanh", "identity"], task=classification_task(data_dir),
                            rule="direct_feedback_alignment", batch_size=8)
    data["projections"][1]["frozen"] = True
    data["populations"][2]["bias"] = False
    model = model_from(data)
    before = model.projections["p0->p1"].get_weights()
    model.step()
    assert not np.allclose(model.projections["p0->p1"].get_weights(), before)
    np.testing.assert_array_equal(model.network.broadcast_targets, list(model.populations["p1"].info.ids))


def test_sanger_over_two_sparse_projections_follows_the_generalized_hebbian_rule(data_dir):
    """One tick against -<y_j (x_i - sum_{k<=j} y_k W_ik)> over the concatenated inputs."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((40, 3))
    lr = 0.01
    data = layered_scenario([3, 3], ["identity"], task=npz_task(data_dir, X, np.zeros((40, 3)), "regression", "mse"),
                            rule="hebbian", learning={"variant": "sanger"}, lr=lr, bias=False, batch_size=10)
    data["populations"].insert(1, {"name": "side", "size": 2, "activation": "tanh"})
    data["projections"] = [
        {"name": "A", "pre": "side", "post": "p1", "connectivity": {"rule": "edges", "edges": [[0, 2], [1, 2]]}},
        {"name": "B", "pre": "p0", "post": "p1", "connectivity": {"rule": "fixed_probability", "p": 0.7}},
        {"name": "S", "pre": "p0", "post": "side", "frozen": True},
    ]
    model = model_from(data)
    full = {n: np.nan_to_num(model.projections[n].get_weights(format="array")) for n in ("A", "B", "S")}
    masks = {n: ~np.isnan(model.projections[n].get_weights(format="array")) for n in ("A", "B")}
    x0 = X[model.stream.indices(0)]
    inputs = np.concatenate([np.tanh(x0 @ full["S"]), x0], axis=1)  # offsets follow declaration: A then B
    W = np.concatenate([full["A"], full["B"]], axis=0)  # (2 + 3) x 3
    y = inputs @ W
    expected = np.zeros_like(W)
    for j in range(3):
        reconstruction = sum(np.outer(y[:, k], W[:, k]) for k in range(j + 1))
        expected[:, j] = ((inputs - reconstruction) * y[:, [j]]).mean(0)
    model.step()
    for name, rows in (("A", slice(0, 2)), ("B", slice(2, 5))):
        step = np.nan_to_num(model.projections[name].get_weights(format="array")) - full[name]
        np.testing.assert_allclose(step[masks[name]], lr * expected[rows][masks[name]], rtol=1e-9, atol=1e-15)


# ----------------------------------------------------------------------------- chiral modulation


@settings(max_examples=50, deadline=None)
@given(grads=arrays(np.float64, st.integers(1, 40), elements=st.sampled_from([-2.0, -0.5, 0.0, 0.5, 3.0])),
       kappa=st.floats(-1.0, 1.0))
def test_chiral_scale_follows_its_definition(grads, kappa):
    scale = chiral_scale(grads, np.full(grads.size, kappa))
    for i, g in enumerate(grads):
        share = np.mean(np.sign(grads) == np.sign(g))
        assert scale[i] == pytest.approx(1 + kappa * (2 * share - 1))
    np.testing.assert_array_equal(chiral_scale(grads, np.zeros(grads.size)), np.ones(grads.size))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_chiral_with_kappa_zero_is_the_plain_rule(data_dir, optimizer):
    task = classification_task(data_dir)
    plain = model_from(layered_scenario([5, 7, 3], ["tanh", "identity"], task=task, optimizer=optimizer, lr=0.05))
    chiral = model_from(layered_scenario([5, 7, 3], ["tanh", "identity"], task=task, optimizer=optimizer, lr=0.05,
                                         learning={"kappa": 0.0}))
    for _ in range(3):
        plain.step()
        chiral.step()
    assert_same_state(plain, chiral, rtol=0)


@pytest.mark.parametrize("kappas", [(0.6, 0.6), (0.8, 0.0)], ids=["uniform", "per-projection"])
def test_chiral_scales_each_step_by_the_same_sign_share(data_dir, kappas):
    """The share a counts all of a neuron's plastic incoming synapses, whatever their projection."""
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((40, 4)), rng.integers(0, 3, 40)
    y[:3] = [0, 1, 2]
    task = npz_task(data_dir, X, y, "classification", "cross_entropy")
    lr = 0.2

    def build(with_kappa: bool):
        data = layered_scenario([4, 5, 3], ["tanh", "identity"], task=task, lr=lr, batch_size=8)
        # A second projection into the output population: a skip connection from the input.
        data["projections"].append({"name": "skip", "pre": "p0", "post": "p2"})
        if with_kappa:
            data["projections"][1]["learning"] = {"kappa": kappas[0]}
            data["projections"][2]["learning"] = {"kappa": kappas[1]}
            data["projections"][0]["learning"] = {"kappa": kappas[0]}
        return model_from(data)

    plain, chiral = build(False), build(True)
    before = snapshot(plain)[0]
    plain.step()
    chiral.step()
    kappa_of = {"p0->p1": kappas[0], "p1->p2": kappas[0], "skip": kappas[1]}
    for post in ("p1", "p2"):
        names = [n for n, p in plain.projections.items() if p.post == post]
        for j in range(plain.populations[post].size):
            grads, expected_steps, actual_steps = [], [], []
            for name in names:
                info = plain.projections[name].info
                sel = info.post_idx == j
                step = plain.projections[name].get_weights()[sel] - before[name][sel]
                grads.append(-step / lr)
                expected_steps.append((step, kappa_of[name]))
                actual_steps.append(chiral.projections[name].get_weights()[sel] - before[name][sel])
            signs = np.sign(np.concatenate(grads))
            offset = 0
            for (step, kappa), actual in zip(expected_steps, actual_steps):
                share = np.array([np.mean(signs == s) for s in signs[offset:offset + step.size]])
                offset += step.size
                np.testing.assert_allclose(actual, step * (1 + kappa * (2 * share - 1)), rtol=1e-9, atol=1e-15)
    # The biases are not synapses: they take the plain step.
    for name, population in plain.populations.items():
        np.testing.assert_allclose(population.get_biases(), chiral.populations[name].get_biases(), rtol=1e-12)


# ----------------------------------------------------------------------------- Hebbian rules


def correlated_data(rng, eigenvalues, n=4000):
    d = len(eigenvalues)
    basis, _ = np.linalg.qr(rng.standard_normal((d, d)))
    X = rng.standard_normal((n, d)) * np.sqrt(eigenvalues) @ basis.T
    second_moment = X.T @ X / n
    values, vectors = np.linalg.eigh(second_moment)
    return X, vectors[:, ::-1], values[::-1]


def hebbian_model(data_dir, X, k, variant, lr, ticks, seed=0):
    task = npz_task(data_dir, X, np.zeros((len(X), k)), "regression", "mse")
    data = layered_scenario([X.shape[1], k], ["identity"], task=task, rule="hebbian", lr=lr, bias=False,
                            learning={"variant": variant}, batch_size=16, ticks=ticks, seed=seed)
    data["projections"][0]["init"] = {"kind": "normal", "std": 0.3}
    return model_from(data)


def test_oja_drives_one_neuron_to_the_first_principal_component(data_dir, rng):
    X, vectors, _ = correlated_data(rng, [5.0, 2.0, 1.0, 0.5, 0.2])
    model = hebbian_model(data_dir, X, k=1, variant="oja", lr=0.005, ticks=3000)
    model.run()
    w = model.projections["p0->p1"].get_weights(format="array")[:, 0]
    assert np.linalg.norm(w) == pytest.approx(1.0, abs=0.02)
    assert abs(w @ vectors[:, 0]) / np.linalg.norm(w) > 0.995


def test_sanger_drives_k_neurons_to_the_first_k_principal_components(data_dir, rng):
    X, vectors, _ = correlated_data(rng, [6.0, 3.0, 1.5, 0.5, 0.3, 0.1])
    model = hebbian_model(data_dir, X, k=3, variant="sanger", lr=0.004, ticks=5000)
    model.run()
    W = model.projections["p0->p1"].get_weights(format="array")
    for j in range(3):
        w = W[:, j]
        assert np.linalg.norm(w) == pytest.approx(1.0, abs=0.03), j
        assert abs(w @ vectors[:, j]) / np.linalg.norm(w) > 0.99, j
    # Each neuron told the later ones what it reconstructs: 2 + 1 lateral messages per tick.
    assert model.executor.message_counts[2] == 3 * model.tick


def test_oja_neurons_alone_all_find_the_first_component(data_dir, rng):
    """Without Sanger's lateral messages, every neuron converges to the same component."""
    X, vectors, _ = correlated_data(rng, [6.0, 3.0, 1.5, 0.5])
    model = hebbian_model(data_dir, X, k=2, variant="oja", lr=0.005, ticks=3000, seed=4)
    model.run()
    W = model.projections["p0->p1"].get_weights(format="array")
    for j in range(2):
        assert abs(W[:, j] @ vectors[:, 0]) / np.linalg.norm(W[:, j]) > 0.99
    assert model.executor.message_counts[2] == 0


# ----------------------------------------------------------------------------- optimizers


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_optimizers_follow_torch_optim_over_several_ticks(data_dir, optimizer):
    lr = 0.05
    data = layered_scenario([5, 6, 4, 3], ["tanh", "relu", "identity"], task=classification_task(data_dir),
                            optimizer=optimizer, lr=lr, batch_size=8,
                            learning={"momentum": 0.8, "beta1": 0.85, "beta2": 0.99, "eps": 1e-7})
    model = model_from(data)
    mirror = TorchMirror(model)
    if optimizer == "sgd":
        reference = torch.optim.SGD(mirror.parameters(), lr=lr)
    elif optimizer == "momentum":
        reference = torch.optim.SGD(mirror.parameters(), lr=lr, momentum=0.8)
    else:
        reference = torch.optim.Adam(mirror.parameters(), lr=lr, betas=(0.85, 0.99), eps=1e-7)
    for tick in range(6):
        reference.zero_grad()
        mirror.loss(tick).backward()
        reference.step()
        model.step()
    for name, projection in model.projections.items():
        np.testing.assert_allclose(projection.get_weights(), mirror.synapse_values(name, mirror.weights[name]),
                                   rtol=1e-9, atol=1e-14)
    for name, bias in mirror.biases.items():
        np.testing.assert_allclose(model.populations[name].get_biases(), bias.detach().numpy(), rtol=1e-9, atol=1e-14)
    # Each neuron's optimizer state is torch's state for its own synapses.
    torch_keys = {"momentum": ["momentum_buffer"], "adam": ["exp_avg", "exp_avg_sq"]}.get(optimizer, [])
    for name, projection in model.projections.items():
        neurons = sorted(model.populations[projection.post].agents, key=lambda agent: agent.unique_id)
        blocks = [s for agent in neurons for s in agent.incoming if s.projection is projection.info]
        for key in torch_keys:
            ours = np.concatenate([block.optimizer.state()[key] for block in blocks])
            np.testing.assert_allclose(ours, mirror.synapse_values(name, reference.state[mirror.weights[name]][key]),
                                       rtol=1e-9, atol=1e-14)
        if optimizer == "adam":
            assert all(block.optimizer.state()["step"] == 6 for block in blocks)


def test_frozen_projection_keeps_its_weights_but_passes_credit(data_dir):
    task = classification_task(data_dir)
    data = layered_scenario([5, 6, 4, 3], ["tanh", "tanh", "identity"], task=task, lr=0.3)
    data["projections"][1]["frozen"] = True
    model = model_from(data)
    mirror = TorchMirror(model)
    loss = mirror.loss(0)
    loss.backward()
    before = snapshot(model)[0]
    model.step()
    np.testing.assert_array_equal(model.projections["p1->p2"].get_weights(), before["p1->p2"])
    # The first projection still learns from credit that travelled back through the frozen one.
    np.testing.assert_allclose(model.projections["p0->p1"].get_weights() - before["p0->p1"],
                               -0.3 * mirror.synapse_values("p0->p1", mirror.weights["p0->p1"].grad), rtol=1e-9)
