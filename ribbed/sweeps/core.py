"""``ribbed.sweep``: a scenario over a grid of field values and seeds, in parallel, resumable,
into one folder of run directories and one table (``sweep.parquet``).

The steps, in order: expand the grid (:mod:`.grid`) and check every point's scenario; open the
folder (:mod:`.folder`: ``sweep.json`` first, or the same sweep found there); skip the points
whose summary.json says completed; run the others (:mod:`.workers`: local processes, or Ray tasks
with ``address``); write the table (:mod:`.results`).  A failed point does not stop the others;
Ctrl-C (or SIGTERM) stops the runs between two ticks and raises :class:`SweepInterrupted` once
their files are closed, and the same call (or ``ribbed sweep --resume DIR``) continues.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import pandas as pd
import yaml

from ribbed.errors import Problem, RibbedError
from ribbed.resources import available_cores
from ribbed.scenarios.loader import load_scenario, scenario_to_yaml
from ribbed.scenarios.schema import Scenario
from ribbed.signals import RunInterrupted
from ribbed.sweeps.folder import SweepFolder, choose_folder, manifest, manifest_scenario, point_status, read_manifest
from ribbed.sweeps.grid import check_points, expand, grid_from, seeds_from
from ribbed.sweeps.results import PARQUET_NAME, sweep_table, write_parquet
from ribbed.sweeps.workers import Outcome, Task, connect_ray, disconnect_ray, run_local, run_ray

__all__ = ["SweepInterrupted", "SweepResult", "resume_sweep", "sweep"]

#: Told of the sweep's progress: (points done, points in all, the outcome that just came or None at the start).
Progress = Callable[[int, int, "Outcome | None"], None]


@dataclass
class SweepResult:
    """What :func:`sweep` returns: the table (as written to sweep.parquet), the folder, and how
    each point ended, in the sweep's order."""

    frame: pd.DataFrame
    directory: Path
    outcomes: list[Outcome]

    @property
    def parquet(self) -> Path:
        return self.directory / PARQUET_NAME

    @property
    def failed(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome.status != "completed"]


class SweepInterrupted(RunInterrupted):
    """A sweep stopped by Ctrl-C or SIGTERM once its runs closed their files; ``directory`` is
    the folder to continue (``ribbed sweep --resume DIR``)."""

    def __init__(self, signum: int, directory: Path):
        super().__init__(signum)
        self.directory = directory


def sweep(scenario: Scenario | str | Path | Mapping[str, Any], *,
          seeds: int | str | Sequence[int] | None = None,
          grid: Mapping[str, Any] | Iterable[str] | None = None, out: str | Path | None = None,
          workers: int | None = None, address: str | None = None, progress: Progress | None = None) -> SweepResult:
    """Run ``scenario`` at every point of ``grid`` (dotted fields to a value or a list of values,
    ``{"learning.lr": [0.01, 0.1]}``, or ``--set`` texts) with every seed of ``seeds`` (a count, a
    ``"0-9"`` text, a list; default: the scenario's seed).

    Each point is a run directory in ``out`` (default ``<output.dir>/<name>-sweep-<date-time>``);
    a folder that holds the same sweep is continued.  ``workers``: local worker processes
    (default: the cores this process may use), or with ``address`` (a Ray cluster's) the most
    Ray tasks at a time (default: as many as the cluster takes).  Every point's scenario is
    checked before anything runs; bad input raises :class:`ribbed.RibbedError`."""
    base = load_scenario(scenario)
    swept = grid_from(grid)
    chosen = seeds_from(seeds, base)
    points = expand(swept, chosen)
    scenarios = check_points(base, points)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise RibbedError(Problem("ribbed sweep", "--workers", f"expected a number of workers >= 1, got {workers!r}",
                                  "give --workers 1 or more (default: the cores this process may use)"))
    path = choose_folder(base, out)
    connected = connect_ray(address) if address is not None else False  # a bad address leaves no folder
    folder = None
    try:
        folder = SweepFolder(path, manifest(base, swept, chosen, points))
        outcomes: dict[int, Outcome] = {}
        tasks = []
        for position, (point, point_scenario) in enumerate(zip(points, scenarios)):
            if point_status(path / point.name) == "completed":
                outcomes[position] = Outcome(position, point.name, "completed")
            else:
                resolved = yaml.safe_load(scenario_to_yaml(point_scenario))  # stands alone
                tasks.append(Task(position, point.name, str(path / point.name), resolved, point_scenario.source))
        if progress is not None:
            progress(len(outcomes), len(points), None)

        def record(outcome: Outcome) -> None:
            outcomes[outcome.position] = outcome
            if progress is not None:
                progress(len(outcomes), len(points), outcome)

        try:
            if tasks and address is not None:
                run_ray(tasks, workers, record)
            elif tasks:
                cores = _usable_cores()
                run_local(tasks, min(workers or len(cores), len(tasks)), path, cores, record)
        except RunInterrupted as exc:
            raise SweepInterrupted(exc.signal, path) from None
        table = sweep_table(path, swept, points)
        write_parquet(table, path / PARQUET_NAME)
    finally:
        if folder is not None:
            folder.close()
        disconnect_ray(connected)
    return SweepResult(table, path, [outcomes[i] for i in range(len(points))])


def resume_sweep(directory: str | Path, *, workers: int | None = None, address: str | None = None,
                 progress: Progress | None = None) -> SweepResult:
    """Continue the sweep in ``directory`` from its sweep.json: the points not completed run."""
    path = Path(directory)
    data = read_manifest(path)
    return sweep(manifest_scenario(data, path), seeds=data["seeds"], grid=data["grid"], out=path, workers=workers,
                 address=address, progress=progress)


def _usable_cores() -> list[int]:
    """The cores to share among local workers: this process's affinity, as many as a CPU quota
    lets run at once (:func:`ribbed.resources.available_cores`)."""
    try:
        cores = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = list(range(os.cpu_count() or 1))
    return cores[:available_cores()]
