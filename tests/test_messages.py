"""The messages of a tick follow from the network alone (docs/semantics.md, "Messages per
tick"): the reference executor's bus, which counts the messages it delivers, agrees with the
count derived from the network description, which the batched executor reports."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import layered_scenario, model_from, npz_task
from ribbed.scheduler.message_counts import messages_per_tick
from ribbed.scheduler.messages import Kind


def mixed_scenario(task):
    return {
        "name": "mixed", "seed": 1, "task": task,
        "populations": [
            {"name": "in", "size": 4, "role": "input"},
            {"name": "dfa", "size": 5, "learning": {"rule": "direct_feedback_alignment"}},
            {"name": "fa", "size": 3, "learning": {"rule": "feedback_alignment"}},
            {"name": "pca", "size": 4, "activation": "identity", "bias": False,
             "learning": {"rule": "hebbian", "variant": "sanger", "lr": 0.001}},
            {"name": "out", "size": 3, "role": "output", "activation": "identity"},
        ],
        "projections": [
            {"pre": "in", "post": "dfa"},
            {"pre": "dfa", "post": "fa", "connectivity": {"rule": "fixed_in_degree", "k": 2}},
            {"pre": "fa", "post": "fa", "connectivity": {"rule": "one_to_one"}},  # delayed
            {"pre": "in", "post": "pca"},
            {"pre": "pca", "post": "out", "frozen": True},
            {"pre": "fa", "post": "out"},
            {"pre": "out", "post": "dfa", "connectivity": {"rule": "fixed_probability", "p": 0.5}},  # delayed
        ],
        "learning": {"rule": "backprop", "lr": 0.05},
        "run": {"ticks": 4, "batch_size": 5, "eval_every": 4},
    }


def guided_scenario(task):
    return {
        "name": "guided", "seed": 2, "task": task,
        "populations": [
            {"name": "in", "size": 4, "role": "input"},
            {"name": "first", "size": 4},
            {"name": "h", "size": 6, "guide": "linear"},
            {"name": "out", "size": 3, "role": "output", "activation": "identity"},
        ],
        "projections": [{"pre": "in", "post": "first"}, {"pre": "first", "post": "h"}, {"pre": "h", "post": "out"}],
        "coupling": {"kind": "tree", "leaf_size": 2},
        "schedule": {"backward_every": 3},
        "run": {"ticks": 6, "batch_size": 5, "eval_every": 6},
    }


@pytest.mark.parametrize("name, build", [
    ("layered backprop", lambda t: layered_scenario([4, 6, 5, 3], ["tanh", "relu", "identity"], task=t)),
    ("dfa", lambda t: layered_scenario([4, 6, 5, 3], ["tanh", "relu", "identity"], task=t,
                                       rule="direct_feedback_alignment")),
    ("hebbian only", lambda t: layered_scenario([4, 3], ["identity"], task=t, rule="hebbian", bias=False,
                                                learning={"variant": "sanger"})),
    ("mixed rules with cycles", mixed_scenario),
    ("guided, thinned error", guided_scenario),
    ("guided by hash clusters, learned trust", lambda t: {**guided_scenario(t), "meta": "learned",
                                                          "coupling": {"kind": "hash", "bits": 2}}),
])
def test_message_counts_per_tick_follow_from_the_network(tmp_path, name, build):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((30, 4)), np.arange(30) % 3
    task = npz_task(tmp_path, X, y, "classification", "mse")
    model = model_from({**build(task), "backend": {"kind": "reference"}})
    every = model.scenario.schedule.backward_every
    expected = np.zeros(len(Kind), dtype=np.int64)
    for tick in range(7):
        model.step()
        expected += messages_per_tick(model.network, backward=tick % every == 0)
        np.testing.assert_array_equal(model.executor.message_counts, expected)


def test_guidance_messages_are_counted_by_kind(tmp_path):
    """A tree-coupled population of 6 with leaves of 2 has paths of 3 guides: per tick, a context
    message per neuron, a request and an answer per (neuron, guide), training rows per (neuron,
    guide) when the error arrives, and an alpha per neuron; error messages only every 3rd tick."""
    rng = np.random.default_rng(0)
    task = npz_task(tmp_path, rng.standard_normal((30, 4)), np.arange(30) % 3, "classification", "mse")
    network = model_from(guided_scenario(task)).network
    with_error, without = messages_per_tick(network, True), messages_per_tick(network, False)
    assert with_error[Kind.TARGET] == without[Kind.TARGET] == 6
    assert with_error[Kind.GUIDANCE] == without[Kind.GUIDANCE] == 2 * 6 * 3
    assert (with_error[Kind.FEEDBACK], without[Kind.FEEDBACK]) == (6 * 3, 0)
    assert with_error[Kind.MODULATION] == without[Kind.MODULATION] == 6
    assert with_error[Kind.REWARD] == 0  # only learned trust hears the loss
    assert without[Kind.ERROR] == 3  # the task's answer to the output neurons
    # ... and with the error, W delta along each synapse of h->out and first->h (in->first carries none).
    assert with_error[Kind.ERROR] == 3 + 6 * 3 + 4 * 6


def test_mixed_network_routes_credit_as_the_semantics_say(tmp_path):
    rng = np.random.default_rng(0)
    task = npz_task(tmp_path, rng.standard_normal((30, 4)), np.arange(30) % 3, "classification", "mse")
    network = model_from(mixed_scenario(task)).network
    credit = {name: (p.needs_credit, p.dfa_receiver) for name, p in network.populations.items()}
    assert credit == {"in": (False, False), "dfa": (True, True), "fa": (True, False), "pca": (False, False),
                      "out": (True, False)}
    sends = {p.name: p.sends_error for p in network.projections}
    # fa -> out carries errors back to fa; dfa -> fa does not (dfa takes the broadcast only);
    # delayed projections never carry credit; pca -> out does not (pca learns by Sanger's rule).
    assert sends == {"in->dfa": False, "dfa->fa": False, "fa->fa": False, "in->pca": False, "pca->out": False,
                     "fa->out": True, "out->dfa": False}
    assert {p.name for p in network.projections if p.delayed} == {"fa->fa", "out->dfa"}
