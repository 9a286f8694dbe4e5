"""The cores a run can use (affinity and cgroup quotas, mocked), the defaults chosen from them,
and what a run records of its choice."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
import torch

import ribbed
import ribbed.resources as resources
from ribbed.determinism import configure_torch
from ribbed.errors import RibbedError
from ribbed.log import open_log
from ribbed.log.run_log import choose_writer
from ribbed.resources import CorePlan, affinity_cores, available_cores, cgroup_cpu_limit, plan_cores


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def torch_threads():
    """Restore torch's thread count after a test that sets it."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------------- counting cores


def test_the_affinity_mask_counts(monkeypatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    monkeypatch.setattr(resources, "cgroup_cpu_limit", lambda: None)
    assert affinity_cores() == 3 and available_cores() == 3


def test_without_an_affinity_the_machine_counts(monkeypatch) -> None:
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert affinity_cores() == 6


@pytest.mark.parametrize("limit, cores", [(None, 8), (2.0, 2), (1.5, 1), (0.5, 1), (12.0, 8)])
def test_a_cpu_quota_caps_the_affinity_rounded_down(monkeypatch, limit, cores) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(resources, "cgroup_cpu_limit", lambda: limit)
    assert available_cores() == cores


def test_cgroup_v2_cpu_max(tmp_path: Path) -> None:
    membership = tmp_path / "proc-cgroup"
    write(membership, "0::/\n")
    assert cgroup_cpu_limit(tmp_path, membership) is None  # no cpu.max at all
    write(tmp_path / "cpu.max", "max 100000\n")
    assert cgroup_cpu_limit(tmp_path, membership) is None  # unlimited
    write(tmp_path / "cpu.max", "150000 100000\n")
    assert cgroup_cpu_limit(tmp_path, membership) == 1.5


def test_cgroup_v2_takes_the_tightest_ancestor(tmp_path: Path) -> None:
    membership = tmp_path / "proc-cgroup"
    write(membership, "0::/machine.slice/job.scope\n")
    write(tmp_path / "machine.slice" / "cpu.max", "200000 100000\n")
    write(tmp_path / "machine.slice" / "job.scope" / "cpu.max", "max 100000\n")
    assert cgroup_cpu_limit(tmp_path, membership) == 2.0
    write(tmp_path / "machine.slice" / "job.scope" / "cpu.max", "50000 50000\n")
    assert cgroup_cpu_limit(tmp_path, membership) == 1.0


def test_cgroup_v2_inside_its_own_namespace(tmp_path: Path) -> None:
    """In a container the process's cgroup path may not exist under the mount, which is then its own."""
    membership = tmp_path / "proc-cgroup"
    write(membership, "0::/docker/abc\n")
    write(tmp_path / "cpu.max", "300000 100000\n")
    assert cgroup_cpu_limit(tmp_path, membership) == 3.0


def test_cgroup_v1_cfs_quota(tmp_path: Path) -> None:
    membership = tmp_path / "proc-cgroup"
    write(membership, "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n")
    folder = tmp_path / "cpu,cpuacct" / "docker" / "abc"
    write(folder / "cpu.cfs_quota_us", "-1\n")
    write(folder / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_limit(tmp_path, membership) is None
    write(folder / "cpu.cfs_quota_us", "250000\n")
    assert cgroup_cpu_limit(tmp_path, membership) == 2.5
    write(tmp_path / "cpu,cpuacct" / "docker" / "cpu.cfs_quota_us", "100000\n")  # a tighter parent
    write(tmp_path / "cpu,cpuacct" / "docker" / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_limit(tmp_path, membership) == 1.0


def test_no_cgroup_file_system_means_no_limit(tmp_path: Path) -> None:
    assert cgroup_cpu_limit(tmp_path, tmp_path / "missing") is None
    write(tmp_path / "proc-cgroup", "4:cpu:/x\n")  # a v1 cpu controller that is not mounted
    assert cgroup_cpu_limit(tmp_path, tmp_path / "proc-cgroup") is None


# ---------------------------------------------------------------------------- the defaults


def test_the_plan_never_oversubscribes() -> None:
    assert plan_cores(1) == CorePlan(cores=1, torch_threads=1, interop_threads=1, writer_process=False)
    assert plan_cores(2) == CorePlan(cores=2, torch_threads=1, interop_threads=1, writer_process=True)
    assert plan_cores(16) == CorePlan(cores=16, torch_threads=15, interop_threads=1, writer_process=True)
    for cores in range(1, 33):
        plan = plan_cores(cores)
        assert plan.torch_threads + plan.writer_process <= cores


def test_torch_gets_the_planned_threads_unless_told(torch_threads) -> None:
    assert configure_torch(cores=3)["torch_threads"] == 2 == torch.get_num_threads()
    assert configure_torch(cores=1)["torch_threads"] == 1
    assert configure_torch(3, cores=1)["torch_threads"] == 3  # backend.threads wins


def test_the_writer_follows_the_cores_and_the_device(monkeypatch) -> None:
    monkeypatch.delenv("RIBBED_LOG_WRITER", raising=False)
    assert choose_writer("cpu", 1) == "thread"
    assert choose_writer("cpu", 2) == ("process" if os.name == "posix" else "thread")
    assert choose_writer("cuda:0", 8) == "thread"
    monkeypatch.setenv("RIBBED_LOG_WRITER", "thread")
    assert choose_writer("cpu", 8) == "thread"
    monkeypatch.setenv("RIBBED_LOG_WRITER", "fast")
    with pytest.raises(RibbedError, match="RIBBED_LOG_WRITER") as caught:
        choose_writer("cpu", 8)
    assert "process, thread" in caught.value.problems[0].fix


def test_the_ray_executor_counts_the_same_cores(monkeypatch) -> None:
    import ray

    from ribbed.scheduler.ray.executor import default_shards

    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # (a running Ray's CPUs would count)
    monkeypatch.setattr("ribbed.scheduler.ray.executor.available_cores", lambda: 3)
    assert default_shards(8) == 3 and default_shards(2) == 2


# ---------------------------------------------------------------------------- what a run records


def small_run(tmp_path: Path, name: str, threads: int | None = None) -> tuple[dict, dict]:
    scenario = ribbed.load_scenario("xor").model_dump()
    scenario["run"].update(ticks=6, eval_every=3)
    scenario["backend"] = {"kind": "batched", "threads": threads}
    scenario["log"] = {"level": "activity"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ribbed.RibbedWarning)
        ribbed.run(scenario, out=tmp_path / name)
    summary = json.loads((tmp_path / name / "summary.json").read_text(encoding="utf-8"))
    with open_log(tmp_path / name / "run.log") as log:
        header = log.header
    return summary, header


@pytest.mark.parametrize("cores, threads, torch_count, writer", [
    (1, None, 1, "thread"), (2, None, 1, "process"), (5, None, 4, "process"), (1, 2, 2, "thread")])
def test_the_summary_and_the_header_record_the_choice(tmp_path: Path, monkeypatch, torch_threads, cores, threads,
                                                      torch_count, writer) -> None:
    if writer == "process" and os.name != "posix":
        writer = "thread"
    monkeypatch.delenv("RIBBED_LOG_WRITER", raising=False)
    monkeypatch.setattr("ribbed.runner.available_cores", lambda: cores)
    summary, header = small_run(tmp_path, "run", threads)
    chosen = summary["resources"]
    assert chosen == {"cores": cores, "torch_threads": torch_count,
                      "torch_interop_threads": torch.get_num_interop_threads(), "log_writer": writer}
    assert header["resources"] == {"cores": cores, "writer": writer}
    assert header["threads"]["torch_threads"] == torch_count


def test_a_run_without_a_log_records_no_writer(tmp_path: Path, monkeypatch, torch_threads) -> None:
    monkeypatch.setattr("ribbed.runner.available_cores", lambda: 2)
    scenario = ribbed.load_scenario("xor").model_dump()
    scenario["run"].update(ticks=3, eval_every=3)
    scenario["log"] = {"level": "off"}
    ribbed.run(scenario, out=tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text(encoding="utf-8"))
    assert summary["resources"]["log_writer"] is None and summary["resources"]["torch_threads"] == 1
