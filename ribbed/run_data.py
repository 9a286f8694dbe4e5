"""The files of a run directory or a sweep folder, loaded as tables for reports and comparisons.

A run directory (``ribbed run``) is one group with one run; a sweep folder (``ribbed sweep``)
is one group per grid point, each with one run per seed.  Every table is read from the runs'
own files (``metrics.csv``, ``agents.csv``, ``tuning.csv``, ``summary.json``, the log's
header), not from ``sweep.parquet``, so that a sweep stopped before it wrote its table, or a run
that was interrupted, is read as far as it got.  Tables gain the columns ``group`` (the grid
point's label, or the run's name) and ``seed``.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ribbed.errors import Problem, RibbedError

__all__ = ["Group", "Raster", "Results", "RunFiles", "analysed_populations", "guided_populations", "headline_metrics",
           "spiking_populations",
           "load_results"]

_FIX = "give the folder that ribbed run or ribbed sweep printed (it holds metrics.csv, or sweep.json)"


def _read_csv(path: Path) -> pd.DataFrame | None:
    """A CSV a run appends to, or None when it is missing or holds no row yet."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        frame = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise RibbedError(Problem(str(path), "", f"cannot be read as a table: {exc}",
                                  "give the run directory as ribbed run wrote it")) from None
    return None if frame.empty else frame


@dataclass
class Raster:
    """A run's ``raster.npz``: the evaluation's tick, the samples' labels, and per spiking
    population its spikes (samples, steps, size), 0/1."""

    tick: int
    labels: np.ndarray
    spikes: dict[str, np.ndarray]


@dataclass
class RunFiles:
    """One run directory's files, read on first use."""

    directory: Path
    seed: int
    group: str

    @cached_property
    def summary(self) -> dict:
        """summary.json (empty for a run killed before it wrote one)."""
        try:
            data = json.loads((self.directory / "summary.json").read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    @property
    def status(self) -> str:
        return self.summary.get("status", "unfinished")

    @cached_property
    def scenario(self) -> dict:
        """The resolved scenario (scenario.yaml) as plain data."""
        path = self.directory / "scenario.yaml"
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise RibbedError(Problem(str(path), "", f"cannot read the run's scenario: {exc}", _FIX)) from None
        if not isinstance(data, dict):
            raise RibbedError(Problem(str(path), "", "is not a scenario", _FIX))
        return data

    def _tagged(self, frame: pd.DataFrame | None) -> pd.DataFrame | None:
        if frame is None:
            return None
        frame = frame.copy()
        frame.insert(0, "seed", self.seed)
        frame.insert(0, "group", self.group)
        return frame

    @cached_property
    def metrics(self) -> pd.DataFrame | None:
        """metrics.csv, one row per evaluation, with ``group`` and ``seed``; None before the first."""
        return self._tagged(_read_csv(self.directory / "metrics.csv"))

    @cached_property
    def agents(self) -> pd.DataFrame | None:
        """agents.csv, one row per agent per evaluation (None when the run wrote none)."""
        return self._tagged(_read_csv(self.directory / "agents.csv"))

    @cached_property
    def tuning(self) -> pd.DataFrame | None:
        """tuning.csv (tick, AgentID, population, class, response), where the run wrote one."""
        return self._tagged(_read_csv(self.directory / "tuning.csv"))

    @cached_property
    def raster(self) -> Raster | None:
        """raster.npz (the last evaluation's spikes of a few held-out samples at every step, per
        spiking population), where the run wrote one; None for an unreadable file too."""
        path = self.directory / "raster.npz"
        try:
            with np.load(path, allow_pickle=False) as data:
                names = [str(name) for name in data["populations"]]
                return Raster(int(data["tick"]), np.array(data["labels"]),
                              {name: np.array(data[f"spikes_{i}"]) for i, name in enumerate(names)})
        except (OSError, ValueError, KeyError):
            return None

    @property
    def log_path(self) -> Path | None:
        path = self.directory / "run.log"
        return path if path.exists() else None

    @cached_property
    def layout(self) -> dict:
        """Populations (name, start, size, role) and projections (name, pre, post), from the log's
        header when there is a log, else from the scenario."""
        if self.log_path is not None:
            from ribbed.log.reader import LogReader

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with LogReader(self.log_path) as log:
                    return {"populations": log.header["populations"], "projections": log.header["projections"]}
        populations, start = [], 0
        for p in self.scenario["populations"]:
            populations.append({"name": p["name"], "start": start, "size": p["size"], "role": p.get("role", "hidden")})
            start += p["size"]
        projections = [{"name": p.get("name") or f"{p['pre']}->{p['post']}", "pre": p["pre"], "post": p["post"]}
                       for p in self.scenario["projections"]]
        return {"populations": populations, "projections": projections}


@dataclass
class Group:
    """The runs of one grid point (one per seed), or the one run of a run directory."""

    label: str
    values: dict[str, Any]
    runs: list[RunFiles]

    def _concat(self, name: str) -> pd.DataFrame | None:
        frames = [getattr(run, name) for run in self.runs]
        frames = [f for f in frames if f is not None]
        return pd.concat(frames, ignore_index=True, sort=False) if frames else None

    @cached_property
    def metrics(self) -> pd.DataFrame | None:
        return self._concat("metrics")

    @cached_property
    def agents(self) -> pd.DataFrame | None:
        return self._concat("agents")

    @cached_property
    def tuning(self) -> pd.DataFrame | None:
        return self._concat("tuning")

    @property
    def first(self) -> RunFiles | None:
        """The run that one-run figures (receptive fields, weights) are drawn from: the first seed
        that evaluated at least once."""
        return next((run for run in self.runs if run.metrics is not None), None)

    @property
    def seeds(self) -> list[int]:
        return [run.seed for run in self.runs]


@dataclass
class Results:
    """A run directory or a sweep folder: its groups and its base scenario."""

    directory: Path
    kind: str  # "run" or "sweep"
    scenario: dict
    groups: list[Group]
    grid: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.scenario.get("name", self.directory.name))

    @cached_property
    def metrics(self) -> pd.DataFrame | None:
        """Every group's metrics rows, one table."""
        frames = [g.metrics for g in self.groups if g.metrics is not None]
        return pd.concat(frames, ignore_index=True, sort=False) if frames else None

    @property
    def runs(self) -> list[RunFiles]:
        return [run for group in self.groups for run in group.runs]


def analysed_populations(metrics: pd.DataFrame | None) -> list[str]:
    """The populations whose selectivity the run measured (a ``P_selectivity_mean`` column with values)."""
    if metrics is None:
        return []
    names = [c[: -len("_selectivity_mean")] for c in metrics.columns if c.endswith("_selectivity_mean")]
    return [n for n in names if pd.to_numeric(metrics[f"{n}_selectivity_mean"], errors="coerce").notna().any()]


def guided_populations(metrics: pd.DataFrame | None) -> list[str]:
    """The guided populations (a ``G_guide_r2`` column)."""
    if metrics is None:
        return []
    return [c[: -len("_guide_r2")] for c in metrics.columns if c.endswith("_guide_r2")]


def headline_metrics(metrics: pd.DataFrame) -> list[str]:
    """The metrics a summary shows by default: the held-out score and the losses, then each
    analysed population's specialization means and each guided population's numbers."""
    names = [c for c in ("test_accuracy", "test_r2", "test_persistence_r2", "test_loss", "train_loss") if c in metrics]
    for population in analysed_populations(metrics):
        names += [f"{population}_selectivity_mean", f"{population}_mutual_info_mean"]
    for population in guided_populations(metrics):
        names += [f"{population}_{m}" for m in ("guide_r2", "alpha_mean", "clusters", "purity", "modularity")
                  if f"{population}_{m}" in metrics]
    return names


def _short(field_name: str) -> str:
    return field_name.rsplit(".", 1)[-1]


def point_label(values: dict[str, Any]) -> str:
    """A grid point's label: its swept fields by their last name (``lr=0.05 backward_every=4``)."""
    return " ".join(f"{_short(k)}={v}" for k, v in values.items()) or "base"


def load_results(path: str | Path) -> Results:
    """The run directory or sweep folder at ``path``; anything else is a RibbedError naming
    what is missing."""
    folder = Path(path)
    if not folder.is_dir():
        what = "does not exist" if not folder.exists() else "is a file, not a folder"
        raise RibbedError(Problem(str(folder), "", what, _FIX))
    if (folder / "sweep.json").exists():
        return _load_sweep(folder)
    if (folder / "scenario.yaml").exists() and ((folder / "metrics.csv").exists() or (folder / "run.log").exists()):
        run = RunFiles(folder, 0, folder.name)
        scenario = run.scenario
        run.seed = int(scenario.get("seed", 0))
        run.group = str(scenario.get("name", folder.name))
        return Results(folder, "run", scenario, [Group(run.group, {}, [run])])
    raise RibbedError(Problem(str(folder), "", "is neither a run directory (scenario.yaml with metrics.csv or "
                              "run.log) nor a sweep folder (sweep.json)", _FIX))


def _load_sweep(folder: Path) -> Results:
    from ribbed.sweeps.folder import read_manifest

    manifest = read_manifest(folder)
    try:
        points = manifest["points"]
        grid = manifest["grid"]
        scenario = manifest["scenario"]["resolved"]
        groups: dict[int, Group] = {}
        for point in points:
            index = int(point["index"])
            if index not in groups:
                groups[index] = Group(point_label(point["values"]), dict(point["values"]), [])
            directory = folder / point["name"]
            if directory.is_dir():
                groups[index].runs.append(RunFiles(directory, int(point["seed"]), groups[index].label))
    except (KeyError, TypeError, ValueError) as exc:
        raise RibbedError(Problem(str(folder / "sweep.json"), "points", f"is not a sweep manifest ribbed wrote ({exc})",
                                  _FIX)) from None
    kept = [g for g in groups.values() if g.runs]
    if not kept:
        raise RibbedError(Problem(str(folder), "", "no point of this sweep has a run directory yet",
                                  "run the sweep (ribbed sweep --resume DIR) before reporting on it"))
    return Results(folder, "sweep", scenario, kept, grid)


def spiking_populations(scenario: dict) -> list[str]:
    """The non-input populations of a (resolved) scenario whose firing policy emits spikes (any
    policy but ``rate``), in the scenario's order."""
    return [p["name"] for p in scenario.get("populations", []) if p.get("role", "hidden") != "input"
            and isinstance(p.get("firing"), dict) and p["firing"].get("policy", "rate") != "rate"]
