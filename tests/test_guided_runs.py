"""Guided learning on digits, end to end (the issue's bars): guides predict the hidden layer's
held-out credit, guided learning beats unguided learning when the error is thinned out, and
hash clusters of digits-specialize group neurons by their preferred class."""

from __future__ import annotations

import numpy as np
import pytest

import ribbed
from ribbed.scenarios.loader import load_scenario

SEEDS = (0, 1, 2)


def scenario(name: str, seed: int, guided: bool = True) -> dict:
    data = load_scenario(name).model_dump(exclude_none=True)
    data["seed"] = seed
    data["backend"] = {"kind": "batched", "device": "cpu"}
    if not guided:
        data["populations"][1].pop("guide")
        data.pop("coupling"), data.pop("meta")
    return data


@pytest.fixture(scope="module")
def direct_runs() -> dict:
    runs = {}
    for seed in SEEDS:
        for guided in (True, False):
            runs[seed, guided] = ribbed.NetworkModel(scenario("digits-guide-direct", seed, guided)).run()
    return runs


def test_mlp_guides_predict_held_out_hidden_credit(direct_runs):
    """R^2 >= 0.5 at every evaluation after the first 100 ticks (the guides' warm-up)."""
    for seed in SEEDS:
        metrics = direct_runs[seed, True]
        after_warm_up = metrics[metrics["tick"] >= 100]["hidden_guide_r2"]
        assert len(after_warm_up) == 8 and after_warm_up.min() >= 0.5, (seed, after_warm_up.tolist())


def test_guided_learning_beats_unguided_with_the_same_backward_messages(direct_runs):
    guided = [direct_runs[seed, True]["test_accuracy"].iloc[-1] for seed in SEEDS]
    unguided = [direct_runs[seed, False]["test_accuracy"].iloc[-1] for seed in SEEDS]
    for seed in SEEDS:
        np.testing.assert_array_equal(direct_runs[seed, True]["msg_error"], direct_runs[seed, False]["msg_error"])
    assert np.mean(guided) > np.mean(unguided) + 0.005, (guided, unguided)


def test_specialize_clusters_are_purer_than_chance_and_selectivity_is_recorded():
    model = ribbed.NetworkModel(scenario("digits-specialize", 0))
    metrics = model.run(1000)
    final = metrics.iloc[-1]
    assert final["hidden_purity"] > final["hidden_purity_shuffled"] + 0.05
    assert final["hidden_clusters"] > 1
    # The selectivity of every hidden neuron at every evaluation, through the DataCollector.
    agents = model.agent_metrics
    hidden = agents[(agents["population"] == "hidden") & (agents["agent_kind"] == "neuron")]
    selectivity = hidden["selectivity"].unstack("AgentID")
    assert selectivity.shape == (len(metrics), 64) and selectivity.notna().all().all()
    assert ((selectivity >= 0) & (selectivity <= 1)).all().all()
    assert metrics["hidden_selectivity_mean"].iloc[-1] > metrics["hidden_selectivity_mean"].iloc[0]
