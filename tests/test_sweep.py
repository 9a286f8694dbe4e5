"""Sweeps: ``ribbed sweep`` over a grid of fields and seeds, on local workers and on a Ray cluster;
a sweep stopped (Ctrl-C) and killed (SIGKILL) mid-way continues to the same sweep.parquet; bad
``--set`` options are located errors before anything runs; a failed point does not stop the others;
and Mesa's ``batch_run`` drives a NetworkModel.

The scenario is a tiny xor (100 ticks, the reference executor); the sweeps run the ``ribbed``
command in subprocesses, as a user does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import ribbed
from ribbed.log import open_log

TINY = {
    "name": "tiny", "seed": 0,
    "task": {"kind": "xor", "n_samples": 200, "noise": 0.1},
    "populations": [{"name": "in", "size": 2, "role": "input"}, {"name": "hidden", "size": 8, "activation": "tanh"},
                    {"name": "out", "size": 2, "role": "output", "activation": "identity"}],
    "projections": [{"pre": "in", "post": "hidden"}, {"pre": "hidden", "post": "out"}],
    "learning": {"rule": "backprop", "lr": 0.2},
    "run": {"ticks": 100, "batch_size": 16, "eval_every": 25},
}
GRID = ["--seeds", "0-2", "--set", "learning.lr=0.05,0.2", "--set", "schedule.backward_every=1,2"]
POINTS = [f"{i}-lr={lr}-backward_every={every}-s{seed}" for i, (lr, every) in
          enumerate([(0.05, 1), (0.05, 2), (0.2, 1), (0.2, 2)]) for seed in range(3)]
ROWS_PER_POINT = 5  # evaluations at ticks 0, 25, 50, 75, 100


def ribbed_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "ribbed.cli", *args]


def sweep_cli(*args: str, cwd: Path, timeout: float = 400) -> subprocess.CompletedProcess:
    done = subprocess.run(ribbed_command("sweep", *args), cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in done.stderr, done.stderr
    return done


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("project")
    (folder / "tiny.yaml").write_text(yaml.safe_dump(TINY), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def local_sweep(project: Path) -> Path:
    """The 4 grid points x 3 seeds, uninterrupted, on two local workers."""
    done = sweep_cli("tiny.yaml", *GRID, "--out", "local", "--workers", "2", cwd=project)
    assert done.returncode == 0, done.stderr
    assert "12 of 12 points completed" in done.stdout
    return project / "local"


def summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


# ---------------------------------------------------------------------------- local workers


def test_a_local_sweep_writes_normal_run_directories_and_one_table(local_sweep: Path):
    manifest = json.loads((local_sweep / "sweep.json").read_text())
    assert manifest["grid"] == {"learning.lr": [0.05, 0.2], "schedule.backward_every": [1, 2]}
    assert manifest["seeds"] == [0, 1, 2] and [p["name"] for p in manifest["points"]] == POINTS
    assert manifest["scenario"]["resolved"]["name"] == "tiny"
    for name in POINTS:
        run_dir = local_sweep / name
        assert {"scenario.yaml", "metrics.csv", "run.log", "summary.json"} <= {p.name for p in run_dir.iterdir()}
        point = summary(run_dir)
        assert point["status"] == "completed" and point["ticks"] == 100
        # Each worker is pinned to its own core: the run planned one torch thread for it.
        assert point["resources"]["cores"] == 1 and point["resources"]["torch_threads"] == 1
        scenario = ribbed.load_scenario(run_dir / "scenario.yaml")
        assert (scenario.learning.lr, scenario.schedule.backward_every, scenario.seed) == \
            (float(name.split("lr=")[1].split("-")[0]), int(name.split("every=")[1][0]), int(name[-1]))

    table = pd.read_parquet(local_sweep / "sweep.parquet")
    assert len(table) == len(POINTS) * ROWS_PER_POINT
    assert list(table.columns[:6]) == ["learning.lr", "schedule.backward_every", "seed", "point", "status", "error"]
    assert {"tick", "train_loss", "test_loss", "test_accuracy", "msg_error"} <= set(table.columns)
    assert "seconds" not in table.columns
    assert (table["status"] == "completed").all() and table["error"].isna().all()
    # Grid order, then seed, then tick.
    assert list(table["point"].drop_duplicates()) == POINTS
    assert list(table["tick"]) == [0, 25, 50, 75, 100] * len(POINTS)
    for name, rows in table.groupby("point", sort=False):
        pd.testing.assert_frame_equal(rows[table.columns[6:]].reset_index(drop=True),
                                      pd.read_csv(local_sweep / name / "metrics.csv"), check_dtype=False)
    # The swept values reach the runs: the learning rate changes the final loss of every seed.
    final = table[table["tick"] == 100].set_index(["schedule.backward_every", "seed", "learning.lr"])["test_loss"]
    assert (final.xs(0.05, level="learning.lr") != final.xs(0.2, level="learning.lr")).all()


def test_a_point_is_bit_for_bit_a_plain_run_of_its_configuration(local_sweep: Path, project: Path, tmp_path: Path):
    scenario = ribbed.load_scenario(project / "tiny.yaml").model_dump(mode="json")
    scenario["learning"]["lr"], scenario["schedule"]["backward_every"] = 0.2, 2
    plain = ribbed.run(scenario, seed=1, out=tmp_path / "plain")
    point = local_sweep / "3-lr=0.2-backward_every=2-s1"
    for name in ("metrics.csv", "agents.csv", "scenario.yaml"):
        assert (plain.directory / name).read_bytes() == (point / name).read_bytes(), name


def test_running_a_finished_sweep_again_skips_every_point(local_sweep: Path, project: Path):
    before = {name: (local_sweep / name / "summary.json").stat().st_mtime_ns for name in POINTS}
    table = pd.read_parquet(local_sweep / "sweep.parquet")
    done = sweep_cli("tiny.yaml", *GRID, "--out", "local", cwd=project)
    assert done.returncode == 0 and "12 of 12 points completed" in done.stdout
    assert before == {name: (local_sweep / name / "summary.json").stat().st_mtime_ns for name in POINTS}
    pd.testing.assert_frame_equal(pd.read_parquet(local_sweep / "sweep.parquet"), table)


# ---------------------------------------------------------------------------- stopped, killed, continued


def wait_for_a_run_in_progress(folder: Path, exclude: set[str], process: subprocess.Popen) -> str:
    """A point that has evaluated twice (ticks 0 and 25) and has not finished: a run in progress."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        for name in POINTS:
            metrics = folder / name / "metrics.csv"
            if name not in exclude and metrics.exists() and len(metrics.read_text().splitlines()) >= 3 \
                    and not (folder / name / "summary.json").exists():
                return name
        time.sleep(0.01)
    raise AssertionError("no run got under way")


def test_a_sweep_stopped_then_killed_continues_to_the_same_table(local_sweep: Path, project: Path):
    folder = project / "stopped"
    command = ribbed_command("sweep", "tiny.yaml", *GRID, "--out", "stopped", "--workers", "1")

    # Ctrl-C: the run in progress stops between two ticks, its log ends 'interrupted'; exit 130.
    first = subprocess.Popen(command, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True,  # SIGINT as a foreground job gets it, even if pytest ignores it:
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    stopped = wait_for_a_run_in_progress(folder, set(), first)
    os.kill(first.pid, signal.SIGINT)
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == 130 and "Traceback" not in stderr, stderr
    assert "interrupted" in stderr and "ribbed sweep --resume" in stderr
    assert summary(folder / stopped)["status"] == "interrupted"
    with open_log(folder / stopped / "run.log") as log:
        assert log.end["status"] == "interrupted"
    assert not (folder / "sweep.parquet").exists()

    # SIGKILL of the sweep process mid-run: its worker stops (it dies with its parent).
    touched = {p.name for p in folder.iterdir() if p.is_dir()}
    second = subprocess.Popen(command, cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    killed = wait_for_a_run_in_progress(folder, touched, second)
    os.killpg(second.pid, signal.SIGKILL)
    second.wait(timeout=60)
    finished = {name: (folder / name / "summary.json").stat().st_mtime_ns for name in POINTS
                if (folder / name / "summary.json").exists() and summary(folder / name)["status"] == "completed"}
    assert stopped in finished and killed not in finished
    # A point that was killed before it wrote its log: only its scenario.yaml is there.
    never = POINTS[-1]
    assert not (folder / never).exists()
    (folder / never).mkdir()
    (folder / never / "scenario.yaml").write_text("left by a killed run\n")

    # The same command again: finished points are skipped, the others continue or start again.
    third = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=400)
    assert third.returncode == 0 and "Traceback" not in third.stderr, third.stderr
    assert finished == {name: (folder / name / "summary.json").stat().st_mtime_ns for name in finished}
    assert summary(folder / stopped)["resumed_from"] >= 25  # from the last snapshot before it stopped
    assert summary(folder / killed)["resumed_from"] >= 25
    assert "resumed_from" not in summary(folder / never)
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "sweep.parquet"),
                                  pd.read_parquet(local_sweep / "sweep.parquet"))


# ---------------------------------------------------------------------------- on a Ray cluster


def test_a_sweep_on_a_ray_cluster_gives_the_local_table(local_sweep: Path, project: Path):
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "object_store_memory": 80 * 2**20, "include_dashboard": False})
    cluster.add_node(num_cpus=1, object_store_memory=80 * 2**20)
    cluster.wait_for_nodes()
    try:
        done = sweep_cli("tiny.yaml", *GRID, "--out", "on-ray", "--address", cluster.address, cwd=project)
    finally:
        cluster.shutdown()
    assert done.returncode == 0, done.stderr
    assert "12 of 12 points completed" in done.stdout
    folder = project / "on-ray"
    point = summary(folder / POINTS[0])
    assert point["status"] == "completed" and point["resources"]["cores"] == 1  # each task one CPU
    assert {"scenario.yaml", "metrics.csv", "run.log", "summary.json"} <= {p.name for p in (folder / POINTS[0]).iterdir()}
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "sweep.parquet"),
                                  pd.read_parquet(local_sweep / "sweep.parquet"))


# ---------------------------------------------------------------------------- bad input, failed points


@pytest.mark.parametrize("options, expected", [
    (["--set", "learning.lrr=0.1,0.2"],
     ["tiny.yaml with --set learning.lrr=0.1", "learning.lrr: unknown key 'lrr'", "fix: ", "lr, momentum"]),
    (["--set", "learning.lr=0.1,-1"],
     ["tiny.yaml with --set learning.lr=-1", "learning.lr: input should be greater than 0 (got -1)", "fix: "]),
    (["--set", "populations.hidden.sizes=3"], ["populations[1].sizes: unknown key 'sizes'"]),
    (["--set", "populations.middle.size=3"], ["'populations' has no element 'middle'", "(in, hidden, out)"]),
    (["--set", "learning.lr"], ["--set learning.lr: expected FIELD=VALUE,VALUE,...", "fix: "]),
    (["--set", "learning.lr=0.1,,0.2"], ["has an empty value"]),
    (["--set", "seed=1,2"], ["the seeds are swept by --seeds"]),
    (["--seeds", "3-1"], ["--seeds: '3-1' is not a count, a range or a list of seeds", "fix: "]),
])
def test_bad_options_are_located_errors_before_anything_runs(project: Path, options, expected):
    done = sweep_cli("tiny.yaml", *options, "--out", "never", cwd=project, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ")
    for text in expected:
        assert text in done.stderr, done.stderr
    assert not (project / "never").exists()


def test_another_sweep_in_the_same_folder_is_refused(local_sweep: Path, project: Path):
    done = sweep_cli("tiny.yaml", "--seeds", "0-3", "--set", "learning.lr=0.05,0.2", "--out", "local", cwd=project,
                     timeout=120)
    assert done.returncode == 2 and "this folder holds another sweep" in done.stderr
    assert "--resume" in done.stderr


def test_a_failed_point_is_recorded_and_the_others_complete(project: Path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(np.int64)
    np.savez(project / "good.npz", X_train=X, y_train=y, X_test=X, y_test=y)
    wide = np.c_[X, X]  # 4 features for the 2 input neurons: the run cannot be built
    np.savez(project / "wide.npz", X_train=wide, y_train=y, X_test=wide, y_test=y)
    scenario = {**TINY, "task": {"kind": "npz", "path": "good.npz", "problem": "classification",
                                 "loss": "cross_entropy"}}
    (project / "data.yaml").write_text(yaml.safe_dump(scenario), encoding="utf-8")
    done = sweep_cli("data.yaml", "--set", "task.path=wide.npz,good.npz", "--out", "data", "--workers", "1",
                     cwd=project)
    assert done.returncode == 1, done.stderr
    assert "failed: 0-path=wide.npz-s0:" in done.stderr and "4 features" in done.stderr
    assert "1 of 2 points failed" in done.stderr
    table = pd.read_parquet(project / "data" / "sweep.parquet")
    failed = table[table["point"] == "0-path=wide.npz-s0"]
    assert len(failed) == 1 and failed["status"].item() == "failed" and failed["tick"].isna().all()
    assert "has 4 features but population 'in' has 2 neurons" in failed["error"].item()
    good = table[table["point"] == "1-path=good.npz-s0"]
    assert len(good) == ROWS_PER_POINT and (good["status"] == "completed").all()
    assert summary(project / "data" / "0-path=wide.npz-s0")["status"] == "failed"


def test_the_python_api_checks_every_point_before_it_writes_anything(tmp_path: Path):
    with pytest.raises(ribbed.ScenarioError, match="with --set run.ticks=0 .seed 0.: run.ticks: input should be"):
        ribbed.sweep(TINY, grid={"run.ticks": [10, 0]}, out=tmp_path / "sweep")
    assert not (tmp_path / "sweep").exists()


# ---------------------------------------------------------------------------- Mesa


def test_mesa_batch_run_drives_the_network_model():
    import mesa

    rows = mesa.batch_run(ribbed.NetworkModel, parameters={"scenario": "xor", "learning__lr": [0.05, 0.2],
                                                           "run__eval_every": 25},
                          iterations=2, max_steps=50, number_processes=1, display_progress=False)
    frame = pd.DataFrame(rows)
    runs = frame.groupby(["learning__lr", "iteration"])
    assert runs.ngroups == 4 and set(frame["Step"]) == {50}
    final = runs[["tick", "test_loss"]].first()
    assert set(final["tick"]) == {50}  # the evaluation of tick 50, not the start's
    slow, fast = final.loc[0.05, "test_loss"], final.loc[0.2, "test_loss"]
    assert (slow.to_numpy() != fast.to_numpy()).all()
    assert (slow.to_numpy() == slow.iloc[0]).all()  # iterations of one seed repeat exactly
    # Per step, with the scenario's seed set by Mesa's keyword; the model stops at run.ticks.
    rows = mesa.batch_run(ribbed.NetworkModel, parameters={"scenario": "xor", "seed": [0, 1], "run__ticks": 30,
                                                           "run__eval_every": 10},
                          iterations=1, max_steps=1000, number_processes=1, data_collection_period=5,
                          display_progress=False)
    frame = pd.DataFrame(rows).groupby(["seed", "Step"])[["tick", "test_loss"]].first().reset_index()
    assert sorted(set(frame["Step"])) == [0, 5, 10, 15, 20, 25, 29]
    assert list(frame[frame["seed"] == 0]["tick"]) == [0, 0, 10, 10, 20, 20, 20]
    assert (frame[frame["seed"] == 0]["test_loss"].to_numpy() != frame[frame["seed"] == 1]["test_loss"].to_numpy()).all()


def test_the_network_model_takes_mesa_keywords():
    model = ribbed.NetworkModel("xor", seed=3, learning__lr=0.1, run__ticks=20, run__eval_every=10)
    assert (model.scenario.seed, model.scenario.learning.lr, model.scenario.run.ticks) == (3, 0.1, 20)
    assert ribbed.NetworkModel("xor", rng=3).scenario.seed == 3
    assert model.running
    model.run_model()  # Mesa's loop: step while running
    assert model.steps == 20 and not model.running
    assert model.metrics["tick"].tolist() == [0, 10, 20]
    assert len(model.datacollector.model_vars["tick"]) == 21  # one entry per step, for batch_run
    with pytest.raises(ribbed.ScenarioError, match=r"NetworkModel\(learning__lrr=0.1\): learning.lrr: unknown key"):
        ribbed.NetworkModel("xor", learning__lrr=0.1)
    with pytest.raises(ribbed.ScenarioError, match="expected an integer seed"):
        ribbed.NetworkModel("xor", rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="either seed or rng"):
        ribbed.NetworkModel("xor", seed=1, rng=1)
