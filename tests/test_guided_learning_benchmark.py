"""benchmarks/guided_learning.py's machinery on a tiny plan (2 seeds, 8 ticks): its sweeps run
through ``ribbed.sweep``, the controls' learning rates are chosen on the selection seeds only,
the messages each configuration sends are what the semantics say, and every guided
configuration is compared with every control.  Not a timed test."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("guided_learning_benchmark", ROOT / "benchmarks" / "guided_learning.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def tiny(bench, tmp_path_factory):
    plan = bench.Plan(seeds=[0, 1], selection_seeds=[100], ticks=8, eval_every=4, every=4, meta="confidence",
                      guided=[("linear", "direct")], lr_factors=[1, 4])
    folder = tmp_path_factory.mktemp("bench")
    return plan, folder, bench.benchmark(plan, folder, workers=1)


def test_the_quick_plan_is_small_and_the_full_plan_has_every_configuration(bench):
    quick, full = bench.quick_plan(), bench.full_plan()
    assert len(quick.seeds) == 3 and quick.guided == [("mlp", "direct"), ("linear", "direct")]
    assert len(full.seeds) == 5 and len(full.guided) == 9
    assert not set(quick.seeds) & set(quick.selection_seeds) and not set(full.seeds) & set(full.selection_seeds)
    assert quick.key != full.key  # separate result folders
    assert bench.guided_sweep(full, 0.32)["grid"][bench.LR_FIELD] == [0.02, 0.32]
    full.tuned_guides = False
    assert bench.guided_sweep(full, 0.32)["grid"][bench.LR_FIELD] == [0.02]


def test_every_configuration_and_control_is_reported_on_the_reported_seeds(tiny):
    plan, folder, result = tiny
    labels = [row["label"] for row in result["rows"]]
    assert labels == ["direct linear", "direct linear, tuned lr", "unguided, same lr", "(a) unguided, tuned lr",
                      "(b) broadcast (dfa)", "(c) error every tick"]
    rows = {row["label"]: row for row in result["rows"]}
    # The guides run at their own lr and at the one chosen for control a.
    assert rows["direct linear"]["lr"] == pytest.approx(0.02)
    assert rows["direct linear, tuned lr"]["lr"] == pytest.approx(rows["(a) unguided, tuned lr"]["lr"])
    for row in result["rows"]:
        assert row["seeds"] == [0, 1]
        assert np.isfinite(row["accuracy_mean"]) and np.isfinite(row["accuracy_ci95"])
        half = stats.t.ppf(0.975, 1) * np.std(row["accuracy"], ddof=1) / np.sqrt(2)
        assert row["accuracy_ci95"] == pytest.approx(half)
    for family in ("guided", "unguided", "broadcast", "every-tick"):
        assert (folder / family / "sweep.parquet").exists()


def test_the_controls_learning_rate_is_chosen_on_the_selection_seeds(tiny):
    plan, folder, result = tiny
    rows = {row["label"]: row for row in result["rows"]}
    for label, family in (("(a) unguided, tuned lr", "unguided"), ("(b) broadcast (dfa)", "broadcast"),
                          ("(c) error every tick", "every-tick")):
        frame = pd.read_parquet(folder / family / "sweep.parquet")
        last = frame.sort_values("tick").groupby("point").tail(1)
        selection = last[last["seed"] == 100].set_index("populations.hidden.learning.lr")["test_accuracy"]
        assert rows[label]["lr"] == pytest.approx(selection.idxmax())
        reported = last[(last["seed"].isin([0, 1])) & np.isclose(last["populations.hidden.learning.lr"],
                                                                  rows[label]["lr"])]
        assert sorted(rows[label]["accuracy"]) == sorted(reported["test_accuracy"])
    assert rows["unguided, same lr"]["lr"] == pytest.approx(0.02)


def test_messages_are_those_of_each_configuration(tiny):
    plan, folder, result = tiny
    rows = {row["label"]: row for row in result["rows"]}
    # Error ticks 0 and 4 of 8: the same error messages for guides and controls a and b.
    sparse = {rows[k]["error_messages"] for k in ("direct linear", "direct linear, tuned lr", "unguided, same lr",
                                                   "(a) unguided, tuned lr", "(b) broadcast (dfa)")}
    assert sparse == {8 * 10 + 2 * 64 * 10}
    assert rows["(c) error every tick"]["error_messages"] == 8 * 10 + 8 * 64 * 10
    # The context: every tick to guided neurons, on the 6 ticks without error to the broadcast control.
    assert rows["direct linear"]["target_messages"] == 8 * 64
    assert rows["(b) broadcast (dfa)"]["target_messages"] == 6 * 64
    assert rows["(a) unguided, tuned lr"]["target_messages"] == 0


def test_each_guided_configuration_is_compared_with_each_control_by_welch(bench, tiny):
    plan, folder, result = tiny
    rows = {row["label"]: row for row in result["rows"]}
    controls = ["unguided, same lr", "(a) unguided, tuned lr", "(b) broadcast (dfa)", "(c) error every tick"]
    assert [(c["guided"], c["control"]) for c in result["comparisons"]] == [
        (guided, control) for guided in ("direct linear", "direct linear, tuned lr") for control in controls]
    for c in result["comparisons"]:
        a, b = rows[c["guided"]]["accuracy"], rows[c["control"]]["accuracy"]
        p = stats.ttest_ind(a, b, equal_var=False).pvalue
        assert c["welch_p"] == pytest.approx(p, nan_ok=True)
        assert c["verdict"] == ("no difference" if not p < 0.05 else "better" if np.mean(a) > np.mean(b) else "worse")
    text = bench.render(result)
    assert all(row["label"] in text for row in result["rows"])
    json.dumps(bench.plain(result), allow_nan=False)  # the summary is strict JSON
