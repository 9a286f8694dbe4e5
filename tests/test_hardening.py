"""Small hardening fixes (issue 14's first steps): control characters and YAML 1.2 floats in
scenario files, summary.json written whole or not at all, and the run's message totals."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pandas as pd
import pytest

import ribbed
from ribbed.errors import ScenarioError
from ribbed.scenarios.loader import load_scenario

XOR = """name: x
seed: 0
task: {kind: xor}
populations:
  - {name: in, size: 2, role: input}
  - {name: out, size: 2, role: output}
projections:
  - {pre: in, post: out}
"""


def test_a_control_character_is_a_located_error(tmp_path: Path):
    path = tmp_path / "ctl.yaml"
    path.write_text(XOR.replace("seed: 0", "seed: 0\x07"), encoding="utf-8")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    problem = caught.value.problems[0]
    assert problem.line == 2 and "control character" in problem.message and "0x0007" in problem.message


@pytest.mark.parametrize("written, value", [("1e-3", 0.001), ("2E-2", 0.02), ("+1.5e-1", 0.15), ("1.0e-3", 0.001)])
def test_exponent_floats_read_as_numbers_as_in_json(tmp_path: Path, written: str, value: float):
    path = tmp_path / "lr.yaml"
    path.write_text(XOR + f"learning: {{lr: {written}}}\n", encoding="utf-8")
    assert load_scenario(path).learning.lr == pytest.approx(value, rel=1e-15)


def test_summary_counts_every_message_of_the_run(tmp_path: Path):
    result = ribbed.run(load_scenario(_xor_dict(ticks=40)), out=tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert summary["messages"]["total"] == int(metrics["messages"].sum()) == int(result.model.executor.message_counts.sum())
    assert summary["messages"]["activation"] == int(metrics["msg_activation"].sum())
    assert summary["final"]["messages"] < summary["messages"]["total"]  # the last window only


def test_a_failed_summary_write_leaves_no_partial_file(tmp_path: Path, monkeypatch):
    import ribbed.runner as runner

    def full_disk(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runner.os, "replace", full_disk)
    with pytest.raises(ribbed.RibbedError, match="summary.json: cannot write: No space left on device"):
        ribbed.run(load_scenario(_xor_dict(ticks=5)), out=tmp_path / "run")
    assert not (tmp_path / "run" / "summary.json").exists()
    assert not list((tmp_path / "run").glob("*.partial"))


def _xor_dict(ticks: int) -> dict:
    return {"name": "x", "seed": 0, "task": {"kind": "xor"},
            "populations": [{"name": "in", "size": 2, "role": "input"},
                            {"name": "h", "size": 4, "activation": "tanh"},
                            {"name": "out", "size": 2, "role": "output", "activation": "identity"}],
            "projections": [{"pre": "in", "post": "h"}, {"pre": "h", "post": "out"}],
            "run": {"ticks": ticks, "batch_size": 8, "eval_every": 10}}
