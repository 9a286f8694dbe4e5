"""benchmarks/spiking_throughput.py's machinery on its tiny case: the snnTorch program and the
batched and reference executors compute the same ticks (losses and spikes, in float64), and the driver's
table has every metric.  Not a timed test: no speed is asserted."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
TINY = "tiny 16-32-10 B8 T5"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("spiking_benchmark", ROOT / "benchmarks" / "spiking_throughput.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_the_snntorch_program_and_both_executors_compute_the_same_ticks(bench):
    params = dict(bench.CASES)[TINY]
    rows = {program: bench.run_case(TINY, params, program, "cpu", repeats=2, budget=5.0, dtype="float64")
            for program in ("batched", "snntorch", "reference")}
    batched = rows["batched"]
    assert batched["neurons"] == 16 + 32 + 10 and batched["synapses"] == 16 * 32 + 32 * 10
    assert batched["spikes_per_tick"] > 0
    for program in ("snntorch", "reference"):
        assert rows[program]["third_loss"] == pytest.approx(batched["third_loss"], rel=1e-9), program
        assert rows[program]["spikes_per_tick"] == batched["spikes_per_tick"], program
    bench.compare(rows, params)
    assert rows["batched"]["time_over_batched"] == 1.0 and rows["snntorch"]["same_third_loss"]
    assert rows["snntorch"]["synapse_updates_per_s"] == pytest.approx(
        (16 * 32 + 32 * 10) * params["batch"] * params["steps"] / rows["snntorch"]["seconds"])
    for row in rows.values():
        assert row["estimate_bytes_per_neuron"] > 0 and row["peak_rss_bytes_per_neuron"] > 0


def test_the_quick_mode_writes_its_table(bench, tmp_path):
    target = tmp_path / "spiking.json"
    bench.main(["--quick", "--programs", "batched,snntorch", "--repeats", "2", "--threads", "1",
                "--device", "cpu", "--json", str(target)])
    results = json.loads(target.read_text())["results"]
    assert [(r["case"], r["program"]) for r in results] == [(TINY, "batched"), (TINY, "snntorch")]
    assert all(np.isfinite(r["ticks_per_s"]) and r["spikes_per_s"] > 0 for r in results)
    assert results[1]["same_third_loss"]
    # Their ticks were also timed in turn in one process, for a ratio under the same load.
    assert results[0]["interleaved_over_batched"] == 1.0 and results[1]["interleaved_over_batched"] > 0
