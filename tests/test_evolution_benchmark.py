"""benchmarks/evolution.py's machinery, without running it: the arms differ only where they should
(selection, the fast settings, no evolution for the fixed kinds), the controls carry no
guide, every task and plan gets a folder of its own, and the table chooses the controls' learning
rates on the selection seeds only, reports the guided arms at both learning rates, and compares
every evolved arm by Welch's test.  Not a timed test."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(ROOT / "benchmarks"))  # (it borrows guided_learning's helpers, as a script does)
    spec = importlib.util.spec_from_file_location("evolution_benchmark", ROOT / "benchmarks" / "evolution.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)
        sys.path.remove(str(ROOT / "benchmarks"))


@pytest.fixture
def plan(bench):
    return bench.Plan(seeds=[0, 1, 2], selection_seeds=[100, 101], ticks=400, lr_factors=[1.0, 4.0])


def test_the_arms_differ_only_in_what_they_test(bench, plan):
    for task in bench.TASKS:
        scenario = bench.base_scenario(task, plan, True)
        arms = bench.guided_arms(scenario)
        assert list(arms) == ["evolved", "random search", "evolved, fast", "random search, fast",
                              "fixed linear", "fixed mlp"]
        for suffix in ("", ", fast"):
            evolved, random_search = arms["evolved" + suffix], arms["random search" + suffix]
            assert evolved["evolution"].pop("selection") == "tournament"
            assert random_search["evolution"].pop("selection") == "random"
            assert evolved == random_search
        assert arms["evolved, fast"]["evolution"] == {**arms["evolved"]["evolution"], **bench.FAST}
        assert "evolution" not in arms["fixed linear"] and "evolution" not in arms["fixed mlp"]
        assert arms["fixed linear"]["identity"] == arms["fixed mlp"]["identity"] == ["readout"]
        ribbed_scenario = dict(scenario, populations=[*scenario["populations"]])
        for guide in arms.values():  # every arm is a valid scenario
            ribbed_scenario["populations"][1] = {**scenario["populations"][1], "guide": guide}
            bench.ribbed.load_scenario(ribbed_scenario)
        unguided = bench.base_scenario(task, plan, False)
        assert "guide" not in unguided["populations"][1] and "coupling" not in unguided and "meta" not in unguided
        assert unguided["schedule"] == scenario["schedule"] == {**scenario["schedule"], "backward_every": 4}
    keys = {plan.key("digits"), plan.key("moons"), bench.Plan(seeds=[0], selection_seeds=[100], ticks=400).key("digits")}
    assert len(keys) == 3


def synthetic_frames(bench, plan) -> dict[str, pd.DataFrame]:
    """Final rows as the sweeps give them: controls over two lrs on reported and selection seeds
    (the selection seeds prefer 4x, the reported ones 1x), guided arms at 0.02 and 0.08."""
    rng = np.random.default_rng(0)
    frames = {}
    for family in bench.CONTROLS:
        rows = [{"seed": s, bench.LR_FIELD: lr, "test_accuracy": (0.9 if (lr > 0.05) == (s >= 100) else 0.8)
                 + rng.normal(0, 0.01)} for s in plan.seeds + plan.selection_seeds for lr in (0.02, 0.08)]
        frames[family] = pd.DataFrame(rows)
    scenario = bench.base_scenario("digits", plan, True)
    rows = []
    for index, guide in enumerate(bench.guided_arms(scenario).values()):
        for lr in (0.02, 0.08):
            rows += [{"seed": s, bench.LR_FIELD: lr, bench.GUIDE_FIELD: str(guide),
                      "test_accuracy": 0.85 + 0.01 * index + rng.normal(0, 0.01), "guide_r2": 0.5 + rng.normal(0, 0.05),
                      "served_newborn": 0.5, "served_mlp": 0.0} for s in plan.seeds]
    frames["guided"] = pd.DataFrame(rows)
    return frames


def test_the_table_tunes_on_selection_seeds_and_compares_every_evolved_arm(bench, plan):
    frames = synthetic_frames(bench, plan)
    result = bench.table("digits", frames, plan, {"evolved": 0.004, "unguided": 0.001})
    rows = {row["label"]: row for row in result["rows"]}
    assert rows["(a) unguided, tuned lr"]["lr"] == pytest.approx(0.08)  # the selection seeds' choice
    assert rows["evolved @ tuned lr"]["lr"] == pytest.approx(0.08) and rows["evolved"]["lr"] == pytest.approx(0.02)
    assert rows["evolved @ tuned lr"]["seconds_per_tick"] == rows["evolved"]["seconds_per_tick"] == 0.004
    assert rows["unguided, same lr"]["seconds_per_tick"] == 0.001
    for row in result["rows"]:
        assert row["seeds"] == plan.seeds
    assert result["best_fixed"] == "fixed mlp"  # the later arms are made better
    comparisons = {(c["evolved"], c["against"]): c for c in result["comparisons"]}
    assert ("evolved", "random search @ tuned lr") not in comparisons  # only arms at the same lr
    c = comparisons[("evolved", "random search")]
    expected = stats.ttest_ind(rows["evolved"]["accuracy"], rows["random search"]["accuracy"], equal_var=False)
    assert c["accuracy_p"] == pytest.approx(expected.pvalue)
    assert {against for (evolved, against) in comparisons if evolved == "evolved, fast @ tuned lr"} == {
        "random search @ tuned lr", "random search, fast @ tuned lr", "fixed linear @ tuned lr",
        "fixed mlp @ tuned lr", "unguided, same lr", "(a) unguided, tuned lr", "(b) broadcast (dfa), tuned lr",
        "(c) error every tick, tuned lr"}
    assert "task digits" in bench.render(result)
