"""Formulas written once over an array namespace (numpy for the reference executor, torch for
the tensor executors): each gives the same numbers on both, on one neuron's shapes and on a
population's, and keeps the types the reference executor's snapshots record."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ribbed.agents.activations import ACTIVATIONS, TORCH_ACTIVATIONS
from ribbed.agents.guides import guide_features, task_context
from ribbed.agents.optimizers import make_optimizer
from ribbed.agents.rules import chiral_factor, chiral_scale, guided_credit, hebbian_gradient
from ribbed.environment.losses import LOSSES, per_sample_loss, sample_losses
from ribbed.scenarios.schema import LearningSpec


def tensor(values: np.ndarray) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_an_optimizer_steps_numpy_arrays_and_tensors_alike(optimizer):
    """SGD and momentum multiply and add only: bit for bit; Adam's torch kernels may fuse a
    multiply-add, so it agrees to rounding."""
    rng = np.random.default_rng(0)
    settings = LearningSpec(optimizer=optimizer, lr=0.1)
    weights = rng.standard_normal((3, 4))
    on_numpy, on_torch = make_optimizer(settings, weights), make_optimizer(settings, tensor(weights))
    for _ in range(5):
        grad = rng.standard_normal((3, 4))
        step = on_numpy.step(grad.copy())
        torch_step = on_torch.step(tensor(grad)).numpy()
        if optimizer == "adam":
            np.testing.assert_allclose(torch_step, step, rtol=1e-12, atol=1e-15)
        else:
            np.testing.assert_array_equal(torch_step, step)


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_a_bias_optimizer_state_becomes_a_numpy_scalar_after_a_step(optimizer):
    """A reference neuron's bias state starts as a 0-d array and is a numpy scalar after a step,
    as the reference executor always stored it (snapshots record the kind)."""
    settings = LearningSpec(optimizer=optimizer, lr=0.1)
    bias_optimizer = make_optimizer(settings, np.zeros(()))
    for _ in range(2):
        bias_optimizer.step(np.asarray(0.5))
    for name, value in bias_optimizer.state().items():
        if name != "step":
            assert type(value) is np.float64, name


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_an_activation_on_a_population_is_its_neurons_activations(name):
    rng = np.random.default_rng(1)
    u = rng.standard_normal((5, 4))
    u[0, 0] = 0.0
    on_torch, on_numpy = TORCH_ACTIVATIONS[name], ACTIVATIONS[name]
    y = on_torch.f(tensor(u)).numpy()
    df = on_torch.df(tensor(u), tensor(y)).numpy()
    assert df.dtype == np.float64
    for j in range(u.shape[1]):
        np.testing.assert_allclose(on_numpy.f(u[:, j]), y[:, j], rtol=1e-14)
        np.testing.assert_allclose(on_numpy.df(u[:, j], y[:, j]), df[:, j], rtol=1e-14)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_a_loss_is_the_same_per_sample_on_numpy_and_torch(loss):
    rng = np.random.default_rng(2)
    outputs = rng.standard_normal((6, 3))
    targets = np.eye(3)[rng.integers(0, 3, 6)] if loss == "cross_entropy" else rng.standard_normal((6, 3))
    losses, answer = per_sample_loss(loss, outputs, targets, np)
    torch_losses, torch_answer = per_sample_loss(loss, tensor(outputs), tensor(targets), torch)
    np.testing.assert_allclose(torch_losses.numpy(), losses, rtol=1e-14)
    np.testing.assert_allclose(torch_answer.numpy(), answer, rtol=1e-14, atol=1e-16)
    np.testing.assert_array_equal(sample_losses(loss, outputs, targets), losses)
    batch_loss, reference_answer = LOSSES[loss](outputs, targets)
    assert batch_loss == pytest.approx(losses.mean(), rel=1e-14)
    np.testing.assert_allclose(reference_answer, answer, rtol=1e-15)


def test_a_population_s_guide_features_are_its_neurons_features():
    rng = np.random.default_rng(3)
    u, y, derivative = (rng.standard_normal((4, 3)) for _ in range(3))
    losses = rng.random(4)
    targets = np.eye(2)[rng.integers(0, 2, 4)]
    context = task_context(targets, losses)
    np.testing.assert_array_equal(task_context(tensor(targets), tensor(losses)).numpy(), context)
    features = guide_features(tensor(u), tensor(y), tensor(derivative), tensor(context)).numpy()
    assert features.shape == (4, 3, 3 + 2 * context.shape[1])
    for j in range(3):
        np.testing.assert_array_equal(features[:, j], guide_features(u[:, j], y[:, j], derivative[:, j], context))


def test_rules_on_a_population_are_its_neurons_rules():
    """The chiral factor from per-row counts, the Hebbian gradient and the guided credit: row j
    of a population's result is neuron j's, bit for bit."""
    rng = np.random.default_rng(4)
    grads = np.round(rng.standard_normal((3, 5)))  # with zeros
    positive, negative = (grads > 0).sum(axis=1) * 1.0, (grads < 0).sum(axis=1) * 1.0
    total = np.full(3, 5.0)
    factor = chiral_factor(tensor(grads), tensor(positive[:, None]), tensor(negative[:, None]),
                           tensor((total - positive - negative)[:, None]), tensor(total[:, None]), 0.4, torch)
    correlation, decay = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
    gradient = hebbian_gradient(tensor(correlation), tensor(decay), torch).numpy()
    delta, guidance, alpha = rng.standard_normal((4, 3)), rng.standard_normal((4, 3)), rng.random(3)
    credit = guided_credit(tensor(delta), tensor(guidance), tensor(alpha)).numpy()
    alone = guided_credit(None, tensor(guidance), tensor(alpha)).numpy()
    for j in range(3):
        np.testing.assert_array_equal(factor[j].numpy(), chiral_scale(grads[j], np.full(5, 0.4)))
        np.testing.assert_array_equal(gradient[j], hebbian_gradient(correlation[j].copy(), decay[j], np))
        np.testing.assert_array_equal(credit[:, j], guided_credit(delta[:, j], guidance[:, j], alpha[j]))
        np.testing.assert_array_equal(alone[:, j], guided_credit(None, guidance[:, j], alpha[j]))
    np.testing.assert_array_equal(gradient, decay - correlation)
