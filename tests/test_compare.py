"""``ribbed compare``: final metrics of runs and sweeps side by side, with 95% intervals and Welch's test."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from report_runs import run_dir, sweep_dir
from scipy import stats
from typer.testing import CliRunner

from ribbed.cli import app
from ribbed.compare import compare
from ribbed.errors import RibbedError


def finals(folder, point: str) -> np.ndarray:
    """The final held-out accuracy of each seed of a sweep's grid point, read from its metrics.csv files."""
    return np.array([pd.read_csv(d / "metrics.csv")["test_accuracy"].iloc[-1]
                     for d in sorted(folder.iterdir()) if d.is_dir() and d.name.startswith(point)])


def test_a_sweeps_points_are_compared_with_intervals_and_welchs_test():
    folder = sweep_dir()
    result = compare([folder, run_dir("digits")], ["test_accuracy"])
    labels = [e.label for e in result.entries]
    assert labels == [f"{folder.name} [lr=0.02]", f"{folder.name} [lr=0.2]", run_dir("digits").name]
    slow, fast = finals(folder, "0-"), finals(folder, "1-")
    assert len(slow) == len(fast) == 3
    reference = result.cells[("test_accuracy", labels[0])]
    half = stats.t.ppf(0.975, 2) * slow.std(ddof=1) / math.sqrt(3)
    assert reference.interval.mean == pytest.approx(slow.mean())
    assert (reference.interval.lo, reference.interval.hi) == pytest.approx((slow.mean() - half, slow.mean() + half))
    assert math.isnan(reference.p)
    other = result.cells[("test_accuracy", labels[1])]
    assert other.difference == pytest.approx(fast.mean() - slow.mean())
    assert other.p == pytest.approx(stats.ttest_ind(fast, slow, equal_var=False).pvalue)
    single = result.cells[("test_accuracy", labels[2])]  # one run: a mean, no interval, no test
    assert single.interval.n == 1 and math.isnan(single.interval.lo) and math.isnan(single.p)


def test_default_metrics_are_the_score_losses_and_specialization():
    result = compare([run_dir("digits"), run_dir("digits-specialize", 60, 20)])
    assert result.metrics[:3] == ["test_accuracy", "test_loss", "train_loss"]
    assert "hidden_selectivity_mean" in result.metrics


def test_an_unknown_metric_or_folder_is_a_located_error(tmp_path):
    with pytest.raises(RibbedError) as caught:
        compare([run_dir("digits")], ["no_such_metric"])
    problem = caught.value.problems[0]
    assert problem.path == "--metric" and "test_accuracy" in problem.fix
    with pytest.raises(RibbedError) as caught:
        compare([run_dir("digits"), tmp_path])
    assert caught.value.problems[0].source == str(tmp_path)


def test_the_command_prints_the_table_and_writes_json(tmp_path):
    runner = CliRunner()
    out = tmp_path / "comparison.json"
    result = runner.invoke(app, ["compare", str(sweep_dir()), "--metric", "test_accuracy", "--json", str(out)],
                           terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Welch p" in result.output and "lr=0.2" in result.output and " ± " in result.output
    data = json.loads(out.read_text())
    assert data["reference"].endswith("[lr=0.02]")
    rows = data["metrics"]["test_accuracy"]
    assert [r["n"] for r in rows] == [3, 3] and rows[0]["welch_p"] is None and 0 <= rows[1]["welch_p"] <= 1
    result = runner.invoke(app, ["compare", str(tmp_path)])
    assert result.exit_code == 2
    assert "neither a run directory" in result.output
