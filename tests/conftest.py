"""Shared helpers: small scenarios built in Python, and models fed with given arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

import ribbed

# Every property-based test draws the same examples on every run (a test's own @settings keep this
# unless they say otherwise): a failure in CI is one a developer can run again.
settings.register_profile("ribbed", derandomize=True, deadline=None)
settings.load_profile("ribbed")


def layered_scenario(sizes, activations, *, rule="backprop", loss="cross_entropy", lr=0.1, optimizer="sgd",
                     connectivity=None, bias=True, seed=0, task=None, learning=None, extra_projections=(),
                     ticks=10, batch_size=8) -> dict:
    """A feed-forward scenario dict: populations p0 (input), p1.., pN (output)."""
    populations = [{"name": "p0", "size": sizes[0], "role": "input"}]
    for i, (size, activation) in enumerate(zip(sizes[1:], activations), start=1):
        populations.append({"name": f"p{i}", "size": size, "activation": activation, "bias": bias,
                            "role": "output" if i == len(sizes) - 1 else "hidden"})
    connectivity = connectivity or {}
    projections = [{"pre": f"p{i}", "post": f"p{i + 1}", "connectivity": connectivity.get(i, "all_to_all")}
                   for i in range(len(sizes) - 1)]
    projections += list(extra_projections)
    return {
        "name": "test", "seed": seed,
        "task": task or {"kind": "xor", "loss": loss},
        "populations": populations, "projections": projections,
        "learning": {"rule": rule, "lr": lr, "optimizer": optimizer, **(learning or {})},
        "run": {"ticks": ticks, "batch_size": batch_size, "eval_every": ticks},
    }


def write_npz(folder: Path, X_train, y_train, X_test=None, y_test=None, name="data.npz") -> Path:
    path = folder / name
    np.savez(path, X_train=X_train, y_train=y_train,
             X_test=X_train if X_test is None else X_test, y_test=y_train if y_test is None else y_test)
    return path


def npz_task(folder: Path, X, y, problem: str, loss: str) -> dict:
    return {"kind": "npz", "path": str(write_npz(folder, X, y)), "problem": problem, "loss": loss}


def model_from(data: dict) -> ribbed.NetworkModel:
    return ribbed.NetworkModel(ribbed.load_scenario(data))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


def assert_resume_is_exact(data: dict, cut: int, folder: Path):
    """Run ``data`` whole, and again interrupted after tick ``cut`` and resumed from its log's last
    snapshot: both logs verify, metrics.csv and agents.csv are the same file, and so is every
    value of the executors' state. Returns the whole run and the resumed one, and the state's values."""
    import warnings

    from ribbed.log import verify
    from ribbed.runner import resume

    def interrupt(model) -> None:
        if model.tick == cut:
            raise KeyboardInterrupt

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ribbed.RibbedWarning)
        whole = ribbed.run(data, out=folder / "whole")
        with pytest.raises(KeyboardInterrupt):
            ribbed.run(data, out=folder / "cut", on_tick=interrupt)
        resumed = resume(folder / "cut")
    assert verify(folder / "cut" / "run.log").ok and verify(folder / "whole" / "run.log").ok
    for name in ("metrics.csv", "agents.csv"):
        assert (folder / "cut" / name).read_text() == (folder / "whole" / name).read_text(), name
    values, _ = whole.model.executor.state()
    again, _ = resumed.model.executor.state()
    assert values.keys() == again.keys()
    for key in values:
        same = np.array_equal(values[key], again[key], equal_nan=True) if values[key] is not None else again[key] is None
        assert same, key
    return whole, resumed, values
