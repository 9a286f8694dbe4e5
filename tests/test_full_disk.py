"""A disk that fills up during a run: one clean error (the first cause, no traceback), no
partial summary.json, every record that was whole kept, and the run continued with
``ribbed run --resume`` once there is space again, to the files of a run that never stopped.

On a machine where the tests run as root, the disk is a real one: a small tmpfs.  Elsewhere
the same failure is injected into the writers' system calls.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import ribbed
from ribbed.errors import LogTruncatedWarning, RibbedError
from ribbed.log import open_log


def scenario(ticks: int = 4000) -> dict:
    return {"name": "fill", "seed": 2, "task": {"kind": "xor"},
            "populations": [{"name": "in", "size": 2, "role": "input"},
                            {"name": "h", "size": 16, "activation": "tanh"},
                            {"name": "out", "size": 2, "role": "output", "activation": "identity"}],
            "projections": [{"pre": "in", "post": "h"}, {"pre": "h", "post": "out"}],
            "run": {"ticks": ticks, "batch_size": 8, "eval_every": 100},
            "log": {"level": "messages"}, "backend": {"kind": "batched"}}


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ribbed.cli", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def assert_one_clean_error(stderr: str, about: str) -> None:
    assert "Traceback" not in stderr and "During handling" not in stderr, stderr
    assert stderr.count("error:") == 1 and about in stderr, stderr
    assert "ribbed run --resume" in stderr  # the fix says how to go on


def assert_summary_whole_or_absent(run_dir: Path) -> None:
    summary = run_dir / "summary.json"
    if summary.exists():
        json.loads(summary.read_text())  # whole: it parses
    assert not list(run_dir.glob(".*.partial"))


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 256 KiB tmpfs at ``tmp_path/disk`` (root only), unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}); "
                    "test_an_injected_full_disk covers the same failure")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="mounting a tmpfs needs root; "
                    "test_an_injected_full_disk covers the same failure")
@pytest.mark.parametrize("writer", ["process", "thread"])
def test_a_full_tmpfs_gives_one_clean_error_and_the_run_resumes_once_there_is_space(
        tmp_path: Path, small_disk: Path, writer: str):
    path = tmp_path / "fill.yaml"
    path.write_text(json.dumps(scenario()), encoding="utf-8")
    env = {**os.environ, "RIBBED_LOG_WRITER": writer}
    run_dir = small_disk / "run"
    done = cli("run", str(path), "--out", str(run_dir), env=env)
    assert done.returncode == 2
    assert_one_clean_error(done.stderr, "No space left on device")
    assert_summary_whole_or_absent(run_dir)

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    resumed = cli("run", "--resume", str(run_dir), env=env)
    assert resumed.returncode == 0, resumed.stderr
    whole = cli("run", str(path), "--out", str(tmp_path / "whole"), env=env)
    assert whole.returncode == 0, whole.stderr
    assert (run_dir / "metrics.csv").read_text() == (tmp_path / "whole" / "metrics.csv").read_text()
    with open_log(run_dir / "run.log") as a, open_log(tmp_path / "whole" / "run.log") as b:
        assert [r.data for r in a.records(("tick", "snapshot"))] == [r.data for r in b.records(("tick", "snapshot"))]
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"


def test_an_injected_full_disk_gives_one_clean_error(tmp_path: Path, monkeypatch):
    """The thread writer's writes fail with ENOSPC after 200 KB, as on a full disk; so does
    every later write of the run folder."""
    import ribbed.log.writer as writer
    import ribbed.runner as runner

    monkeypatch.setenv("RIBBED_LOG_WRITER", "thread")
    written = {"bytes": 0}
    write_all = writer._write_all

    def filling(file, data):
        written["bytes"] += len(data)
        if written["bytes"] > 200_000:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write_all(file, data)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(writer, "_write_all", filling)
    original_replace = runner.os.replace
    monkeypatch.setattr(runner.os, "replace", lambda a, b: full() if written["bytes"] > 200_000
                        else original_replace(a, b))
    with pytest.raises(RibbedError) as caught:
        ribbed.run(scenario(), out=tmp_path / "run")
    assert "run.log: cannot write the log: No space left on device" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert_summary_whole_or_absent(tmp_path / "run")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LogTruncatedWarning)
        with open_log(tmp_path / "run" / "run.log") as log:  # every whole record kept
            assert len(log.ticks) > 10 and list(log.ticks) == list(range(len(log.ticks)))
            assert log.end is None  # (its end record could not be written either)


def test_an_operating_system_error_no_command_located_is_one_line(monkeypatch, capsys):
    import ribbed.cli as cli_module
    import ribbed.runner as runner

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/run/somewhere.csv")

    monkeypatch.setattr(runner, "run", full)
    monkeypatch.setattr(sys, "argv", ["ribbed", "run", "xor"])
    with pytest.raises(SystemExit) as caught:
        cli_module.main()
    assert caught.value.code == 1
    printed = capsys.readouterr().err
    assert "Traceback" not in printed and "/data/run/somewhere.csv: No space left on device" in printed
