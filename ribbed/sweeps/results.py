"""``sweep.parquet``: every metrics row of every point and seed, in one table.

Each row is a row of a point's ``metrics.csv``, preceded by one column per swept field (named by
its dotted path, ``learning.lr``), ``seed``, ``point`` (the run directory's name), ``status``
(completed, failed, interrupted, from the point's summary.json) and ``error``.  Rows come in
the grid's order, then by seed, then by tick, so the same sweep gives the same table however it
was run: in one go, killed and continued, locally or on Ray.  Nothing that depends on timing (a
run's seconds) is in it.  A point that failed before it evaluated has one row, with its error.
The file is written whole (a temporary file, then a rename).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ribbed.errors import Problem, RibbedError
from ribbed.sweeps.grid import Point

__all__ = ["PARQUET_NAME", "point_columns", "sweep_table", "write_parquet"]

PARQUET_NAME = "sweep.parquet"
#: The columns that say which point a row belongs to, after the swept fields.
POINT_COLUMNS = ("seed", "point", "status", "error")


def sweep_table(folder: Path, grid: dict[str, list[Any]], points: Sequence[Point]) -> pd.DataFrame:
    """The table of a sweep's points as they are in ``folder`` (see the module docstring)."""
    frames = []
    for point in points:
        directory = folder / point.name
        summary = _summary(directory)
        metrics = directory / "metrics.csv"
        rows = pd.read_csv(metrics) if metrics.exists() and metrics.stat().st_size else pd.DataFrame()
        if rows.empty:
            rows = pd.DataFrame(index=[0])
        described = {field: point.values[field] for field in grid}
        described.update(seed=point.seed, point=point.name, status=summary.get("status", "not run"),
                         error=summary.get("error"))
        frames.append(pd.concat([pd.DataFrame([described] * len(rows)), rows.reset_index(drop=True)], axis=1))
    table = pd.concat(frames, ignore_index=True, sort=False) if frames else pd.DataFrame()
    for field in grid:
        table[field] = _one_type(table[field], grid[field])
    table["error"] = table["error"].astype("string") if len(table) else table.get("error")
    return table


def point_columns(grid: dict[str, list[Any]]) -> list[str]:
    """The columns that identify a row's point, in the table's order."""
    return [*grid, *POINT_COLUMNS]


def write_parquet(table: pd.DataFrame, path: Path) -> Path:
    """Write ``table`` to ``path`` whole or not at all."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    partial = path.with_name(f".{path.name}.partial")
    try:
        pq.write_table(pa.Table.from_pandas(table, preserve_index=False), partial)
        os.replace(partial, path)
    except OSError as exc:
        raise RibbedError(Problem(str(path), "", f"cannot write: {exc.strerror or exc}",
                                  "free space on its disk, then run the sweep again: its points are done and "
                                  "only the table is written")) from None
    finally:
        partial.unlink(missing_ok=True)
    return path


def _summary(directory: Path) -> dict:
    try:
        data = json.loads((directory / "summary.json").read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _one_type(column: pd.Series, values: list[Any]) -> pd.Series:
    """A swept field's column with one type parquet can hold: its values' own (ints and floats
    together are floats), or text when they mix kinds (``0.1`` and ``auto``)."""
    kinds = {type(v) for v in values if v is not None}
    if kinds <= {int, float} and kinds:
        return column.astype("float64" if float in kinds or None in values else "int64")
    if kinds == {bool} or kinds == {str} or not kinds:
        return column
    return column.map(lambda v: None if v is None else (str(v).lower() if isinstance(v, bool) else str(v)))
