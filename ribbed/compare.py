"""``ribbed compare``: runs and sweeps side by side, on their final metrics.

Each folder given is a run directory (one entry, one seed) or a sweep folder (one entry per
grid point, its seeds pooled).  For every metric, each entry shows the mean of its runs' final
values (the last evaluation of each run) with its 95% t-interval across seeds (none for a single
run), the difference from the first entry, and the two-sided p-value of Welch's t-test of that
difference (undefined, shown as "-", when either side has fewer than two seeds).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ribbed.errors import Problem, RibbedError
from ribbed.intervals import Interval, mean_ci, welch_p
from ribbed.run_data import headline_metrics, load_results

__all__ = ["Cell", "Comparison", "Entry", "compare"]


@dataclass
class Entry:
    """One side of a comparison: a run, or a grid point of a sweep, and its runs' final rows."""

    label: str
    source: Path
    finals: pd.DataFrame  # one row per seed: each run's last metrics row

    def values(self, metric: str) -> np.ndarray:
        if metric not in self.finals:
            return np.array([], dtype=np.float64)
        return pd.to_numeric(self.finals[metric], errors="coerce").to_numpy(dtype=np.float64)


@dataclass
class Cell:
    """One metric of one entry: its interval, and its difference from the first entry with Welch's p."""

    interval: Interval
    difference: float
    p: float


@dataclass
class Comparison:
    """The entries, the metrics compared, and a cell per (metric, entry label)."""

    entries: list[Entry]
    metrics: list[str]
    cells: dict[tuple[str, str], Cell]

    def to_json(self) -> dict:
        """Plain data (NaN as null), as ``--json`` writes it."""
        def number(value: float) -> float | None:
            return None if value is None or math.isnan(value) else float(value)

        return {
            "reference": self.entries[0].label,
            "entries": [{"label": e.label, "source": str(e.source), "seeds": len(e.finals)} for e in self.entries],
            "metrics": {metric: [{"entry": e.label, "n": cell.interval.n, "mean": number(cell.interval.mean),
                                  "ci95": [number(cell.interval.lo), number(cell.interval.hi)],
                                  "difference": number(cell.difference), "welch_p": number(cell.p)}
                                 for e in self.entries for cell in [self.cells[(metric, e.label)]]]
                        for metric in self.metrics},
        }


def _entries(path: str | Path) -> list[Entry]:
    results = load_results(path)
    entries = []
    for group in results.groups:
        finals = [run.metrics.iloc[[-1]] for run in group.runs if run.metrics is not None]
        if not finals:
            continue
        label = results.directory.name if results.kind == "run" else f"{results.directory.name} [{group.label}]"
        entries.append(Entry(label, results.directory, pd.concat(finals, ignore_index=True, sort=False)))
    if not entries:
        raise RibbedError(Problem(str(results.directory), "", "no run here has evaluated yet (metrics.csv holds no "
                                  "row)", "compare runs that have reached their first evaluation"))
    return entries


def compare(paths: Sequence[str | Path], metrics: Sequence[str] | None = None) -> Comparison:
    """Compare the runs and sweeps at ``paths`` (see the module docstring) on ``metrics``
    (default: the held-out score, the losses and the specialization summaries of the first
    entry)."""
    if len(paths) == 0:
        raise RibbedError(Problem("ribbed compare", "DIR", "nothing to compare", "give run or sweep folders"))
    entries = [entry for path in paths for entry in _entries(path)]
    seen: dict[str, int] = {}
    for entry in entries:  # the same folder name twice (runs/a and other/a): number them
        seen[entry.label] = seen.get(entry.label, 0) + 1
        if seen[entry.label] > 1:
            entry.label = f"{entry.label} ({seen[entry.label]})"
    available = sorted({c for e in entries for c in e.finals.columns
                        if pd.api.types.is_numeric_dtype(e.finals[c]) and c not in ("seed", "tick", "epoch")})
    if metrics:
        unknown = [m for m in metrics if m not in available]
        if unknown:
            raise RibbedError(Problem("ribbed compare", "--metric", f"no run compared has the metric "
                                      f"{', '.join(repr(m) for m in unknown)}",
                                      f"name a column of metrics.csv: {', '.join(available)}"))
        chosen = list(dict.fromkeys(metrics))
    else:
        chosen = headline_metrics(entries[0].finals)
    reference = entries[0]
    cells = {}
    for metric in chosen:
        base = reference.values(metric)
        base_mean = mean_ci(base).mean
        for entry in entries:
            values = entry.values(metric)
            interval = mean_ci(values)
            same = entry is reference
            cells[(metric, entry.label)] = Cell(interval, math.nan if same else interval.mean - base_mean,
                                                math.nan if same else welch_p(values, base))
    return Comparison(entries, chosen, cells)


def write_json(comparison: Comparison, path: str | Path) -> Path:
    """Write :meth:`Comparison.to_json` to ``path``."""
    target = Path(path)
    try:
        target.write_text(json.dumps(comparison.to_json(), indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise RibbedError(Problem(str(target), "--json", f"cannot write: {exc.strerror or exc}",
                                  "choose a file in a folder this process can write to")) from None
    return target
