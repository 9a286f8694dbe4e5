"""Mesa owns time: ``model.steps`` is the tick count everywhere, restored by ``run --resume`` and
``model_at``, and the DataCollector's records are keyed by it."""

from __future__ import annotations

from pathlib import Path

import pytest

import ribbed
from ribbed.log import model_at
from ribbed.runner import resume
from test_log import quiet_run, short


def test_a_step_is_a_tick_and_mesa_counts_it():
    model = ribbed.NetworkModel(short("xor", "batched", ticks=12))
    assert model.steps == model.tick == 0
    model.step()
    model.step()
    assert model.steps == model.tick == 2
    model.run()
    assert model.steps == model.tick == 14
    # The agent records are keyed by Mesa's steps, which are the evaluations' ticks: step()
    # evaluated the start (tick 0), run() every eval_every ticks and at its last tick.
    assert sorted(set(model.agent_metrics.index.get_level_values("Step"))) == [0, 10, 14]
    assert model.metrics["tick"].tolist() == [0, 10, 14]


def test_a_failed_tick_is_not_counted():
    model = ribbed.NetworkModel(short("xor", "batched", ticks=4))

    def fail(tick, index):
        raise RuntimeError("boom")

    model.step()
    model.executor.tick = fail
    with pytest.raises(RuntimeError, match="boom"):
        model.step()
    assert model.steps == 1


def test_resume_and_model_at_restore_mesa_steps(tmp_path: Path):
    scenario = short("xor", "batched", level="summary", ticks=30, eval_every=10)
    whole = quiet_run(scenario, tmp_path / "whole")

    def interrupt(model) -> None:
        if model.tick == 25:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        quiet_run(scenario, tmp_path / "cut", on_tick=interrupt)
    resumed = resume(tmp_path / "cut")
    assert resumed.model.steps == resumed.model.tick == 30
    steps = sorted(set(resumed.model.agent_metrics.index.get_level_values("Step")))
    assert steps == [30]  # keyed by the tick, not by the steps since the resume (earlier rows: agents.csv)
    assert resumed.model.metrics["tick"].tolist() == whole.model.metrics["tick"].tolist()
    # The DataCollector collected only what the resumed run evaluated; earlier rows come from metrics.csv.
    assert resumed.model.datacollector.model_vars["tick"] == [30]

    model = model_at(tmp_path / "whole" / "run.log", 17)
    assert model.steps == model.tick == 17
    model.step()
    assert model.steps == 18
