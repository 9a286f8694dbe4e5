"""Running a scenario into a run directory.

A run directory holds the resolved scenario (``scenario.yaml``, every default written out,
so the run can be repeated from it alone), the metrics of each evaluation (``metrics.csv``,
and per neuron ``agents.csv`` and the class-tuning matrices ``tuning.csv``), appended and flushed as they are produced, the message log
(``run.log``, docs/log-format.md), and ``summary.json``, written at the end, also when the run
is interrupted or fails.  Nothing that a run has written is lost when it stops early, and a run
that was killed continues from its log's last snapshot with :func:`resume`.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np
import pandas as pd

from ribbed.errors import Problem, RibbedError
from ribbed.model import TUNING_COLUMNS, NetworkModel
from ribbed.resources import MemoryLimit, available_cores
from ribbed.scenarios.loader import load_scenario, scenario_to_yaml
from ribbed.scenarios.overrides import apply_overrides
from ribbed.scenarios.schema import Scenario
from ribbed.scenarios.validation import memory_limit, validate
from ribbed.signals import RunInterrupted, StopOnSignal
from ribbed.versions import package_versions

if TYPE_CHECKING:
    from ribbed.log.run_log import RunLogWriter

__all__ = ["LOG_NAME", "RunResult", "apply_overrides", "resume", "run", "package_versions"]

#: The message log's file name in a run directory.
LOG_NAME = "run.log"


@dataclass
class RunResult:
    """What :func:`run` returns: the trained model, its metrics, and where they were written."""

    model: NetworkModel
    metrics: pd.DataFrame
    directory: Path | None
    seconds: float




_WRITABLE_FIX = "choose a folder this process can write to (--out, or output.dir in the scenario)"


def dated_folder(parent: Path, prefix: str) -> Path:
    """A folder that does not exist yet: ``<parent>/<prefix>-<date-time>``, with ``-2``, ``-3``...
    when several are made in the same second."""
    base = parent / f"{prefix}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


class RunDirectory:
    """Writes a run's files as the run goes."""

    def __init__(self, path: Path, scenario: Scenario, write_agents: bool):
        self.path = path
        self.write_agents = write_agents
        self._metrics_file = None
        self._agents_file = None
        self._tuning_file = None
        try:
            path.mkdir(parents=True, exist_ok=True)
            (path / "scenario.yaml").write_text(scenario_to_yaml(scenario), encoding="utf-8")
        except OSError as exc:
            raise RibbedError(Problem(str(path), "", f"cannot create the run folder: {exc.strerror or exc}",
                                      _WRITABLE_FIX)) from None

    @staticmethod
    def choose(scenario: Scenario, out: str | Path | None) -> Path:
        """The directory for a run: ``out`` if given (it must not hold files yet), otherwise a
        fresh ``<output.dir>/<name>-s<seed>-<date-time>``."""
        if out is not None:
            path = Path(out)
            if path.exists() and (not path.is_dir() or any(path.iterdir())):
                raise RibbedError(Problem(str(path), "", "already exists and is not an empty folder",
                                          "choose a new folder for --out, so no earlier run is overwritten"))
        else:
            path = dated_folder(Path(scenario.output.dir), f"{scenario.name}-s{scenario.seed}")
        existing = path
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise RibbedError(Problem(str(path), "", f"cannot create the run folder: '{existing}' is not a "
                                      "folder this process can write to", _WRITABLE_FIX))
        return path

    @classmethod
    def reopen(cls, path: Path, model: NetworkModel, row: dict | None) -> RunDirectory:
        """A run directory to continue at the model's tick: rows of later ticks are dropped, and
        the rows of the resumed tick written again (``row``: its metrics, from the snapshot)."""
        directory = cls.__new__(cls)
        directory.path, directory.write_agents = path, model.scenario.output.agent_metrics
        directory._metrics_file = directory._reopen("metrics.csv", model.tick, [row] if row else None,
                                                    list(model.datacollector.model_reporters))
        directory._agents_file = directory._tuning_file = None
        if directory.write_agents:
            records = tuning = None
            if row:
                model.evaluate()  # the per-neuron values of the resumed tick's evaluation
                records, tuning = model.agent_records(), model.tuning_records()
            directory._agents_file = directory._reopen("agents.csv", model.tick, records,
                                                       ["tick", "AgentID", *model.datacollector.agent_reporters])
            directory._tuning_file = directory._reopen("tuning.csv", model.tick, tuning, list(TUNING_COLUMNS))
        return directory

    def _reopen(self, name: str, tick: int, rows: list[dict] | None, columns: list[str]):
        """Keep the rows of ``name`` before ``tick``, append ``rows``; the open handle (or None).
        ``columns``: those this version writes to the file."""
        target = self.path / name
        kept: list[list[str]] = []
        header: list[str] | None = None
        if target.exists():
            with open(target, newline="", encoding="utf-8") as stream:
                reader = csv.reader(stream)
                header = next(reader, None)
                kept = [line for line in reader if line and float(line[0]) < tick]
        if header is None and not rows:
            target.unlink(missing_ok=True)
            return None
        stream = open(target, "w", newline="", encoding="utf-8")
        fieldnames = header or list(rows[0])
        # A run written by an earlier version of ribbed may lack columns it now records: they are
        # added at the end, empty in the rows it wrote before.
        added = [key for key in dict.fromkeys([*columns, *(key for row in rows or () for key in row)])
                 if key not in fieldnames]
        if added:
            fieldnames = fieldnames + added
            kept = [line + [""] * len(added) for line in kept]
        csv.writer(stream).writerows([fieldnames, *kept])
        handle = (stream, csv.DictWriter(stream, fieldnames=fieldnames))
        if rows:
            handle[1].writerows(rows)
        stream.flush()
        return handle

    def record(self, model: NetworkModel, row: dict) -> None:
        self._metrics_file = self._append(self._metrics_file, "metrics.csv", [row])
        if model.specialization.raster:
            self._write_raster(model.specialization)
        if self.write_agents:
            self._agents_file = self._append(self._agents_file, "agents.csv", model.agent_records())
            tuning = model.tuning_records()
            if tuning:
                self._tuning_file = self._append(self._tuning_file, "tuning.csv", tuning)

    def _write_raster(self, recorder) -> None:
        """``raster.npz``: the latest evaluation's spikes of the first held-out samples at every
        step, per spiking population (:attr:`SpecializationRecorder.raster`), replaced whole at
        each evaluation (through a temporary file and a rename)."""
        names = list(recorder.raster)
        arrays = {f"spikes_{i}": recorder.raster[name] for i, name in enumerate(names)}
        target = self.path / "raster.npz"
        partial = self.path / ".raster.partial.npz"
        try:
            np.savez_compressed(partial, tick=np.int64(recorder.raster_tick), labels=recorder.raster_labels,
                                populations=np.array(names, dtype=str), **arrays)
            os.replace(partial, target)
        except OSError as exc:
            raise _cannot_write(target, exc) from None
        finally:
            partial.unlink(missing_ok=True)

    def _append(self, handle, name: str, rows: list[dict]):
        try:
            if handle is None:
                stream = open(self.path / name, "w", newline="", encoding="utf-8")
                handle = (stream, csv.DictWriter(stream, fieldnames=list(rows[0])))
                handle[1].writeheader()
            handle[1].writerows(rows)
            handle[0].flush()
        except OSError as exc:
            raise _cannot_write(self.path / name, exc) from None
        return handle

    def finish(self, summary: dict) -> None:
        """Close the metrics files and write summary.json, whole or not at all."""
        for handle in (self._metrics_file, self._agents_file, self._tuning_file):
            if handle is not None:
                try:
                    handle[0].close()
                except OSError:  # (its rows were flushed as they came; a resumed run rewrites the rest)
                    pass
        text = json.dumps(_finite(summary), indent=2, default=str, allow_nan=False)
        # Through a temporary file and a rename: a failed write (a full disk) leaves no partial summary.
        target = self.path / "summary.json"
        partial = target.with_name(".summary.json.partial")
        try:
            partial.write_text(text + "\n", encoding="utf-8")
            os.replace(partial, target)
        except OSError as exc:
            raise _cannot_write(target, exc) from None
        finally:
            partial.unlink(missing_ok=True)


def _cannot_write(path: Path, exc: OSError) -> RibbedError:
    return RibbedError(Problem(str(path), "", f"cannot write: {exc.strerror or exc}",
                               "free space on the disk that holds the run folder (or make it writable), then "
                               "continue the run from its log's last snapshot with ribbed run --resume RUN_DIR"))


def _message_totals(model: NetworkModel) -> dict[str, int]:
    """Every message the run sent (since tick 0, a resumed run included), in all and by kind."""
    from ribbed.scheduler.messages import Kind

    counts = model.executor.message_counts
    return {"total": int(counts.sum()), **{kind.name.lower(): int(counts[kind]) for kind in Kind}}


def _finite(value: Any) -> Any:
    """NaN and infinities (a diverged run) as null, so summary.json stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _is_out_of_memory(exc: BaseException) -> bool:
    """Python's MemoryError, or torch's (a GPU's, or the CPU allocator's RuntimeError)."""
    if isinstance(exc, MemoryError):
        return True
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


def _out_of_memory(scenario: Scenario) -> RibbedError:
    return RibbedError(Problem(scenario.source, "", "ran out of memory for this network",
                               "use smaller populations, sparser connectivity, a smaller run.batch_size, "
                               "or backend.dtype float32"))


def _attach(model: NetworkModel, writer: RunLogWriter | None) -> None:
    if writer is not None:
        from ribbed.log.recorder import LogRecorder

        log = model.scenario.log
        model.recorder = LogRecorder(model, log.level, log.snapshot_every or model.scenario.run.eval_every, writer)


def run(scenario: Scenario | str | Path | Mapping[str, Any], *, out: str | Path | None = None,
        write: bool = True, ticks: int | None = None, seed: int | None = None, backend: str | None = None,
        device: str | None = None, shards: int | None = None,
        on_tick: Callable[[NetworkModel], None] | None = None, cores: int | None = None,
        max_memory: int | str | MemoryLimit | None = None) -> RunResult:
    """Load, build and run a scenario; write its run directory (with its message log, unless the
    scenario's ``log.level`` is off) unless ``write`` is False.  ``cores``: the cores the run may
    use, which its defaults are planned for (:mod:`ribbed.resources`); by default those this
    process can use (a Ray task of one CPU passes 1).  A scenario whose estimated size does not
    fit in ``max_memory`` (bytes, or ``"8G"``; default: the memory this machine has available)
    is refused before anything is built or written."""
    from ribbed.determinism import configure_torch

    scenario = apply_overrides(load_scenario(scenario), ticks=ticks, seed=seed, backend=backend, device=device,
                               shards=shards)
    limit = memory_limit(max_memory)  # read once: the same bound for the check and the build
    validate(scenario, max_memory=limit)  # every rule, its size included, before anything is built or written
    key = None
    if write and scenario.log.level != "off":
        from ribbed.log.keys import scenario_key

        key = scenario_key(scenario)  # a key file that cannot be used is an error before anything is written
    # The folder is checked before the model is built (which can take long), and created after,
    # so a scenario that cannot be built leaves no empty run directory behind.
    path = RunDirectory.choose(scenario, out) if write else None
    cores = available_cores() if cores is None else max(1, int(cores))
    threads = configure_torch(scenario.backend.threads, cores=cores)
    model = _build(scenario, limit)
    directory = RunDirectory(path, scenario, scenario.output.agent_metrics) if path is not None else None
    writer = None
    if path is not None and scenario.log.level != "off":
        from ribbed.log.run_log import open_run_log

        writer = open_run_log(path / LOG_NAME, model, scenario.log.level, threads, cores=cores, key=key)
    _attach(model, writer)
    return _execute(model, directory, writer, scenario.run.ticks, on_tick, {}, _resources(cores, threads, writer))


def resume(run_dir: str | Path, *, on_tick: Callable[[NetworkModel], None] | None = None,
           cores: int | None = None, max_memory: int | str | MemoryLimit | None = None) -> RunResult:
    """Continue an interrupted run from the last snapshot in its log: the metrics, weights and
    log come out as those of an uninterrupted run of the same scenario.  A keyed log goes on
    only with its key (the scenario's ``log.key_file``), which must authenticate all of it.  Its
    size is checked against ``max_memory`` as :func:`run` checks it, before the model is rebuilt.
    ``cores`` as for :func:`run` (torch's thread counts are those the log recorded, whatever it says)."""
    from ribbed.determinism import configure_torch
    from ribbed.log.replay import keyed_reader, scenario_of
    from ribbed.log.run_log import open_run_log, restore_last_snapshot

    path = Path(run_dir)
    if not (path / LOG_NAME).exists():
        raise RibbedError(Problem(str(path), "", f"there is no {LOG_NAME} in this folder",
                                  "give the run directory of a run whose scenario logs (log.level is not off)"))
    key, reader = keyed_reader(path / LOG_NAME, str(path / "scenario.yaml"))
    with reader as log:
        end = log.end
        if end is not None and end.get("status") == "completed":
            raise RibbedError(Problem(str(path / LOG_NAME), "", f"this run completed at tick {end.get('tick')}",
                                      "nothing to resume; start a new run with ribbed run"))
        header = log.header
        scenario = scenario_of(log, str(path / "scenario.yaml"))
        cores = available_cores() if cores is None else max(1, int(cores))
        # The thread counts the run was logged with (a replay and a resumed run compute the same sums).
        threads = configure_torch(header["threads"]["torch_threads"], header["threads"]["torch_interop_threads"])
        model = _build(scenario, memory_limit(max_memory))
        _check_same_executor(model, header, path / LOG_NAME)
        model.specialization.remember_initial()  # the model is at tick 0 until the snapshot is restored
        point = restore_last_snapshot(log, model)
        model.specialization.resume()
    writer = open_run_log(path / LOG_NAME, model, scenario.log.level, threads, resume=point, cores=cores, key=key)
    directory = RunDirectory.reopen(path, model, dict(model.last_metrics) if point.snapshot_tick is not None else None)
    _reload_metrics(model, path / "metrics.csv")
    _attach(model, writer)
    return _execute(model, directory, writer, scenario.run.ticks - model.tick, on_tick,
                    {"resumed_from": model.tick, "threads": threads}, _resources(cores, threads, writer))


def _resources(cores: int, threads: dict, writer: RunLogWriter | None) -> dict:
    """What the run chose to run with, as summary.json records it: the cores it could use,
    torch's thread counts, and the log's writer (``process``, ``thread``, or None without a log)."""
    return {"cores": cores, "torch_threads": threads["torch_threads"],
            "torch_interop_threads": threads["torch_interop_threads"],
            "log_writer": None if writer is None else writer.kind}


def _check_same_executor(model: NetworkModel, header: dict, source: Path) -> None:
    here = (model.executor.name, model.executor.device_name, model.executor.dtype_name)
    there = (header["executor"], header["device"], header["dtype"])
    if here != there:
        raise RibbedError(Problem(str(source), "", f"the run was logged on the {there[0]} executor ({there[1]}, "
                                  f"{there[2]}) and would continue on the {here[0]} executor ({here[1]}, {here[2]})",
                                  "continue it on a machine with the same device, so that it stays bit for bit "
                                  "the run it was"))


def _reload_metrics(model: NetworkModel, metrics: Path) -> None:
    """The metrics rows up to the resumed tick, handed to the model (its DataCollector collects only
    what the resumed run evaluates)."""
    if not metrics.exists():
        return
    earlier = pd.read_csv(metrics)
    model.restore_metrics(earlier[earlier["tick"] <= model.tick])


def _build(scenario: Scenario, limit: MemoryLimit | None) -> NetworkModel:
    try:
        return NetworkModel(scenario, max_memory=limit)
    except (MemoryError, RuntimeError) as exc:
        if not _is_out_of_memory(exc):
            raise
        raise _out_of_memory(scenario) from None


def _execute(model: NetworkModel, directory: RunDirectory | None, writer: RunLogWriter | None, ticks: int,
             on_tick: Callable[[NetworkModel], None] | None, extra: dict, resources: dict) -> RunResult:
    """Run ``ticks`` ticks and close the run's files, whatever happens: the log gets its ``end``
    record and the folder its summary.json, also when the run fails or is stopped by a signal
    (then between two ticks, see :mod:`ribbed.signals`, and :class:`RunInterrupted` is raised
    once everything is written)."""
    scenario = model.scenario
    start, first_tick = time.perf_counter(), model.tick
    status, error = "completed", None
    failure: BaseException | None = None  # what stopped the run; closing the files never hides it
    stop = StopOnSignal(model)
    with stop:
        try:
            model.run(ticks, on_tick=on_tick, on_record=directory.record if directory else None)
            if stop.received is not None:
                status = "interrupted"
        except KeyboardInterrupt as exc:
            status, failure = "interrupted", exc
        except BaseException as exc:
            failure = exc
            if _is_out_of_memory(exc):
                status, error, failure = "failed", "out of memory", _out_of_memory(scenario)
            else:
                status, error = "failed", str(exc) if isinstance(exc, RibbedError) else f"{type(exc).__name__}: {exc}"
        stop.hold()  # a second Ctrl-C while the files are closed would cut them short
        seconds = time.perf_counter() - start
        ran = model.tick - first_tick
        closing: list[RibbedError] = []  # what failed while closing (a full disk fails every write)
        model.executor.close()  # the model stays readable: an executor keeps its final state
        if writer is not None:
            try:
                writer.close(status, model.tick, error=error)
            except RibbedError as exc:  # the log could not be finished (its writer failed)
                closing.append(exc)
                if status == "completed":
                    status, error = "failed", str(exc)
        if directory is not None:
            try:
                directory.finish({
                    "scenario": scenario.name, "seed": scenario.seed, "backend": scenario.backend.kind,
                    "device": model.executor.device_name, "dtype": model.executor.dtype_name,
                    "status": status, "error": error, "ticks": model.tick, "seconds": round(seconds, 3),
                    "ticks_per_second": round(ran / seconds, 2) if seconds > 0 else None,
                    "final": model.last_metrics, "neurons": model.network.n_neurons,
                    # final's message counts cover the last evaluation window; these, the whole run.
                    "messages": _message_totals(model),
                    "synapses": model.network.n_synapses, "versions": package_versions(),
                    "log": (LOG_NAME if writer is not None else None), "log_level": scenario.log.level,
                    "resources": resources, **model.executor.describe(), **extra,
                })
            except RibbedError as exc:
                closing.append(exc)
    # The first cause, alone: a run that failed for a full disk fails again on every file it
    # closes, and those later failures say nothing new.
    if isinstance(failure, RibbedError):
        raise failure from None
    if failure is not None:
        raise failure
    if closing:
        raise closing[0] from None
    if stop.received is not None:  # everything is written; now stop as the signal asked
        raise RunInterrupted(stop.received)
    return RunResult(model=model, metrics=model.metrics, directory=directory.path if directory else None,
                     seconds=seconds)
