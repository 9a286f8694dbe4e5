"""Ctrl-C and ``kill`` stop a run between two ticks: the log ends with ``end: interrupted``,
summary.json says so, and ``ribbed run --resume`` finishes it to the files of a run that was
never stopped.

The Ctrl-C is a real one: the run is started in a pseudo-terminal and the test types ``^C``
into it, so the terminal sends SIGINT to the run's whole process group (the log's writer
process and Ray's processes included), as it does for a user.
"""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import ribbed
from ribbed.log import open_log
from ribbed.signals import RunInterrupted, StopOnSignal


def scenario_file(folder: Path, ticks: int, eval_every: int, backend: dict | None = None) -> Path:
    text = json.dumps({
        "name": "long", "seed": 4, "task": {"kind": "xor"},
        "populations": [{"name": "in", "size": 2, "role": "input"},
                        {"name": "h", "size": 16, "activation": "tanh"},
                        {"name": "out", "size": 2, "role": "output", "activation": "identity"}],
        "projections": [{"pre": "in", "post": "h"}, {"pre": "h", "post": "out"}],
        "run": {"ticks": ticks, "batch_size": 8, "eval_every": eval_every},
        "log": {"level": "messages"},
        "backend": backend or {"kind": "batched"},
    })
    path = folder / "long.yaml"
    path.write_text(text, encoding="utf-8")  # (JSON is YAML)
    return path


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ribbed.cli", *args]


def interrupt_in_terminal(command: list[str], run_dir: Path, after_rows: int, env: dict,
                          timeout: float = 240) -> tuple[int, str]:
    """Start ``command`` in a pseudo-terminal, type Ctrl-C once its metrics.csv has
    ``after_rows`` rows, and return its exit status and what it printed."""
    pid, terminal = pty.fork()
    if pid == 0:  # the child: a session of its own, with the pseudo-terminal as its terminal
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # (as a shell's foreground job, even if pytest ignores it)
        os.execve(command[0], command, env)
    printed, typed, reaped = bytearray(), False, False
    deadline = time.monotonic() + timeout
    metrics = run_dir / "metrics.csv"
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([terminal], [], [], 0.05)
            if ready:
                try:
                    printed += os.read(terminal, 1 << 16)
                except OSError:  # the child closed the terminal
                    pass
            if not typed and metrics.exists() and metrics.read_text().count("\n") > after_rows:
                os.write(terminal, b"\x03")
                typed = True
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                reaped = True
                return os.waitstatus_to_exitcode(status), printed.decode("utf-8", "replace")
        raise AssertionError(f"the run did not stop within {timeout} s; it printed:\n{printed[-2000:]!r}")
    finally:
        if not reaped:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(terminal)


def assert_ends_interrupted(run_dir: Path) -> int:
    """The log ends with ``end: interrupted`` at the tick summary.json gives, and holds every tick
    before it; that tick."""
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    with open_log(run_dir / "run.log") as log:
        assert log.end is not None and log.end["status"] == "interrupted"
        assert log.end["tick"] == summary["ticks"]
        assert list(log.ticks) == list(range(summary["ticks"]))  # no tick lost, the in-flight one included
        log.check()
    return summary["ticks"]


def assert_same_run(resumed: Path, whole: Path) -> None:
    assert (resumed / "metrics.csv").read_text() == (whole / "metrics.csv").read_text()
    with open_log(resumed / "run.log") as a, open_log(whole / "run.log") as b:
        assert a.end["status"] == b.end["status"] == "completed"
        assert [r.data for r in a.records(("tick", "snapshot"))] == [r.data for r in b.records(("tick", "snapshot"))]


@pytest.mark.parametrize("writer", ["process", "thread"])
def test_ctrl_c_in_a_terminal_closes_the_log_and_the_run_resumes_identically(tmp_path: Path, writer: str):
    path = scenario_file(tmp_path, ticks=1500, eval_every=50)
    env = {**os.environ, "RIBBED_LOG_WRITER": writer}
    stopped = tmp_path / "stopped"
    status, printed = interrupt_in_terminal(cli("run", str(path), "--out", str(stopped)), stopped, 2, env)
    assert status == 130, printed
    assert "interrupted" in printed and "Traceback" not in printed
    tick = assert_ends_interrupted(stopped)
    assert 0 < tick < 1500
    with open_log(stopped / "run.log") as log:
        assert log.header["resources"]["writer"] == writer

    subprocess.run(cli("run", "--resume", str(stopped)), check=True, capture_output=True, env=env, timeout=300)
    subprocess.run(cli("run", str(path), "--out", str(tmp_path / "whole")), check=True, capture_output=True,
                   env=env, timeout=300)
    assert_same_run(stopped, tmp_path / "whole")


def test_ctrl_c_on_ray_closes_the_log_stops_ray_and_resumes_identically(tmp_path: Path):
    pytest.importorskip("ray")
    path = scenario_file(tmp_path, ticks=120, eval_every=10, backend={"kind": "ray", "shards": 2})
    ray_dir = tempfile.mkdtemp(prefix="rbi", dir="/tmp")  # short: Ray's socket paths are limited in length
    env = {**os.environ, "RAY_TMPDIR": ray_dir}
    try:
        stopped = tmp_path / "stopped"
        status, printed = interrupt_in_terminal(cli("run", str(path), "--out", str(stopped)), stopped, 2, env)
        assert status == 130, printed
        assert "Traceback" not in printed
        tick = assert_ends_interrupted(stopped)
        assert 0 < tick < 120
        left = subprocess.run(["pgrep", "-f", ray_dir], capture_output=True, text=True)
        assert left.stdout.strip() == "", f"Ray processes outlived the run: {left.stdout}"

        subprocess.run(cli("run", "--resume", str(stopped)), check=True, capture_output=True, env=env, timeout=300)
        subprocess.run(cli("run", str(path), "--out", str(tmp_path / "whole")), check=True, capture_output=True,
                       env=env, timeout=300)
        assert_same_run(stopped, tmp_path / "whole")
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)


def test_sigterm_stops_the_run_the_same_way(tmp_path: Path):
    path = scenario_file(tmp_path, ticks=200000, eval_every=100)
    stopped = tmp_path / "stopped"
    process = subprocess.Popen(cli("run", str(path), "--out", str(stopped)), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    metrics = stopped / "metrics.csv"
    while not (metrics.exists() and metrics.read_text().count("\n") > 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert 0 < assert_ends_interrupted(stopped) < 200000


@pytest.fixture
def sigint_raises():
    """Python's own SIGINT handler, whatever this process was started with (a background job
    starts ignoring SIGINT), restored afterwards."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_the_python_api_stops_between_ticks_and_restores_the_handlers(tmp_path: Path, sigint_raises):
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    data = json.loads(scenario_file(tmp_path, ticks=400, eval_every=100).read_text())

    def press_ctrl_c(model):
        if model.tick == 150:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(RunInterrupted) as caught:
        ribbed.run(data, out=tmp_path / "run", on_tick=press_ctrl_c)
    assert caught.value.signal == signal.SIGINT
    assert assert_ends_interrupted(tmp_path / "run") == 150  # the tick in flight was finished, nothing more
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_a_second_ctrl_c_stops_at_once(sigint_raises):
    class Model:
        running = True

    with StopOnSignal(Model()) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.received == signal.SIGINT and not stop.model.running
        with pytest.raises(RunInterrupted):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # (the handler runs at the next bytecode; the sleep is cut short by it)
        stop.hold()
        os.kill(os.getpid(), signal.SIGTERM)  # held back while the run closes its files: noted, no raise


def test_a_signal_the_process_was_started_ignoring_stays_ignored():
    """A background job (``ribbed run ... &`` in a script) is started ignoring SIGINT: the run
    keeps it so, and the terminal's Ctrl-C leaves it running."""
    class Model:
        running = True

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with StopOnSignal(Model()) as stop:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            assert stop.received is None and stop.model.running
            assert signal.getsignal(signal.SIGTERM) == stop._handle  # (SIGTERM was not ignored)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
