"""Every registered executor keeps the contract of scheduler/base.py: it reads every row of the
declared state table with the declared shape, writes the writable ones so that the next tick
computes with them, offers every per-neuron row on its agents, and computes what the reference
executor computes."""

from __future__ import annotations

import numpy as np
import pytest

import ribbed
from ribbed.agents.state import PER_NEURON, STATE_TABLE
from ribbed.scheduler.base import Executor
from ribbed.scheduler.registry import executor_class, register, registered

from .conftest import on

RTOL, ATOL = 1e-7, 1e-8


def guided_fa() -> dict:
    """Guides with hash coupling and hierarchical meta units, feedback alignment into the output, a
    frozen-free network."""
    return {
        "name": "contract", "seed": 11, "task": {"kind": "xor", "n_samples": 60},
        "populations": [{"name": "in", "size": 2, "role": "input"},
                        {"name": "h", "size": 6, "guide": {"kind": "linear"}},
                        {"name": "out", "size": 2, "role": "output", "activation": "identity"}],
        "projections": [{"pre": "in", "post": "h"},
                        {"pre": "h", "post": "out", "learning": {"rule": "feedback_alignment"}}],
        "learning": {"rule": "backprop", "optimizer": "adam", "lr": 0.02},
        "coupling": {"kind": "hash", "bits": 2, "rehash_every": 3},
        "meta": {"kind": "confidence", "hierarchy": {"regroup_every": 2, "threshold": 0.0}},
        "schedule": {"backward_every": 2},
        "run": {"ticks": 6, "batch_size": 4, "eval_every": 3},
    }


def dfa() -> dict:
    return {
        "name": "contract-dfa", "seed": 12, "task": {"kind": "xor", "n_samples": 60},
        "populations": [{"name": "in", "size": 2, "role": "input"},
                        {"name": "h", "size": 5, "activation": "tanh"},
                        {"name": "out", "size": 2, "role": "output", "activation": "identity"}],
        "projections": [{"pre": "in", "post": "h"}, {"pre": "h", "post": "out"}],
        "learning": {"rule": "direct_feedback_alignment", "optimizer": "momentum", "lr": 0.05},
        "run": {"ticks": 6, "batch_size": 4, "eval_every": 3},
    }


def spiking() -> dict:
    """Time within a tick: 4 steps, a lif hidden layer with a delayed self-projection, threshold
    outputs counted (docs/semantics.md, "Time within a tick")."""
    return {
        "name": "contract-spiking", "seed": 13, "task": {"kind": "xor", "n_samples": 60, "encoding": "latency"},
        "populations": [{"name": "in", "size": 2, "role": "input"},
                        {"name": "h", "size": 6, "firing": {"policy": "lif", "beta": 0.8, "threshold": 0.3,
                                                            "refractory": 1}},
                        {"name": "out", "size": 2, "role": "output", "activation": "identity",
                         "firing": {"policy": "threshold", "threshold": 0.1}, "readout": "count"}],
        "projections": [{"pre": "in", "post": "h", "init": {"kind": "uniform", "low": -1.5, "high": 1.5}},
                        {"pre": "h", "post": "h"}, {"pre": "h", "post": "out"}],
        "learning": {"rule": "backprop", "optimizer": "adam", "lr": 0.02},
        "run": {"ticks": 6, "batch_size": 4, "eval_every": 3, "steps_per_sample": 4},
    }


def sequence() -> dict:
    """A sequence task: Mackey-Glass windows of 4 values, one per step, through a recurrent rate
    layer, read at the last step, credit truncated to windows of 2 steps."""
    return {
        "name": "contract-sequence", "seed": 14,
        "task": {"kind": "mackey_glass", "n_samples": 60, "window": 4, "encoding": "sequence"},
        "populations": [{"name": "in", "size": 1, "role": "input"},
                        {"name": "h", "size": 5, "activation": "tanh"},
                        {"name": "out", "size": 1, "role": "output", "activation": "identity", "readout": "last"}],
        "projections": [{"pre": "in", "post": "h"}, {"pre": "h", "post": "h"}, {"pre": "h", "post": "out"}],
        "learning": {"rule": "backprop", "optimizer": "adam", "lr": 0.02},
        "run": {"ticks": 6, "batch_size": 4, "eval_every": 3, "steps_per_sample": 4, "bptt_window": 2},
    }


def expected_shape(model: ribbed.NetworkModel, name: str, where: str) -> tuple | None:
    network = model.network
    shape = STATE_TABLE[name].shape
    if STATE_TABLE[name].where == "projection":
        return (next(p for p in network.projections if p.name == where).n_synapses,)
    population = network.populations[where]
    batch = model.scenario.run.batch_size
    guided = network.guided.get(where)
    return {"neuron": (population.size,), "sample x neuron": (batch, population.size),
            "neuron x output": (population.size, network.output.size),
            "guide": (guided.coupling.n_guides,) if guided else None,
            "neuron x depth": None, "mapping": None}[shape]


@pytest.mark.parametrize("scenario", [guided_fa, dfa])
def test_every_row_of_the_table_reads_with_its_shape(executor, scenario):
    model = ribbed.NetworkModel(on(executor, scenario()))
    model.run()
    try:
        for name, field in STATE_TABLE.items():
            places = ([p.name for p in model.network.projections] if field.where == "projection"
                      else list(model.network.populations))
            for where in places:
                value = model.executor.read(name, where)
                if value is None:
                    assert field.none_when, f"{name} of {where} is None, and the table says it never is"
                    continue
                if field.shape == "mapping":
                    assert isinstance(value, dict) and value, name
                    continue
                assert isinstance(value, np.ndarray), (name, where, type(value))
                shape = expected_shape(model, name, where)
                if shape is not None:
                    assert value.shape == shape, (name, where, value.shape, shape)
                if field.shape == "neuron x depth":
                    assert value.shape[0] == model.network.populations[where].size
    finally:
        model.executor.close()


def test_rows_that_must_be_there_are_there(executor):
    model = ribbed.NetworkModel(on(executor, guided_fa()))
    model.run()
    try:
        read = model.executor.read
        assert read("feedback", "h->out") is not None and read("feedback", "in->h") is None
        assert read("guidance", "h") is not None and read("guidance", "out") is None
        assert np.isnan(read("alpha", "out")).all() and np.isfinite(read("alpha", "h")).all()
        assert read("delta", "in") is None
        assert set(read("optimizer", "in->h")) == {"exp_avg", "exp_avg_sq", "step"}
        np.testing.assert_array_equal(read("in_degree", "h"), [2] * 6)
    finally:
        model.executor.close()


def test_firing_rate_is_each_neurons_mean_output_over_the_last_evaluation(executor):
    model = ribbed.NetworkModel(on(executor, dfa()))
    for name in model.populations:
        assert np.isnan(model.executor.read("firing_rate", name)).all()  # before any evaluation
    model.run()
    try:
        prediction = model.executor.predict(model.dataset.X_test, keep=list(model.populations))
        for name, population in model.populations.items():
            rate = population.get("firing_rate")
            np.testing.assert_allclose(rate, prediction.activations[name].mean(axis=0), rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose([agent.firing_rate for agent in population.agents], rate, rtol=0, atol=0)
    finally:
        model.executor.close()


def test_agents_offer_every_per_neuron_row(executor):
    model = ribbed.NetworkModel(on(executor, guided_fa()))
    model.run()
    try:
        for name in PER_NEURON:
            values = model.executor.read(name, "h")
            got = [getattr(agent, name) for agent in model.populations["h"].agents]
            np.testing.assert_allclose(np.asarray(got, dtype=np.float64), np.asarray(values, dtype=np.float64),
                                       rtol=0, atol=0, err_msg=name)
        with pytest.raises(AttributeError):
            model.neuron(0).no_such_state
    finally:
        model.executor.close()


def intervene(model: ribbed.NetworkModel) -> None:
    """Set one neuron's bias and alpha through its agent, and a weight through the projection."""
    hidden = sorted(model.populations["h"].agents, key=lambda agent: agent.unique_id)
    hidden[1].bias = 0.25
    hidden[2].alpha = 0.9
    weights = model.projections["in->h"].get_weights()
    weights[3] = -0.5
    model.projections["in->h"].set_weights(weights)


def test_interventions_through_agents_reach_the_next_tick_as_on_the_reference(executor):
    reference = ribbed.NetworkModel(guided_fa())
    model = ribbed.NetworkModel(on(executor, guided_fa()))
    try:
        for m in (reference, model):
            m.run(3)
            intervene(m)
        agent = next(a for a in model.populations["h"].agents if a.unique_id == model.network.populations["h"].start + 1)
        assert agent.bias == 0.25
        assert model.executor.read("alpha", "h")[2] == 0.9
        for m in (reference, model):
            m.step()
        np.testing.assert_allclose(model.last_result.outputs, reference.last_result.outputs, rtol=RTOL, atol=ATOL)
        for name, projection in reference.projections.items():
            np.testing.assert_allclose(model.projections[name].get_weights(), projection.get_weights(),
                                       rtol=RTOL, atol=ATOL, err_msg=name)
        for name in ("bias", "alpha"):
            np.testing.assert_allclose(model.executor.read(name, "h"), reference.executor.read(name, "h"),
                                       rtol=RTOL, atol=ATOL, err_msg=name)
    finally:
        model.executor.close()


def test_time_within_a_tick_is_computed_as_on_the_reference(executor):
    """Every executor runs a timed scenario (steps, a lif layer with a delayed self-projection,
    spiking outputs) as the reference does: rows, messages (spikes included), weights."""
    test_every_executor_computes_what_the_reference_computes(executor, spiking)


@pytest.mark.parametrize("scenario", [guided_fa, dfa])
def test_every_executor_computes_what_the_reference_computes(executor, scenario):
    reference = ribbed.NetworkModel(scenario())
    model = ribbed.NetworkModel(on(executor, scenario()))
    try:
        expected, got = reference.run(), model.run()
        np.testing.assert_allclose(got["test_loss"], expected["test_loss"], rtol=RTOL, atol=ATOL)
        np.testing.assert_array_equal(got["messages"], expected["messages"])
        for name, field in STATE_TABLE.items():
            if field.where != "population" or field.shape not in ("neuron", "sample x neuron", "neuron x output"):
                continue
            for where in model.network.populations:
                a, b = reference.executor.read(name, where), model.executor.read(name, where)
                assert (a is None) == (b is None), (name, where)
                if a is not None:
                    np.testing.assert_allclose(b, a, rtol=RTOL, atol=ATOL, err_msg=f"{name} of {where}")
        for name, projection in reference.projections.items():
            np.testing.assert_allclose(model.projections[name].get_weights(), projection.get_weights(),
                                       rtol=RTOL, atol=ATOL)
    finally:
        model.executor.close()


def test_writing_a_read_only_row_is_refused(executor):
    model = ribbed.NetworkModel(on(executor, dfa()))
    try:
        with pytest.raises(ValueError, match="cannot be written"):
            model.executor.write("in_degree", "h", np.ones(5))
        with pytest.raises(KeyError, match="the table has"):
            model.executor.read("no_such_state", "h")
    finally:
        model.executor.close()


def test_the_registry_finds_every_executor_folder_and_a_new_one():
    assert {"reference", "batched", "ray"} <= set(registered())
    assert issubclass(executor_class("batched"), Executor)
    with pytest.raises(KeyError, match="registered"):
        executor_class("no-such-executor")
    register("reference-again", "ribbed.scheduler.reference.executor:ReferenceExecutor")
    assert executor_class("reference-again") is executor_class("reference")
    with pytest.raises(ValueError, match="already registered"):
        register("batched", "ribbed.scheduler.reference.executor:ReferenceExecutor")


def test_a_sequence_task_is_computed_as_on_the_reference(executor):
    """The sequence encoding, the last readout and a BPTT window, as the timed scenario above."""
    test_every_executor_computes_what_the_reference_computes(executor, sequence)
