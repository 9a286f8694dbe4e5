"""One tick of backprop changes every weight and bias by exactly -lr times the gradient that
torch.autograd computes for the same network, weights and batch (float64)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import ribbed
from conftest import layered_scenario, model_from, npz_task, write_npz
from torch_reference import TORCH_ACTIVATIONS, TorchMirror

def autograd_gradients(model: ribbed.NetworkModel, tick: int = 0):
    """Loss gradients of every synapse and bias by autograd, for the batch of ``tick``."""
    mirror = TorchMirror(model)
    loss = mirror.loss(tick)
    loss.backward()
    grads_w = {name: mirror.synapse_values(name, w.grad) for name, w in mirror.weights.items()}
    grads_b = {name: b.grad.numpy() for name, b in mirror.biases.items()}
    return float(loss.detach()), grads_w, grads_b


def assert_step_is_minus_lr_grad(before: np.ndarray, after: np.ndarray, grad: np.ndarray, lr: float) -> None:
    # The change is read back as a difference of floats, exact to an ulp of the weights.
    atol = 4e-16 * max(1.0, float(np.abs(after).max(initial=0.0)))
    np.testing.assert_allclose(after - before, -lr * grad, rtol=1e-9, atol=atol)


def check_one_tick(model: ribbed.NetworkModel) -> None:
    lr = model.scenario.learning.lr
    weights = {name: p.get_weights() for name, p in model.projections.items()}
    biases = {name: p.get_biases() for name, p in model.populations.items()}
    loss, grads_w, grads_b = autograd_gradients(model)
    model.step()
    assert model.last_result.loss == pytest.approx(loss, rel=1e-12)
    for name, projection in model.projections.items():
        assert_step_is_minus_lr_grad(weights[name], projection.get_weights(), grads_w[name], lr)
    for name, population in model.populations.items():
        if population.info.role != "input":
            assert_step_is_minus_lr_grad(biases[name], population.get_biases(), grads_b[name], lr)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


def three_class_task(folder, loss: str, n_features: int = 5, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((40, n_features))
    y = rng.integers(0, 3, size=40)
    y[:3] = [0, 1, 2]
    return npz_task(folder, X, y, "classification", loss)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_backprop_tick_equals_autograd_two_hidden_layers(data_dir, loss, sparse):
    connectivity = {1: {"rule": "fixed_probability", "p": 0.4}} if sparse else {}
    data = layered_scenario([5, 7, 6, 3], ["tanh", "relu", "identity"], loss=loss, lr=0.3,
                            task=three_class_task(data_dir, loss), connectivity=connectivity, batch_size=16)
    model = model_from(data)
    if sparse:
        projection = model.projections["p1->p2"]
        assert 0 < len(projection) < 7 * 6  # really sparse
    check_one_tick(model)


def test_backprop_tick_equals_autograd_for_regression(data_dir):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 3))
    Y = np.stack([np.sin(X[:, 0]), X[:, 1] * X[:, 2]], axis=1)
    task = npz_task(data_dir, X, Y, "regression", "mse")
    model = model_from(layered_scenario([3, 8, 2], ["sigmoid", "identity"], task=task, lr=0.5, batch_size=10))
    check_one_tick(model)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    hidden=st.lists(st.integers(1, 6), min_size=0, max_size=3),
    activations=st.lists(st.sampled_from(sorted(TORCH_ACTIVATIONS)), min_size=4, max_size=4),
    rules=st.lists(st.sampled_from(["all_to_all", "fixed_probability", "fixed_in_degree"]), min_size=4, max_size=4),
    loss=st.sampled_from(["cross_entropy", "mse"]),
    batch=st.integers(1, 9),
    seed=st.integers(0, 2**16),
)
def test_backprop_tick_equals_autograd_for_any_network(data_dir, hidden, activations, rules, loss, batch, seed):
    sizes = [4, *hidden, 3]
    connectivity = {}
    for i, rule in enumerate(rules[: len(sizes) - 1]):
        if rule == "fixed_probability":
            connectivity[i] = {"rule": rule, "p": 0.6}
        elif rule == "fixed_in_degree":
            connectivity[i] = {"rule": rule, "k": max(1, sizes[i] // 2)}
    rng = np.random.default_rng(seed)
    X, y = rng.standard_normal((24, 4)), rng.integers(0, 3, 24)
    y[:3] = [0, 1, 2]
    path = write_npz(data_dir, X, y, name=f"any-{seed}.npz")
    task = {"kind": "npz", "path": str(path), "problem": "classification", "loss": loss}
    data = layered_scenario(sizes, activations[: len(sizes) - 1], task=task, lr=0.2, seed=seed,
                            connectivity=connectivity, batch_size=batch)
    try:
        model = model_from(data)
    except ribbed.ScenarioError as error:  # a random sparse rule may make no synapse at all
        assert [p.message for p in error.problems] == ["the rule made no synapses"]
        assume(False)
    check_one_tick(model)
