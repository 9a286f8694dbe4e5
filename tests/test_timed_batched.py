"""The batched executor's tick with time in it (scheduler/batched/timed.py) against torch autograd.

The executor's backprop through the T steps is written by hand (as its one-step backward is);
here the same network is run step by step with :func:`ribbed.agents.firing.fire` on tensors that
require gradients, so that torch's autograd, through the firing module's surrogate Functions,
computes the gradient independently.  One SGD step of the executor (lr 1, float64) must move
every weight and bias by exactly minus that gradient, to rounding.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ribbed
from ribbed.agents.firing import fire, initial_state, policy_of
from ribbed.scenarios.timing import FiringSpec
from ribbed.seeding import component_uniforms as step_uniforms
from ribbed.scheduler.batched import timed
from ribbed.scheduler.messages import Kind

STEPS, BATCH, HIDDEN = 6, 8, 5

BASE = {
    "name": "timed",
    "seed": 3,
    "task": {"kind": "xor", "n_samples": 40},
    "populations": [
        {"name": "in", "size": 2, "role": "input"},
        {"name": "hidden", "size": HIDDEN},
        {"name": "out", "size": 2, "role": "output", "activation": "identity"},
    ],
    "projections": [{"pre": "in", "post": "hidden", "init": {"kind": "uniform", "low": -1.5, "high": 1.5}},
                    {"pre": "hidden", "post": "hidden"},
                    {"pre": "hidden", "post": "out", "init": {"kind": "uniform", "low": -1.5, "high": 1.5}}],
    "learning": {"lr": 1.0},
    "run": {"ticks": 2, "eval_every": 2, "batch_size": BATCH, "steps_per_sample": STEPS},
    "backend": {"kind": "batched", "dtype": "float64", "device": "cpu"},
    "output": {"agent_metrics": False},
    "log": {"level": "off"},
}

CASES = {
    "rate hidden, several steps": ({}, {}, None),
    "threshold hidden, lif output on its membrane": ({"policy": "threshold", "threshold": 0.2},
                                                    {"policy": "lif", "beta": 0.8}, "membrane"),
    "lif hidden, lif output counted": ({"policy": "lif", "beta": 0.9, "threshold": 0.5},
                                       {"policy": "lif", "beta": 0.7, "threshold": 0.3}, "count"),
    "lif zero reset, refractory, fast sigmoid": ({"policy": "lif", "beta": 0.95, "threshold": 0.4, "reset": "zero",
                                                  "refractory": 2, "surrogate": {"kind": "fast_sigmoid"}},
                                                 {"policy": "lif", "beta": 0.6, "reset": "none"}, "membrane"),
    "lif reset at once, subtract and zero": ({"policy": "lif", "beta": 0.85, "threshold": 0.3, "reset_delay": False,
                                              "refractory": 1},
                                             {"policy": "lif", "beta": 0.7, "threshold": 0.2, "reset": "zero",
                                              "reset_delay": False}, "membrane"),
    "random hidden, sigmoid surrogate": ({"policy": "random", "temperature": 0.7,
                                          "surrogate": {"kind": "sigmoid", "parameter": 5}}, {}, None),
}


#: Sequences (the mackey_glass task, one value per step, mse) and truncated BPTT: (hidden, out,
#: readout, bptt_window, sequence).
TRUNCATED = {
    "a sequence through a rate recurrent layer, read at the last step": ({}, {}, "last", None, True),
    "a sequence, last readout, window 4": ({}, {}, "last", 4, True),
    "a sequence, mean readout, window 2": ({}, {}, "mean", 2, True),
    "lif hidden, lif membrane readout, window 4": ({"policy": "lif", "beta": 0.9, "threshold": 0.5},
                                                   {"policy": "lif", "beta": 0.7, "threshold": 0.3}, "membrane", 4,
                                                   False),
    "lif reset at once, counted, window 3": ({"policy": "lif", "beta": 0.85, "threshold": 0.3, "reset_delay": False},
                                             {"policy": "lif", "beta": 0.7, "threshold": 0.2}, "count", 3, False),
    "lif hidden, last spike read, window 1": ({"policy": "lif", "beta": 0.9, "threshold": 0.2},
                                              {"policy": "threshold", "threshold": -0.2}, "last", 1, False),
}


def scenario(hidden: dict, out: dict, readout: str | None, window: int | None = None,
             sequence: bool = False) -> dict:
    data = copy.deepcopy(BASE)
    if window:
        data["run"]["bptt_window"] = window
    if sequence:  # windows of STEPS values, one per step
        data["task"] = {"kind": "mackey_glass", "n_samples": 60, "window": STEPS, "encoding": "sequence"}
        data["populations"][0]["size"] = data["populations"][2]["size"] = 1
    if hidden:
        data["populations"][1]["firing"] = hidden
    if out:
        data["populations"][2]["firing"] = out
    if readout:
        data["populations"][2]["readout"] = readout
    return data


def readout_of(readout: str | None, outs: list, membranes: list) -> torch.Tensor:
    """The output's readout over the steps (docs/semantics.md, "Readout"), on autograd's tensors."""
    if readout == "count":
        return torch.stack(outs).sum(0)
    if readout == "membrane":
        return torch.stack(membranes).sum(0) / STEPS
    if readout == "last":
        return outs[-1]
    return torch.stack(outs).sum(0) / STEPS


def autograd_tick(model, index: np.ndarray, hidden: dict, out: dict, readout: str | None,
                  window: int | None = None, sequence: bool = False):
    """The loss and the gradients of the tick, by autograd over the same steps; truncated BPTT as
    torch users write it: every carried state detached at each multiple of ``window``."""
    ex = model.executor
    n_in, n_out = (1, 1) if sequence else (2, 2)
    x = ex.inputs[index]
    w = {name: torch.tensor(ex.read("weights", name).reshape(*shape), requires_grad=True)
         for name, shape in (("in->hidden", (HIDDEN, n_in)), ("hidden->hidden", (HIDDEN, HIDDEN)),
                             ("hidden->out", (n_out, HIDDEN)))}
    b = {name: torch.tensor(ex.read("bias", name), requires_grad=True) for name in ("hidden", "out")}
    ph, po = policy_of(FiringSpec.model_validate(hidden)), policy_of(FiringSpec.model_validate(out))
    sh, so = initial_state((BATCH, HIDDEN), torch), initial_state((BATCH, n_out), torch)
    draws = torch.as_tensor(step_uniforms(3, ("firing", "hidden", 0), (STEPS, BATCH, HIDDEN)))
    h_prev, outs, membranes = None, [], []
    for s in range(STEPS):
        if window and s and s % window == 0:  # h.detach() every `window` steps
            h_prev = h_prev.detach()
            sh, so = (state._replace(membrane=state.membrane.detach()) for state in (sh, so))
        step_input = x[:, s:s + 1] if sequence else x
        u = b["hidden"] + step_input @ w["in->hidden"].T
        if h_prev is not None:
            u = u + h_prev @ w["hidden->hidden"].T
        h, sh = fire(ph, sh, u, torch, uniforms=draws[s], activation="tanh")
        o, so = fire(po, so, b["out"] + h @ w["hidden->out"].T, torch, activation="identity")
        outs.append(o)
        membranes.append(so.membrane)
        h_prev = h
    result = readout_of(readout, outs, membranes)
    if sequence:
        loss = F.mse_loss(result, ex.targets[index])
    else:
        loss = F.cross_entropy(result, ex.targets[index].argmax(1))
    grads = torch.autograd.grad(loss, list(w.values()) + list(b.values()), allow_unused=True)
    names = list(w) + list(b)
    return loss.item(), {n: (torch.zeros_like(p) if g is None else g).detach().numpy().ravel()
                         for n, g, p in zip(names, grads, list(w.values()) + list(b.values()))}


def assert_one_tick_steps_by(model, index: np.ndarray, loss: float, grads: dict[str, np.ndarray]) -> None:
    """One tick of the executor (SGD, lr 1) has the autograd loss and moves every weight and bias
    by exactly minus the autograd gradient, to rounding."""
    ex = model.executor
    before = {n: ex.read("weights" if "->" in n else "bias", n) for n in grads}
    result = ex.tick(0, index)
    assert result.loss == pytest.approx(loss, rel=1e-12)
    for name, g in grads.items():
        after = ex.read("weights" if "->" in name else "bias", name)
        np.testing.assert_allclose(before[name] - after, g, rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("hidden, out, readout", CASES.values(), ids=CASES.keys())
def test_one_tick_moves_the_weights_by_the_autograd_gradient(hidden, out, readout) -> None:
    model = ribbed.NetworkModel(scenario(hidden, out, readout))
    index = np.arange(BATCH)
    loss, grads = autograd_tick(model, index, hidden, out, readout)
    assert_one_tick_steps_by(model, index, loss, grads)
    assert sum(np.count_nonzero(g) for g in grads.values()) > 0, "the case must train something"


@pytest.mark.parametrize("case", TRUNCATED.values(), ids=TRUNCATED.keys())
def test_sequences_and_truncated_bptt_move_the_weights_by_the_autograd_gradient(case) -> None:
    """The sequence encoding, the last readout and bptt_window against autograd with the carried
    state detached every window (the oracle of truncated BPTT)."""
    hidden, out, readout, window, sequence = case
    model = ribbed.NetworkModel(scenario(*case))
    ex = model.executor
    index = np.arange(BATCH)
    loss, grads = autograd_tick(model, index, *case)
    before = {n: ex.read("weights" if "->" in n else "bias", n) for n in grads}
    assert_one_tick_steps_by(model, index, loss, grads)
    assert np.count_nonzero(grads["hidden->hidden"]) > 0, "credit must cross the steps somewhere"
    if window:  # the truncation changes the gradient: the full one differs
        _, full = autograd_tick(model, index, hidden, out, readout, None, sequence)
        assert not np.allclose(full["in->hidden"], -(ex.read("weights", "in->hidden") - before["in->hidden"]),
                               rtol=1e-6, atol=1e-9)


#: Direct feedback alignment through time: (hidden, out, readout, bptt_window).
DFA_CASES = {
    "rate hidden, several steps": ({}, {}, None, None),
    "lif hidden, lif output counted": ({"policy": "lif", "beta": 0.9, "threshold": 0.5},
                                       {"policy": "lif", "beta": 0.7, "threshold": 0.3}, "count", None),
    "lif hidden reset at once, membrane readout, window 2": (
        {"policy": "lif", "beta": 0.85, "threshold": 0.3, "reset_delay": False, "refractory": 1},
        {"policy": "lif", "beta": 0.7, "threshold": 0.2}, "membrane", 2),
    "random hidden, last readout": ({"policy": "random", "temperature": 0.7}, {}, "last", None),
}


def autograd_dfa_tick(model, index: np.ndarray, hidden: dict, out: dict, readout: str | None,
                      window: int | None):
    """The gradients of a tick in which the hidden population learns by DFA through time, by
    autograd in two passes: the output's δ[s] = dL/du_out[s] (its own BPTT), then the hidden
    population's gradient with, at each step, D δ_out[s] injected on what it emitted; the hidden
    population sees no credit along projections (the output reads its spikes detached, the
    recurrent input is detached), only its own membrane's, cut every ``window`` steps."""
    ex = model.executor
    x = ex.inputs[index]
    w = {name: torch.tensor(ex.read("weights", name).reshape(*shape), requires_grad=True)
         for name, shape in (("in->hidden", (HIDDEN, 2)), ("hidden->hidden", (HIDDEN, HIDDEN)),
                             ("hidden->out", (2, HIDDEN)))}
    b = {name: torch.tensor(ex.read("bias", name), requires_grad=True) for name in ("hidden", "out")}
    dfa = torch.as_tensor(ex.read("dfa", "hidden"))  # (HIDDEN, 2)
    ph, po = policy_of(FiringSpec.model_validate(hidden)), policy_of(FiringSpec.model_validate(out))
    sh, so = initial_state((BATCH, HIDDEN), torch), initial_state((BATCH, 2), torch)
    draws = torch.as_tensor(step_uniforms(3, ("firing", "hidden", 0), (STEPS, BATCH, HIDDEN)))
    h_prev, emitted, currents, outs, membranes = None, [], [], [], []
    for s in range(STEPS):
        if window and s and s % window == 0:
            sh, so = (state._replace(membrane=state.membrane.detach()) for state in (sh, so))
        u = b["hidden"] + x @ w["in->hidden"].T
        if h_prev is not None:
            u = u + h_prev.detach() @ w["hidden->hidden"].T
        h, sh = fire(ph, sh, u, torch, uniforms=draws[s], activation="tanh")
        u_out = b["out"] + h.detach() @ w["hidden->out"].T
        o, so = fire(po, so, u_out, torch, activation="identity")
        emitted.append(h)
        currents.append(u_out)
        outs.append(o)
        membranes.append(so.membrane)
        h_prev = h
    result = readout_of(readout, outs, membranes)
    loss = F.cross_entropy(result, ex.targets[index].argmax(1))
    out_params = [w["hidden->out"], b["out"]]
    grads = torch.autograd.grad(loss, out_params + currents, retain_graph=True, allow_unused=True)
    delta_out = [torch.zeros(BATCH, 2, dtype=torch.float64) if g is None else g for g in grads[2:]]
    injected = sum((h * (d @ dfa.T)).sum() for h, d in zip(emitted, delta_out))
    hidden_params = [w["in->hidden"], w["hidden->hidden"], b["hidden"]]
    hidden_grads = torch.autograd.grad(injected, hidden_params, allow_unused=True)
    names = ["hidden->out", "out", "in->hidden", "hidden->hidden", "hidden"]
    values = list(grads[:2]) + list(hidden_grads)
    params = out_params + hidden_params
    return loss.item(), {n: (torch.zeros_like(p) if g is None else g).detach().numpy().ravel()
                         for n, g, p in zip(names, values, params)}


@pytest.mark.parametrize("case", DFA_CASES.values(), ids=DFA_CASES.keys())
def test_dfa_through_time_moves_the_weights_by_the_injected_autograd_gradient(case) -> None:
    """A hidden population learning by direct feedback alignment over the steps: at each step it
    receives D δ_out[s] on what it emitted, turned into δ[s] by its own surrogate and membrane
    (docs/semantics.md, "Learning over the steps"); autograd with that gradient injected is the oracle."""
    hidden, out, readout, window = case
    data = scenario(hidden, out, readout, window)
    data["populations"][1]["learning"] = {"rule": "direct_feedback_alignment"}
    model = ribbed.NetworkModel(data)
    ex = model.executor
    index = np.arange(BATCH)
    loss, grads = autograd_dfa_tick(model, index, hidden, out, readout, window)
    assert_one_tick_steps_by(model, index, loss, grads)
    assert np.count_nonzero(grads["in->hidden"]) > 0, "the broadcast must reach the hidden population"
    counts = ex.message_counts
    # errors: the task's answer, and each output neuron's delta to each hidden neuron at every step
    assert counts[Kind.ERROR] == 2 + 2 * HIDDEN * STEPS


def test_the_sequence_encoding_feeds_chunk_s_at_step_s() -> None:
    """Digits row by row: the input population's output at step s is row s of the image."""
    data = scenario({}, {}, "last")
    data["task"] = {"kind": "digits", "encoding": "sequence"}
    data["run"]["steps_per_sample"] = 8
    data["populations"][0]["size"], data["populations"][2]["size"] = 8, 10
    model = ribbed.NetworkModel(data)
    images = model.dataset.X_train[:BATCH]
    records = timed.run_steps(model.executor, model.executor._plan, torch.as_tensor(images), ("", 0), False)
    steps = torch.stack([r.out for r in records["in"]]).numpy()
    np.testing.assert_array_equal(steps, images.reshape(BATCH, 8, 8).transpose(1, 0, 2))


def test_a_window_cuts_the_error_messages_of_delayed_projections() -> None:
    """(T - 1) - floor((T - 1) / k) crossings per synapse of a delayed projection, not T - 1."""
    counts = {}
    for window in (None, 2):
        model = ribbed.NetworkModel(scenario({}, {}, None, window))
        before = model.executor.message_counts.copy()
        model.executor.tick(0, np.arange(BATCH))
        counts[window] = (model.executor.message_counts - before)[Kind.ERROR]
    assert counts[None] - counts[2] == HIDDEN * HIDDEN * ((STEPS - 1) // 2)


def test_an_untimed_scenario_never_reaches_the_timed_tick() -> None:
    data = copy.deepcopy(BASE)
    data["run"]["steps_per_sample"] = 1
    model = ribbed.NetworkModel(data)
    assert model.executor._plan is None


def test_spikes_are_counted_one_per_outgoing_synapse_and_spike() -> None:
    model = ribbed.NetworkModel(scenario(*CASES["lif hidden, lif output counted"]))
    ex = model.executor
    before = ex.message_counts.copy()
    ex.tick(0, np.arange(BATCH))
    sent = ex.message_counts - before
    hidden = ex.read("y", "hidden")  # the last step's spikes: the counts are over all steps
    assert set(np.unique(hidden)) <= {0.0, 1.0}
    assert sent[Kind.SPIKE] > 0 and sent[Kind.SPIKE] % 1 == 0
    # inputs are direct: their synapses carry activations at every step, hidden ones spikes
    assert sent[Kind.ACTIVATION] == 2 + 2 + 2 * HIDDEN * STEPS


def test_a_timed_run_evaluates() -> None:
    model = ribbed.NetworkModel(scenario(*CASES["lif hidden, lif output counted"]))
    model.run()
    metrics = model.metrics
    assert len(metrics) >= 2 and np.isfinite(metrics.iloc[-1].filter(like="loss").to_numpy(float)).all()
    rate = model.executor.read("firing_rate", "hidden")
    assert np.all((rate >= 0) & (rate <= 1))


@pytest.mark.parametrize("case", list(CASES.values()) + list(TRUNCATED.values()),
                         ids=list(CASES.keys()) + list(TRUNCATED.keys()))
def test_the_reference_executor_agrees(case) -> None:
    """Agent by agent with explicit spike messages, the same ticks, weights and message counts."""
    data = scenario(*case)
    batched = ribbed.NetworkModel(data).executor
    data["backend"] = {"kind": "reference"}
    reference = ribbed.NetworkModel(data).executor
    for tick in range(3):
        index = np.arange(tick * BATCH, (tick + 1) * BATCH) % 32
        a, b = reference.tick(tick, index), batched.tick(tick, index)
        assert a.loss == pytest.approx(b.loss, rel=1e-9)
        np.testing.assert_allclose(a.outputs, b.outputs, rtol=1e-9, atol=1e-12)
    for name in ("in->hidden", "hidden->hidden", "hidden->out"):
        np.testing.assert_allclose(reference.read("weights", name), batched.read("weights", name), rtol=1e-7,
                                   atol=1e-8, err_msg=name)
    for name in ("hidden", "out"):
        np.testing.assert_allclose(reference.read("bias", name), batched.read("bias", name), rtol=1e-7, atol=1e-8)
    np.testing.assert_array_equal(reference.message_counts, batched.message_counts)
    held_out = reference.inputs[:16]
    p, q = reference.predict(held_out), batched.predict(held_out)
    np.testing.assert_allclose(p.outputs, q.outputs, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(p.firing_rate, q.firing_rate, rtol=1e-9, atol=1e-12)


def test_the_firing_state_the_tick_leaves_is_read_alike() -> None:
    data = scenario(*CASES["lif zero reset, refractory, fast sigmoid"])
    batched = ribbed.NetworkModel(data).executor
    data["backend"] = {"kind": "reference"}
    reference = ribbed.NetworkModel(data).executor
    for ex in (batched, reference):
        assert ex.read("membrane", "hidden") is None and ex.read("refractory", "hidden") is None
        ex.tick(0, np.arange(BATCH))
    for name, where in (("membrane", "hidden"), ("membrane", "out"), ("refractory", "hidden")):
        got, expected = batched.read(name, where), reference.read(name, where)
        assert got.shape == expected.shape == (BATCH, data["populations"][1 if where == "hidden" else 2]["size"])
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    assert set(np.unique(reference.read("refractory", "hidden"))) <= {0.0, 1.0, 2.0}
    assert not batched.read("refractory", "out").any()  # a spiking output without a refractory period
