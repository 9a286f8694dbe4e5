"""R-STDP learns a reward task, judged against nulls (docs/semantics.md, "STDP in a tick"): the
``shuffled`` reward (the batch's ``correct`` rewards permuted across its samples: the same +1/-1
counts, no link to the sample) is exactly that, the same draw on every executor; and the built-in
``moons-reward`` learns with ``correct`` rewards what it cannot with ``shuffled`` ones, nor
frozen."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_stdp_wiring import rewarded_scenario

from conftest import model_from
from ribbed.scenarios.loader import load_scenario
from ribbed.scheduler.plasticity import reward_permutation, task_reward
from ribbed.seeding import component_uniforms

SEEDS = (0, 1, 2)


def correct_and_shuffled(seed: int, tick: int, batch: int, classes: int, rng: np.random.Generator):
    """Random count readouts (ties included) and one-hot labels, and their two rewards in numpy."""
    outputs = rng.integers(0, 4, (batch, classes)).astype(np.float64)
    targets = np.eye(classes)[rng.integers(0, classes, batch)]
    losses = rng.random(batch)
    return (outputs, targets, losses, task_reward("correct", outputs, targets, losses, np, seed, tick),
            task_reward("shuffled", outputs, targets, losses, np, seed, tick))


@pytest.mark.parametrize("batch", [1, 2, 7, 32])
def test_shuffled_is_the_documented_permutation_of_correct(batch, rng):
    """Sample i gets the correct reward of sample order[i], order the stable argsort of the uniforms
    keyed ("reward-shuffle", tick): a permutation, so the batch holds the same +1 and -1 counts; it
    changes with the tick and the seed; numpy and torch give the same rewards."""
    orders = set()
    for seed in (0, 3):
        for tick in range(6):
            outputs, targets, losses, correct, shuffled = correct_and_shuffled(seed, tick, batch, 3, rng)
            order = reward_permutation(seed, tick, batch)
            np.testing.assert_array_equal(np.sort(order), np.arange(batch))
            expected = np.argsort(component_uniforms(seed, ("reward-shuffle", tick), (batch,)), kind="stable")
            np.testing.assert_array_equal(order, expected)
            np.testing.assert_array_equal(shuffled, correct[order])
            assert sorted(shuffled) == sorted(correct)
            on_torch = task_reward("shuffled", *(torch.from_numpy(a) for a in (outputs, targets, losses)), torch,
                                   seed, tick)
            np.testing.assert_array_equal(on_torch.numpy(), shuffled)
            orders.add(tuple(order))
    assert len(orders) == {1: 1, 2: 2}.get(batch, 12)  # each tick and seed its own draw


def test_the_executors_apply_the_same_shuffled_rewards():
    """Reference (one reward message per neuron) and batched (one tensor): the same weights after
    four ticks of shuffled rewards, and not the weights the correct rewards give."""
    weights = {}
    for reward in ("correct", "shuffled"):
        for kind in ("reference", "batched"):
            model = model_from(rewarded_scenario(kind, reward))
            for _ in range(4):
                model.step()
            weights[reward, kind] = model.projections["in->out"].get_weights()
    np.testing.assert_allclose(weights["shuffled", "batched"], weights["shuffled", "reference"], rtol=0, atol=1e-12)
    assert np.abs(weights["shuffled", "batched"] - weights["correct", "batched"]).max() > 1e-3


def held_out_accuracy(reward: str, seed: int) -> float:
    """The built-in moons-reward (on the CPU, float32) with ``reward`` and ``seed``, after its run;
    ``reward`` "frozen": its R-STDP projection frozen (the network as initialized)."""
    data = load_scenario("moons-reward").model_dump(mode="json", exclude_none=True)
    data["seed"] = seed
    if reward == "frozen":
        data["projections"][1]["frozen"] = True
    else:
        data["learning"]["stdp"]["reward"] = reward
    data["backend"] = {"kind": "batched", "device": "cpu", "dtype": "float32"}
    model = model_from(data)
    for _ in range(data["run"]["ticks"]):
        model.step()
    return model.evaluate()["test_accuracy"]


@pytest.mark.filterwarnings("ignore::ribbed.RibbedWarning")  # the frozen arm: "nothing learns", as meant
def test_r_stdp_learns_moons_from_its_reward_and_not_from_a_shuffled_one():
    """Three seeds of the built-in moons-reward: with the correct reward the held-out accuracy is
    well above chance (0.5, two balanced classes), and above both nulls, the shuffled reward and
    the frozen projection, by more than three times the pooled standard deviation over seeds.
    (With shuffled rewards the outputs fall silent and every held-out sample is a tie: exactly
    chance; the frozen network is its random initial weights.)"""
    accuracy = {arm: np.array([held_out_accuracy(arm, seed) for seed in SEEDS])
                for arm in ("correct", "shuffled", "frozen")}
    correct = accuracy["correct"]
    for null in ("shuffled", "frozen"):
        pooled = np.sqrt((correct.var(ddof=1) + accuracy[null].var(ddof=1)) / 2)
        assert correct.mean() - accuracy[null].mean() > 3 * pooled, accuracy
    assert correct.min() > 0.6 and correct.mean() > 0.7, accuracy
    assert accuracy["shuffled"].max() < 0.56, accuracy
