"""Running a sweep's points: one point (:func:`execute_point`), on local worker processes
(:func:`run_local`), or as Ray tasks on a cluster (:func:`run_ray`).

**One point** is a normal run directory made by :func:`ribbed.runner.run`.  A point whose run was
interrupted (its log has no ``completed`` end) continues with :func:`ribbed.runner.resume`, which
gives the same files as an uninterrupted run; a point that never wrote a log starts again.  A run
that raises is a failed point (the runner's summary.json says why; a point that failed before its
run directory existed gets a summary.json of its own), and the other points go on.

**Local workers** are processes started with ``spawn`` (never ``fork`` from a process that may
hold torch's threads), each pinned with ``os.sched_setaffinity`` to its own share of the cores, so
that the run's own plan (:mod:`ribbed.resources`) gives it the torch threads of its share and no
more: one thread each when there are as many workers as cores.  Each worker runs in its own
process group, so the terminal's Ctrl-C reaches only the sweep, which asks each worker once to
stop; the worker's run then stops between two ticks, its log ends ``interrupted``, and the point
continues on the next run of the sweep.  A worker stops the same way when the sweep process dies
(Linux: ``PR_SET_PDEATHSIG``), and holds the folder's lock until it has (:mod:`.folder`).

**Ray tasks** of one CPU each run a point in a temporary folder on whichever node Ray chose, from
the point's files as they were (so an interrupted point continues there too) and send the run
directory's files back, so the cluster's nodes need no shared file system.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ribbed.errors import Problem, RibbedError
from ribbed.signals import RunInterrupted

__all__ = ["Outcome", "Task", "connect_ray", "disconnect_ray", "execute_point", "run_local", "run_ray",
           "worker_cores"]

#: How long a stopped sweep waits for its workers to close their runs' files.
STOP_WAIT_S = 60.0


@dataclass(frozen=True)
class Task:
    """A point to run: its run directory and its resolved scenario (as plain data)."""

    position: int  # the point's place in the sweep
    name: str
    directory: str
    scenario: dict
    source: str


@dataclass(frozen=True)
class Outcome:
    """How a point ended: completed, failed (with its error) or interrupted."""

    position: int
    name: str
    status: str
    error: str | None = None


# ---------------------------------------------------------------------------- one point


def execute_point(task: Task, cores: int | None = None) -> Outcome:
    """Run, continue or restart one point in ``task.directory`` (see the module docstring).
    Raises :class:`ribbed.signals.RunInterrupted` when a signal stopped it (its files are closed)."""
    from ribbed.runner import LOG_NAME, resume, run
    from ribbed.scenarios.loader import load_scenario

    directory = Path(task.directory)
    (directory / "summary.json").unlink(missing_ok=True)  # this attempt writes its own
    try:
        if _resumable(directory / LOG_NAME):
            resume(directory, cores=cores)
        else:
            shutil.rmtree(directory, ignore_errors=True)
            scenario = load_scenario(task.scenario).locate(task.source, None)
            run(scenario, out=directory, cores=cores)
    except RunInterrupted:
        raise
    except KeyboardInterrupt:  # stopped before the run could take signals over: nothing half-written
        raise RunInterrupted(signal.SIGINT) from None
    except BaseException as exc:  # a failed point is recorded; the other points go on
        error = str(exc) if isinstance(exc, RibbedError) else f"{type(exc).__name__}: {exc}"
        if not (directory / "summary.json").exists():  # it failed before its run directory had one
            directory.mkdir(parents=True, exist_ok=True)
            text = json.dumps({"status": "failed", "error": error, "seed": task.scenario.get("seed"),
                               "scenario": task.scenario.get("name")}, indent=2)
            (directory / ".summary.json.partial").write_text(text + "\n", encoding="utf-8")
            os.replace(directory / ".summary.json.partial", directory / "summary.json")
        return Outcome(task.position, task.name, "failed", error)
    return Outcome(task.position, task.name, "completed")


def _resumable(log: Path) -> bool:
    """Whether the point has a log to continue: one with a header, and no ``completed`` end (a
    run killed between closing its log and writing summary.json starts again: the same result)."""
    if not log.exists():
        return False
    from ribbed.errors import LogError
    from ribbed.log.reader import LogReader

    try:
        with LogReader(log) as reader:
            end = reader.end
            reader.header  # noqa: B018 (a log without a whole header cannot be continued)
    except (LogError, OSError):
        return False
    return end is None or end.get("status") != "completed"


# ---------------------------------------------------------------------------- local workers


def worker_cores(workers: int, cores: list[int]) -> list[list[int]]:
    """Each worker's share of ``cores``: contiguous, as even as can be; with more workers than
    cores, workers share a core each in turn."""
    if workers <= len(cores):
        return [cores[i * len(cores) // workers:(i + 1) * len(cores) // workers] for i in range(workers)]
    return [[cores[i % len(cores)]] for i in range(workers)]


def run_local(tasks: list[Task], workers: int, folder: Path, cores: list[int],
              on_outcome: Callable[[Outcome], None]) -> None:
    """Run ``tasks`` on ``workers`` local processes; ``on_outcome`` hears of each point as it
    ends.  Ctrl-C or SIGTERM stops the workers between two ticks, then raises
    :class:`RunInterrupted`."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    todo, done = context.Queue(), context.Queue()
    for task in tasks:
        todo.put(task)
    shares = worker_cores(workers, cores)
    processes: dict[int, Any] = {}
    running: dict[int, Task] = {}  # worker -> the task it runs
    left = {task.position for task in tasks}
    by_position = {task.position: task for task in tasks}

    def start(worker: int) -> None:
        process = context.Process(target=worker_main, name=f"ribbed-sweep-{worker}", daemon=False,
                                  args=(worker, shares[worker], os.getpid(), str(folder), todo, done))
        process.start()
        processes[worker] = process

    def handle(message: tuple) -> None:
        kind, worker, payload = message
        if kind == "start":
            running[worker] = by_position[payload]
        elif payload.position in left:
            running.pop(worker, None)
            left.discard(payload.position)
            on_outcome(payload)

    def replace_dead() -> None:
        """A worker that died (killed, out of memory) fails the point it ran, once every report
        it sent is read; another worker takes its place while points are left."""
        for worker, process in list(processes.items()):
            if process.exitcode is None:
                continue
            while True:  # what it sent before it died is in the queue by now
                try:
                    handle(done.get_nowait())
                except queue.Empty:
                    break
            task = running.pop(worker, None)
            del processes[worker]
            code = process.exitcode
            how = f"signal {-code}" if code < 0 else f"exit status {code}"
            if task is not None and task.position in left:  # it died running a point: that point failed
                left.discard(task.position)
                on_outcome(Outcome(task.position, task.name, "failed", f"its worker process died ({how})"))
                if left:
                    todo.put(None)  # the new worker's stop sign (the dead one never took its own)
                    start(worker)
            elif left and not processes:
                raise RibbedError(Problem("ribbed sweep", "", f"the sweep's worker processes stopped ({how}) "
                                          "with points left to run",
                                          "see their messages above; from Python, run the sweep from a file with "
                                          "'if __name__ == \"__main__\":' around it (workers are started with "
                                          "spawn, which imports the main module)"))

    with _SigtermAsInterrupt():
        try:
            for worker in range(workers):
                todo.put(None)  # one stop sign per worker, after every task
                start(worker)
            while left:
                try:
                    handle(done.get(timeout=0.5))
                except queue.Empty:
                    replace_dead()
        except KeyboardInterrupt as exc:
            _stop_workers(processes, handle, done)
            raise RunInterrupted(getattr(exc, "signal", signal.SIGINT)) from None
        finally:
            for process in processes.values():
                process.join(timeout=STOP_WAIT_S)
                if process.is_alive():
                    process.kill()


def _stop_workers(processes: dict, handle: Callable[[tuple], None], done) -> None:
    """Ask each worker once to stop (SIGINT: its run stops between two ticks and closes its
    files), and report what they finish meanwhile; a second Ctrl-C stops them at once."""
    for process in processes.values():
        if process.is_alive():
            os.kill(process.pid, signal.SIGINT)
    deadline = time.monotonic() + STOP_WAIT_S
    while time.monotonic() < deadline:
        try:
            try:
                handle(done.get(timeout=0.2))
            except queue.Empty:
                if not any(p.is_alive() for p in processes.values()):
                    break
        except KeyboardInterrupt:
            for process in processes.values():
                if process.is_alive():
                    os.kill(process.pid, signal.SIGINT)  # the second one: its run stops at once


def worker_main(worker: int, cores: list[int], parent: int, folder: str, todo, done) -> None:
    """A worker process: pinned to ``cores``, in its own process group, holding the folder's lock,
    it runs points until it meets its stop sign, or is asked to stop."""
    from ribbed.sweeps.folder import hold_shared

    os.setpgid(0, 0)  # the terminal's Ctrl-C goes to the sweep, which tells each worker once
    _die_with(parent)
    try:
        os.sched_setaffinity(0, cores)
    except (AttributeError, OSError):  # no affinity on this system: the run plans for every core
        pass
    lock = hold_shared(Path(folder))
    stopping: list[int] = []

    def between_runs(signum, frame):  # a run takes these signals over while it runs
        stopping.append(signum)
        raise RunInterrupted(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, between_runs)
    try:
        while not stopping:
            task = todo.get()
            if task is None:
                break
            done.put(("start", worker, task.position))
            try:
                outcome = execute_point(task)
            except KeyboardInterrupt:
                outcome = Outcome(task.position, task.name, "interrupted")
                stopping.append(signal.SIGINT)
            if os.getppid() != parent:  # the sweep died: no one to tell (the next sweep reads the files)
                break
            done.put(("done", worker, outcome))
    except KeyboardInterrupt:  # between two points
        pass
    finally:
        if os.getppid() == parent:
            done.close()
            done.join_thread()  # every report is handed over before the process ends
        else:
            done.cancel_join_thread()
        os.close(lock)


def _die_with(parent: int) -> None:
    """Receive SIGTERM (a graceful stop) when the sweep process dies, on Linux; elsewhere a
    worker outlives a killed sweep and finishes the point it runs."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the sweep died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)


class _SigtermAsInterrupt:
    """While a sweep runs in the main thread, SIGTERM stops it as Ctrl-C does (exit status 143)."""

    def __enter__(self):
        import threading

        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._raise)
        return self

    @staticmethod
    def _raise(signum, frame):
        raise RunInterrupted(signum)

    def __exit__(self, *exc_info):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


# ---------------------------------------------------------------------------- Ray tasks


def run_ray(tasks: list[Task], limit: int | None, on_outcome: Callable[[Outcome], None]) -> None:
    """Run ``tasks`` as Ray tasks of one CPU on the cluster :func:`connect_ray` connected to (at
    most ``limit`` at a time; by default as many as the cluster takes).  Ctrl-C cancels the tasks
    left and raises :class:`RunInterrupted`; their points start again on the next run of the sweep."""
    import ray

    remote = ray.remote(num_cpus=1, max_retries=0)(run_packed)
    waiting = list(tasks)
    flying: dict[Any, Task] = {}
    with _SigtermAsInterrupt():
        try:
            while waiting or flying:
                while waiting and (limit is None or len(flying) < limit):
                    task = waiting.pop(0)
                    flying[remote.remote(task, _pack(Path(task.directory)))] = task
                ready, _ = ray.wait(list(flying), num_returns=1, timeout=0.5)
                for ref in ready:
                    task = flying.pop(ref)
                    try:
                        outcome, files = ray.get(ref)
                    except Exception as exc:  # the task's worker died: the point failed
                        on_outcome(Outcome(task.position, task.name, "failed",
                                           f"its Ray task failed: {type(exc).__name__}: {exc}"))
                        continue
                    _unpack(Path(task.directory), files)
                    on_outcome(outcome)
        except KeyboardInterrupt as exc:
            for ref in flying:
                ray.cancel(ref)
            raise RunInterrupted(getattr(exc, "signal", signal.SIGINT)) from None


def run_packed(task: Task, files: dict[str, bytes]) -> tuple[Outcome, dict[str, bytes]]:
    """A Ray task: the point in a temporary folder, from its files; returns its outcome and files."""
    with tempfile.TemporaryDirectory(prefix="ribbed-sweep-") as scratch:
        directory = Path(scratch) / task.name
        _unpack(directory, files)
        here = Task(task.position, task.name, str(directory), task.scenario, task.source)
        try:
            outcome = execute_point(here, cores=1)
        except KeyboardInterrupt:
            outcome = Outcome(task.position, task.name, "interrupted")
        return outcome, _pack(directory)


def _pack(directory: Path) -> dict[str, bytes]:
    if not directory.is_dir():
        return {}
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def _unpack(directory: Path, files: dict[str, bytes]) -> None:
    """Replace ``directory`` with ``files``, written beside it first and then renamed."""
    staging = directory.with_name(f".{directory.name}.incoming")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name, data in files.items():
        (staging / name).parent.mkdir(parents=True, exist_ok=True)
        (staging / name).write_bytes(data)
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(staging, directory)


def connect_ray(address: str) -> bool:
    """Connect to the cluster at ``address`` quietly, as the Ray executor does; True when connected
    here (then :func:`disconnect_ray` after the sweep)."""
    import logging

    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                 configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RibbedError(Problem("ribbed sweep", "--address", f"cannot connect to a Ray cluster at "
                                  f"'{address}': {first}", "start one (ray start --head) and give its address "
                                  "(host:port, or auto on one of its nodes)")) from None
    return True


def disconnect_ray(connected: bool) -> None:
    if connected:
        import ray

        ray.shutdown()
