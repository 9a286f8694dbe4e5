"""What docs/semantics.md and docs/log-format.md state exactly is what ribbed does: the data of a
run regenerated from numpy (and scikit-learn, which the page names) alone, the task's answer in
the log, the end record's keys, and a chiral share that counts the synapse itself."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import ribbed
from conftest import layered_scenario
from ribbed.log import open_log

FIXTURES = Path(__file__).parent / "fixtures" / "logs"


# --------------------------------------------------------------------------- the page's recipes, without ribbed


def page_rng(seed: int, *path: str | int) -> np.random.Generator:
    """docs/semantics.md, "From a name to a generator"."""
    key = tuple(part if isinstance(part, int) else zlib.crc32(part.encode("utf-8")) for part in path)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy=seed, spawn_key=key)))


def page_xor(seed: int, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    r = page_rng(seed, "data", "samples")
    signs = r.choice([-1.0, 1.0], size=(n, 2))
    X = signs + noise * r.standard_normal((n, 2))
    return X, (signs[:, 0] != signs[:, 1]).astype(np.int64)


def page_split(seed: int, X: np.ndarray, y: np.ndarray, test_fraction: float, stratify: bool):
    s = int(page_rng(seed, "data", "split").integers(0, 2**31 - 1))
    return train_test_split(X, y, test_size=test_fraction, random_state=s, stratify=y if stratify else None)


def page_standardize(X_train: np.ndarray, X_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = X_train.mean(axis=0)
    deviation = X_train.std(axis=0, ddof=0)
    deviation[deviation == 0] = 1.0
    return (X_train - mean) / deviation, (X_test - mean) / deviation


def page_batch(seed: int, n_train: int, batch_size: int, tick: int) -> np.ndarray:
    positions = np.arange(tick * batch_size, (tick + 1) * batch_size)
    return np.array([page_rng(seed, "data", "order", int(p // n_train)).permutation(n_train)[p % n_train]
                     for p in positions], dtype=np.int64)


def decoded(array: dict) -> np.ndarray:
    """An encoded array of the log (docs/log-format.md, "Bodies and arrays")."""
    return np.frombuffer(array["data"], dtype=np.dtype(array["dtype"])).reshape(array["shape"])


# --------------------------------------------------------------------------- the data


def test_a_logged_runs_data_order_regenerates_from_the_page() -> None:
    """The log fixture was written by an earlier ribbed: its batches follow from the page."""
    with open_log(FIXTURES / "xor-dfa-v1-reference.log") as log:
        scenario, seed = log.header["scenario"], log.header["seed"]
        batches = {int(tick): decoded(log.tick(int(tick)).body["batch"]) for tick in log.ticks}
    task, batch_size = scenario["task"], scenario["run"]["batch_size"]
    X, y = page_xor(seed, task["n_samples"], task["noise"])
    X_train, _, _, _ = page_split(seed, X, y, task["test_fraction"], stratify=True)
    assert len(batches) == scenario["run"]["ticks"] and len(batches) * batch_size > len(X_train)  # two epochs
    for tick, batch in batches.items():
        np.testing.assert_array_equal(batch, page_batch(seed, len(X_train), batch_size, tick))


def test_batches_that_span_epochs_and_the_standardized_split_regenerate_from_the_page(tmp_path: Path) -> None:
    data = layered_scenario([2, 3, 2], ["tanh", "identity"], seed=11, ticks=30, batch_size=8,
                            task={"kind": "xor", "n_samples": 50, "noise": 0.3, "test_fraction": 0.3})
    data["log"] = {"level": "summary"}
    result = ribbed.run(data, out=tmp_path / "run")
    X, y = page_xor(11, 50, 0.3)
    X_train, X_test, y_train, y_test = page_split(11, X, y, 0.3, stratify=True)
    X_train, X_test = page_standardize(X_train, X_test)
    dataset = result.model.dataset
    np.testing.assert_array_equal(dataset.y_train, y_train)
    np.testing.assert_array_equal(dataset.y_test, y_test)
    np.testing.assert_allclose(dataset.X_train, X_train, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dataset.X_test, X_test, rtol=1e-12, atol=1e-12)
    with open_log(tmp_path / "run" / "run.log") as log:
        for tick in log.ticks:
            np.testing.assert_array_equal(decoded(log.tick(int(tick)).body["batch"]),
                                          page_batch(11, len(y_train), 8, int(tick)))
    assert 30 * 8 > 2 * len(y_train) and len(y_train) % 8  # batches span two epoch boundaries


def test_digits_standardization_is_the_population_deviation_and_constant_pixels_become_zero() -> None:
    digits = load_digits()
    X_train, X_test, y_train, _ = page_split(4, digits.data.astype(np.float64), digits.target.astype(np.int64),
                                             0.2, stratify=True)
    constant = X_train.std(axis=0) == 0
    assert constant.any(), "some border pixels are blank in every training image"
    X_train, X_test = page_standardize(X_train, X_test)
    data = ribbed.load_scenario("digits").model_dump()
    data["seed"] = 4
    dataset = ribbed.NetworkModel(data).dataset
    np.testing.assert_array_equal(dataset.y_train, y_train)
    np.testing.assert_allclose(dataset.X_train, X_train, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dataset.X_test, X_test, rtol=1e-10, atol=1e-12)
    assert np.all(dataset.X_train[:, constant] == 0)
    assert np.allclose(dataset.X_train[:, ~constant].std(axis=0, ddof=0), 1.0)
    assert not np.allclose(dataset.X_train[:, ~constant].std(axis=0, ddof=1), 1.0)  # the conventions differ here


# --------------------------------------------------------------------------- the log


@pytest.mark.parametrize("task, loss", [("xor", "cross_entropy"), ("sine", "mse")])
def test_the_logged_answer_is_the_per_sample_gradient(tmp_path: Path, task: str, loss: str) -> None:
    sizes = [2, 4, 2] if task == "xor" else [1, 4, 1]
    data = layered_scenario(sizes, ["tanh", "identity"], task={"kind": task, "loss": loss}, ticks=4, batch_size=5)
    data["log"] = {"level": "messages"}
    result = ribbed.run(data, out=tmp_path / "run")
    dataset = result.model.dataset
    targets = dataset.targets(dataset.y_train)
    with open_log(tmp_path / "run" / "run.log") as log:
        for tick in log.ticks:
            body = log.tick(int(tick)).body
            batch, outputs, answer = (decoded(body[key]) for key in ("batch", "outputs", "answer"))
            if loss == "cross_entropy":
                softmax = np.exp(outputs - outputs.max(axis=1, keepdims=True))
                expected = softmax / softmax.sum(axis=1, keepdims=True) - targets[batch]
            else:
                expected = 2.0 * (outputs - targets[batch]) / outputs.shape[1]
            np.testing.assert_allclose(answer, expected, rtol=1e-10, atol=1e-12)
        assert list(log.end) == ["type", "tick", "status", "error"]
        assert (log.end["tick"], log.end["status"], log.end["error"]) == (4, "completed", None)


# --------------------------------------------------------------------------- chiral modulation


@pytest.mark.parametrize("backend", ["reference", "batched"])
def test_a_single_plastic_synapse_counts_itself_in_the_chiral_share(backend: str) -> None:
    """With one plastic synapse per neuron, a = 1: every step is scaled by 1 + kappa."""
    steps = {}
    for kappa in (0.0, 0.5):
        data = layered_scenario([2, 2], ["identity"], connectivity={0: "one_to_one"}, bias=False, lr=0.1,
                                learning={"kappa": kappa}, ticks=1)
        data["backend"] = {"kind": backend, "dtype": "float64"} if backend == "batched" else {"kind": backend}
        model = ribbed.NetworkModel(data)
        before = model.projections["p0->p1"].get_weights()
        model.step()
        steps[kappa] = model.projections["p0->p1"].get_weights() - before
    assert np.all(steps[0.0] != 0)
    np.testing.assert_allclose(steps[0.5], 1.5 * steps[0.0], rtol=1e-12)


# --------------------------------------------------------------------------- the README's Python API


def test_the_readme_feedback_example_runs_and_says_what_it_gets() -> None:
    import re

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## The same run from Python"):readme.index("## How a tick works")]
    code = re.findall(r"```python\n(.*?)```", section, re.S)[1]
    namespace: dict = {"ribbed": ribbed}
    exec(compile(code, "README.md", "exec"), namespace)
    fa, dfa, B, D = (namespace[name] for name in ("fa", "dfa", "B", "D"))
    assert B.shape == (64, 10) and not np.isnan(B).any()  # all to all: a feedback weight per synapse
    assert D.shape == (64, 10)
    np.testing.assert_array_equal(dfa.populations["hidden"].get_dfa_matrix(), -D)
    assert fa.populations["hidden"].get_dfa_matrix() is None
    assert dfa.projections["hidden->classes"].get_feedback() is None
    with pytest.raises(ValueError, match="does not use feedback_alignment"):
        dfa.projections["hidden->classes"].set_feedback(np.zeros(640))


BACKENDS = {"reference": {"kind": "reference"}, "batched": {"kind": "batched", "dtype": "float64"},
            # the hidden population split over two shards: each block takes its columns of the draws
            "ray": {"kind": "ray", "dtype": "float64", "shards": 2, "partitions": 2, "split_above": 2}}


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_the_random_policys_and_rate_encodings_draws_regenerate_from_the_page(backend: str) -> None:
    """docs/semantics.md, "Time within a tick", "Random draws" and "Input encodings": the uniforms of
    tick t are rng(("firing", population, t)).random((T, B, size)) and rng(("encoding", t)).random((T, B,
    n_inputs)); a random neuron spikes where v < sigmoid(u / temperature), a rate-encoded input where
    v < sigmoid(gain x)."""
    steps, batch, size, temperature, gain, seed = 3, 4, 5, 0.7, 2.0, 21
    model = ribbed.NetworkModel({
        "name": "draws", "seed": seed,
        "task": {"kind": "xor", "n_samples": 40, "encoding": {"kind": "rate", "gain": gain}},
        "populations": [{"name": "in", "size": 2, "role": "input"},
                        {"name": "h", "size": size, "firing": {"policy": "random", "temperature": temperature}},
                        {"name": "out", "size": 2, "role": "output", "activation": "identity"}],
        "projections": [{"pre": "in", "post": "h"}, {"pre": "h", "post": "out"}],
        "run": {"ticks": 2, "batch_size": batch, "eval_every": 2, "steps_per_sample": steps},
        "backend": BACKENDS[backend],
        "log": {"level": "off"},
    })
    executor = model.executor
    if backend == "ray":
        assert len(executor.partitioning.blocks["h"]) == 2
    index = np.arange(batch)
    executor.tick(0, index)
    v_in = page_rng(seed, "encoding", 0).random((steps, batch, 2))[-1]
    x = executor.inputs[index]
    x = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
    np.testing.assert_array_equal(executor.read("y", "in"), (v_in < 0.5 * (1 + np.tanh(gain * x / 2))) * 1.0)
    v = page_rng(seed, "firing", "h", 0).random((steps, batch, size))[-1]
    u = executor.read("u", "h")
    np.testing.assert_array_equal(executor.read("y", "h"), (v < 0.5 * (1 + np.tanh(u / temperature / 2))) * 1.0)
    executor.close()
