"""Exact ties decide the same way on every executor (docs/semantics.md, "Couplings" and
"Meta-controllers").

Two scenarios that hypothesis found in tests/test_executors.py, where the reference and batched
executors (both float64) agreed to the last bits on every value and still parted ways, because a
tie that holds exactly was broken by rounding on one of them:

* tree coupling over ReLU neurons: dead neurons have identical (zero) signatures, but a BLAS
  matrix-vector product gave two identical rows keys one ulp apart, depending on their place in
  the kernel's blocks and on the last bits of the mean, so the stable sort put them in different
  orders on the two executors;
* the confidence controller over an untrained guide (guidance exactly 0): e = v exactly, but the
  batched executor summed (g - d)^2 and d^2 in different orders, so alpha was 2.2e-16 instead of
  0; on the next tick without propagated error the credit was 1e-18 instead of 0, and chiral
  modulation, which counts the signs of the gradients (zero being a sign of its own), changed the
  step of every synapse of the neuron by a factor.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from conftest import model_from, write_npz
from ribbed.coupling.base import signature_projections
from ribbed.coupling.tree import TreeCoupling
from ribbed.meta.controllers import ConfidenceController
from ribbed.scenarios.guidance import ConfidenceMetaSpec

RTOL, ATOL = 1e-7, 1e-8  # tests/test_executors.py's tolerance


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> dict:
    """tests/test_executors.py's 5-input classification task, drawn the same way."""
    rng = np.random.default_rng(7)
    for n_in in range(2, 6):
        X = rng.standard_normal((40, n_in))
    path = write_npz(tmp_path_factory.mktemp("data"), X, np.arange(40) % 3, name="c5.npz")
    return {"kind": "npz", "path": str(path), "problem": "classification", "loss": "cross_entropy"}


def scenario(task: dict, seed: int, hidden: list[dict], batch_size: int, backward_every: int, skip: bool) -> dict:
    names = ["in"] + [p["name"] for p in hidden] + ["out"]
    projections = [{"pre": a, "post": b, "connectivity": "all_to_all", "storage": "auto", "frozen": False}
                   for a, b in zip(names, names[1:])]
    if skip:
        projections.append({"name": "skip", "pre": "in", "post": "out", "connectivity": "all_to_all",
                            "storage": "auto", "frozen": False})
    return {
        "schedule": {"backward_every": backward_every}, "name": "generated", "seed": seed, "task": task,
        "populations": [{"name": "in", "size": 5, "role": "input"}, *hidden,
                        {"name": "out", "size": 3, "role": "output", "activation": "identity"}],
        "projections": projections,
        "learning": {"rule": "backprop", "lr": 0.05},
        "run": {"ticks": 20, "batch_size": batch_size, "eval_every": 20},
    }


def learning(rule="backprop", optimizer="sgd", lr=0.01, kappa=0.0) -> dict:
    return {"rule": rule, "optimizer": optimizer, "lr": lr, "kappa": kappa}


def tree_over_relu(task: dict) -> dict:
    return scenario(task, seed=2, batch_size=1, backward_every=1, skip=False, hidden=[
        {"name": "h0", "size": 3, "learning": learning(), "activation": "relu"},
        {"name": "h1", "size": 5, "learning": learning(), "activation": "relu", "guide": "linear",
         "coupling": {"kind": "tree", "leaf_size": 1, "reorder_every": 3}, "meta": "confidence"},
    ])


def untrained_guide_with_chiral_modulation(task: dict) -> dict:
    return scenario(task, seed=202, batch_size=6, backward_every=3, skip=True, hidden=[
        {"name": "h0", "size": 3, "learning": learning("direct_feedback_alignment", "adam", 0.01, 0.5),
         "activation": "tanh", "guide": "mlp", "coupling": "direct", "meta": "confidence"},
        {"name": "h1", "size": 6, "learning": learning(), "activation": "identity", "guide": "linear",
         "coupling": "direct", "meta": "confidence"},
    ])


def run_both(data: dict):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = model_from({**data, "backend": {"kind": "reference"}})
        batched = model_from({**data, "backend": {"kind": "batched", "dtype": "float64", "device": "cpu"}})
        for tick in range(data["run"]["ticks"]):
            reference.step()
            batched.step()
            yield tick, reference, batched


def test_tree_coupling_regroups_dead_relu_neurons_alike(task):
    """At tick 3 neurons 0 and 4 of h1 are dead (signature 0); they were put in leaves 4 and 3
    by the batched executor and 3 and 4 by the reference."""
    for tick, reference, batched in run_both(tree_over_relu(task)):
        expected = reference.executor.read("cluster", "h1")
        np.testing.assert_array_equal(batched.executor.read("cluster", "h1"), expected,
                                      err_msg=f"clusters at tick {tick}")
        if tick == 3:
            assert expected.tolist() == [3, 2, 1, 0, 4]  # the dead neurons 0 and 4 in id order
        assert batched.last_result.loss == pytest.approx(reference.last_result.loss, rel=RTOL, abs=ATOL)


def test_an_untrained_guide_earns_no_trust_on_any_executor(task):
    """The loss parted by 7.6e-5 (relative) at tick 2, after a tick without propagated error."""
    for tick, reference, batched in run_both(untrained_guide_with_chiral_modulation(task)):
        assert batched.last_result.loss == pytest.approx(reference.last_result.loss, rel=RTOL, abs=ATOL), tick
        for name in ("h0", "h1"):
            alpha = reference.executor.read("alpha", name)
            np.testing.assert_allclose(batched.executor.read("alpha", name), alpha, rtol=RTOL, atol=ATOL)
            if tick == 0:  # guides predict 0 before their first delivery: alpha stays exactly 0
                assert np.all(batched.executor.read("alpha", name) == 0.0)
                assert np.all(alpha == 0.0)


# The signatures of h1's neurons 1-3 at the tick-3 regrouping above, as each executor computed
# them (float64, bit for bit); neurons 0 and 4 are dead: their signatures are 0.
REFERENCE_ROWS = [
    ["0x1.e818156a8fd71p-6", "0x1.ab2ae1e036ff0p-9", "0x1.b2b2b92e88f72p-6", "0x0.0p+0",
     "0x1.47be5ca618abap-6", "0x1.1b28645883cb0p-9", "0x1.2459501b08324p-6", "0x0.0p+0"],
    ["0x1.50e49de1e166ap-5", "0x1.f97e77eaa26cep-8", "0x1.11b4cee48d190p-5", "0x0.0p+0",
     "0x1.c5dc76997bb91p-6", "0x1.4f140bb53ae32p-8", "0x1.721773ac2d005p-6", "0x0.0p+0"],
    ["0x1.66d55228edc4cp-5", "0x1.e4f80bc10a25ep-8", "0x1.2a3650b0cc801p-5", "0x0.0p+0",
     "0x1.e2bafcd4c8d5cp-6", "0x1.4179080056d86p-8", "0x1.925cbad4b31fap-6", "0x0.0p+0"],
]
BATCHED_ROWS = [
    ["0x1.e818156a8fd6ap-6", "0x1.ab2ae1e036ff0p-9", "0x1.b2b2b92e88f6bp-6", "0x0.0p+0",
     "0x1.47be5ca618ab5p-6", "0x1.1b28645883cafp-9", "0x1.2459501b0831fp-6", "0x0.0p+0"],
    ["0x1.50e49de1e166bp-5", "0x1.f97e77eaa26ccp-8", "0x1.11b4cee48d191p-5", "0x0.0p+0",
     "0x1.c5dc76997bb92p-6", "0x1.4f140bb53ae30p-8", "0x1.721773ac2d007p-6", "0x0.0p+0"],
    ["0x1.66d55228edc4ep-5", "0x1.e4f80bc10a25cp-8", "0x1.2a3650b0cc802p-5", "0x0.0p+0",
     "0x1.e2bafcd4c8d5dp-6", "0x1.4179080056d85p-8", "0x1.925cbad4b31fcp-6", "0x0.0p+0"],
]
DIRECTION = ["0x1.1761b46b67c11p-1", "0x1.e7082e3a54274p-1", "-0x1.c7078d6676562p+0", "0x1.c84a8cdd4c11bp-1",
             "-0x1.08e89b9855df0p+1", "-0x1.9b5360b9fbea0p-4", "-0x1.f81e1ff0609d9p-6", "0x1.0e8aca8091deep+1"]


def signatures(rows: list[list[str]]) -> np.ndarray:
    live = np.array([[float.fromhex(x) for x in row] for row in rows])
    dead = np.zeros((1, live.shape[1]))
    return np.concatenate([dead, live, dead])


class Spec:
    leaf_size, reorder_every, signature_decay = 1, 3, 0.1


@pytest.mark.parametrize("rows", [REFERENCE_ROWS, BATCHED_ROWS], ids=["reference", "batched"])
def test_identical_signatures_get_identical_keys_and_keep_id_order(rows):
    tree = TreeCoupling(5, Spec, 8, np.random.default_rng(0))
    tree.direction = np.array([float.fromhex(x) for x in DIRECTION])
    sig = signatures(rows)
    key = signature_projections(sig, tree.direction[None, :])[:, 0]
    assert key[0] == key[4]
    assert tree.order(sig).tolist() == [3, 2, 1, 0, 4]
    # the key is the centred signature's dot product with the direction, to rounding
    np.testing.assert_allclose(key, (sig - sig.mean(axis=0)) @ tree.direction, rtol=1e-14)


def test_identical_rows_project_identically_wherever_they_sit():
    """Many identical rows among random ones, several directions (the hash coupling's planes)."""
    rng = np.random.default_rng(3)
    sig = rng.standard_normal((37, 9))
    same = [0, 4, 5, 17, 36]
    sig[same] = rng.standard_normal(9)
    planes = rng.standard_normal((3, 9))
    projections = signature_projections(sig, planes)
    assert projections.shape == (37, 3)
    assert np.all(projections[same] == projections[same[0]])
    np.testing.assert_allclose(projections, (sig - sig.mean(axis=0)) @ planes.T, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("xp", [np, torch], ids=["numpy", "torch"])
def test_confidence_in_silent_guidance_is_exactly_zero(xp):
    """Unit 0's guidance was 0 on every row: its error and square are one rounding apart, as two
    summation orders leave them; unit 1's guide said something; unit 2 got no feedback."""
    def array(values):
        return np.array(values) if xp is np else torch.tensor(values, dtype=torch.float64)

    controller = ConfidenceController(ConfidenceMetaSpec(kind="confidence", decay=0.5, alpha_max=1.0))
    state = {k: array([v] * 3) for k, v in controller.initial_state().items()}
    square = 0.05432320300386219
    stats = {"error": array([np.nextafter(square, 0.0), 0.01, 0.0]), "square": array([square, 0.04, 0.0]),
             "cross": array([0.0, 0.03, 0.0]), "guide_square": array([0.0, 0.02, 0.0])}
    alpha = controller.update(state, stats, array([1.0, 1.0, 0.0]), 1.0, xp)
    alpha = np.asarray(alpha)
    assert alpha[0] == 0.0 and alpha[2] == 0.0
    assert alpha[1] == pytest.approx(1 - 0.01 / 0.04)
    assert float(state["error"][0]) == float(state["square"][0])
