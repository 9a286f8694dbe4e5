"""Running a scenario into a run directory.

A run directory holds the resolved scenario (``scenario.yaml``, every default written out,
so the run can be repeated from it alone), the metrics of each evaluation (``metrics.csv``,
and per neuron ``agents.csv``), appended and flushed as they are produced, and
``summary.json``, written at the end, also when the run is interrupted or fails.  Nothing
that a run has written is lost when it stops early.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import time
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd

from ribbed.errors import Problem, RibbedError, ScenarioError
from ribbed.model import NetworkModel
from ribbed.scenarios.loader import load_scenario, scenario_to_yaml
from ribbed.scenarios.schema import Scenario

__all__ = ["RunResult", "apply_overrides", "run", "package_versions"]


@dataclass
class RunResult:
    """What :func:`run` returns: the trained model, its metrics, and where they were written."""

    model: NetworkModel
    metrics: pd.DataFrame
    directory: Path | None
    seconds: float


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("ribbed", "numpy", "mesa", "networkx", "scikit-learn", "pydantic"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def apply_overrides(scenario: Scenario, **overrides: Any) -> Scenario:
    """A copy of ``scenario`` with command-line style overrides (``ticks``, ``seed``, ``backend``, ``device``),
    validated again; errors name the option."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if not given:
        return scenario
    data = scenario.model_dump()
    where = {"ticks": ("run", "ticks"), "seed": ("seed",), "backend": ("backend", "kind"), "device": ("backend", "device")}
    for key, value in given.items():
        target = data
        *parents, last = where[key]
        for parent in parents:
            target = target[parent]
        target[last] = value
    try:
        updated = load_scenario(data)
    except ScenarioError as exc:
        problems = [Problem(f"{scenario.source} with " + " ".join(f"--{k} {v}" for k, v in given.items()),
                            p.path, p.message, p.fix) for p in exc.problems]
        raise ScenarioError(problems) from None
    updated._source, updated._folder = scenario.source, scenario.folder
    return updated


_WRITABLE_FIX = "choose a folder this process can write to (--out, or output.dir in the scenario)"


class RunDirectory:
    """Writes a run's files as the run goes."""

    def __init__(self, path: Path, scenario: Scenario, write_agents: bool):
        self.path = path
        self.write_agents = write_agents
        self._metrics_file = None
        self._agents_file = None
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
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            base = Path(scenario.output.dir) / f"{scenario.name}-s{scenario.seed}-{stamp}"
            path, n = base, 1
            while path.exists():
                n += 1
                path = base.with_name(f"{base.name}-{n}")
        existing = path
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise RibbedError(Problem(str(path), "", f"cannot create the run folder: '{existing}' is not a "
                                      "folder this process can write to", _WRITABLE_FIX))
        return path

    def record(self, model: NetworkModel, row: dict) -> None:
        self._metrics_file = self._append(self._metrics_file, "metrics.csv", [row])
        if self.write_agents:
            self._agents_file = self._append(self._agents_file, "agents.csv", model.agent_records())

    def _append(self, handle, name: str, rows: list[dict]):
        if handle is None:
            stream = open(self.path / name, "w", newline="", encoding="utf-8")
            handle = (stream, csv.DictWriter(stream, fieldnames=list(rows[0])))
            handle[1].writeheader()
        handle[1].writerows(rows)
        handle[0].flush()
        return handle

    def finish(self, summary: dict) -> None:
        for handle in (self._metrics_file, self._agents_file):
            if handle is not None:
                handle[0].close()
        text = json.dumps(_finite(summary), indent=2, default=str, allow_nan=False)
        (self.path / "summary.json").write_text(text + "\n", encoding="utf-8")


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


def run(scenario: Scenario | str | Path | Mapping[str, Any], *, out: str | Path | None = None,
        write: bool = True, ticks: int | None = None, seed: int | None = None, backend: str | None = None,
        device: str | None = None, on_tick: Callable[[NetworkModel], None] | None = None) -> RunResult:
    """Load, build and run a scenario; write its run directory unless ``write`` is False."""
    scenario = apply_overrides(load_scenario(scenario), ticks=ticks, seed=seed, backend=backend, device=device)
    # The folder is checked before the model is built (which can take long), and created after,
    # so a scenario that cannot be built leaves no empty run directory behind.
    path = RunDirectory.choose(scenario, out) if write else None
    try:
        model = NetworkModel(scenario)
    except (MemoryError, RuntimeError) as exc:
        if not _is_out_of_memory(exc):
            raise
        raise _out_of_memory(scenario) from None
    directory = RunDirectory(path, scenario, scenario.output.agent_metrics) if path is not None else None
    start = time.perf_counter()
    status, error = "completed", None
    try:
        model.run(on_tick=on_tick, on_record=directory.record if directory else None)
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except BaseException as exc:
        if _is_out_of_memory(exc):
            status, error = "failed", "out of memory"
            raise _out_of_memory(scenario) from None
        status, error = "failed", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        seconds = time.perf_counter() - start
        if directory is not None:
            directory.finish({
                "scenario": scenario.name, "seed": scenario.seed, "backend": scenario.backend.kind,
                "device": model.executor.device_name, "dtype": model.executor.dtype_name,
                "status": status, "error": error, "ticks": model.tick, "seconds": round(seconds, 3),
                "ticks_per_second": round(model.tick / seconds, 2) if seconds > 0 else None,
                "final": model.last_metrics, "neurons": model.network.n_neurons,
                "synapses": model.network.n_synapses, "versions": package_versions(),
            })
    return RunResult(model=model, metrics=model.metrics, directory=directory.path if directory else None,
                     seconds=seconds)
