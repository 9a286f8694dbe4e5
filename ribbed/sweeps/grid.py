"""A sweep's grid: the values of each swept field (``--set learning.lr=0.01,0.05``), the seeds
(``--seeds 0-9``), and the points they expand to, each with its own run directory name.

Points come in a fixed order, the grid's (the first field varies slowest, each field's values in
the order given) and then the seeds', so that the run directories, ``sweep.json`` and
``sweep.parquet`` list them the same way every time.  Every point's scenario is built and checked
here, before anything runs: a bad field or value is an error that names the ``--set``.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from ribbed.errors import Problem, RibbedError, ScenarioError
from ribbed.scenarios.loader import yaml_value
from ribbed.scenarios.overrides import apply_fields
from ribbed.scenarios.schema import Scenario
from ribbed.scenarios.validation import validate

__all__ = ["Point", "check_points", "expand", "grid_from", "parse_seeds", "parse_set", "point_scenario", "seeds_from"]

_SEEDS_FIX = "write a count (10: seeds 0 to 9), a range (0-9) or a list (0,3,5)"
#: Characters kept as they are in a run directory's name; any other becomes '_'.
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")
#: The longest part of a directory name that the values take (the index keeps names unique).
_NAME_LIMIT = 100


@dataclass(frozen=True)
class Point:
    """One run of a sweep: a grid point (``values``, by dotted field) with one seed."""

    index: int  # the grid point's place in the grid (the same for each of its seeds)
    values: dict[str, Any]
    seed: int
    name: str  # its run directory's name, unique in the sweep

    def label(self) -> str:
        """The options that make this point, as an error names them."""
        parts = [f"--set {field}={_text(value)}" for field, value in self.values.items()]
        return " ".join([*parts, f"(seed {self.seed})"]) if parts else f"seed {self.seed}"


def parse_set(text: str) -> tuple[str, list[Any]]:
    """``FIELD=V1,V2,...`` as the field and its values, each read as YAML (``0.01``, ``1e-3``,
    ``true``, ``tanh``)."""
    field, equals, values = text.partition("=")
    field = field.strip()
    if not equals or not field:
        raise RibbedError(Problem("ribbed sweep", f"--set {text}", "expected FIELD=VALUE,VALUE,...",
                                  "write the dotted field, '=', and its values separated by commas: "
                                  "--set learning.lr=0.01,0.05,0.2"))
    parsed = []
    for item in values.split(","):
        if not item.strip():
            raise RibbedError(Problem("ribbed sweep", f"--set {text}", "has an empty value",
                                      "separate the values by single commas, with none left out: "
                                      f"--set {field}=0.01,0.05"))
        try:
            value = yaml_value(item.strip())
        except ScenarioError:  # (not YAML, or refused by the scenario reader)
            value = None
        if isinstance(value, (list, dict)) or (value is None and item.strip() not in ("null", "~")):
            raise RibbedError(Problem("ribbed sweep", f"--set {text}", f"'{item.strip()}' is not a single value",
                                      "give numbers, true/false, or words, separated by commas"))
        parsed.append(value)
    return field, parsed


def grid_from(sets: Iterable[str] | Mapping[str, Any] | None) -> dict[str, list[Any]]:
    """The grid from ``--set`` options, or from a mapping of dotted fields to a value or a list
    of values (the Python API); the fields in the order given."""
    if sets is None:
        return {}
    if isinstance(sets, Mapping):  # as mesa.batch_run reads its parameters: a string is one value
        items = [(field, [_plain(v) for v in values] if isinstance(values, Iterable) and not isinstance(values, str)
                  else [_plain(values)]) for field, values in sets.items()]
        where = "grid"
    else:
        items = [parse_set(text) for text in sets]
        where = "--set"
    grid: dict[str, list[Any]] = {}
    for field, values in items:
        if field == "seed":
            raise RibbedError(Problem("ribbed sweep", f"{where} seed", "the seeds are swept by --seeds",
                                      "give them as --seeds 0-9 (or seeds= in Python), not as a field"))
        if field in grid:
            raise RibbedError(Problem("ribbed sweep", f"{where} {field}", "is given twice",
                                      f"give all its values once: --set {field}=A,B,C"))
        if not values:
            raise RibbedError(Problem("ribbed sweep", f"{where} {field}", "has no values", "give at least one"))
        if len(set(map(_text, values))) != len(values):
            raise RibbedError(Problem("ribbed sweep", f"{where} {field}", "repeats a value",
                                      "give each value once (a repeat would run the same point twice)"))
        grid[field] = values
    return grid


def parse_seeds(text: str) -> list[int]:
    """``10`` (a count: seeds 0 to 9), ``0-9`` (a range, both ends included) or ``0,3,5``; ranges
    and single seeds can be mixed in a list (``0-4,10``)."""
    text = text.strip()
    try:
        if text.isdigit():
            count = int(text)
            if count < 1:
                raise ValueError
            return list(range(count))
        seeds: list[int] = []
        for item in text.split(","):
            first, dash, last = item.strip().partition("-")
            low, high = int(first), int(last) if dash else int(first)
            if low < 0 or high < low:
                raise ValueError
            seeds.extend(range(low, high + 1))
    except ValueError:
        raise RibbedError(Problem("ribbed sweep", "--seeds", f"'{text}' is not a count, a range or a list of seeds",
                                  _SEEDS_FIX)) from None
    if len(set(seeds)) != len(seeds):
        raise RibbedError(Problem("ribbed sweep", "--seeds", f"'{text}' names a seed twice", "name each seed once"))
    return seeds


def seeds_from(seeds: int | str | Sequence[int] | None, scenario: Scenario) -> list[int]:
    """The seeds of a sweep: a count, a ``--seeds`` text, a list, or None (the scenario's seed)."""
    if seeds is None:
        return [scenario.seed]
    if isinstance(seeds, str):
        return parse_seeds(seeds)
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        return parse_seeds(str(seeds))
    values = list(seeds)
    if not values or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in values) \
            or len(set(values)) != len(values):
        raise RibbedError(Problem("ribbed sweep", "seeds", f"{values!r} is not a list of distinct seeds >= 0",
                                  _SEEDS_FIX))
    return values


def expand(grid: Mapping[str, Sequence[Any]], seeds: Sequence[int]) -> list[Point]:
    """Every point of the grid with every seed, in the sweep's order, each named."""
    fields = list(grid)
    short = _short_names(fields)
    combos = list(itertools.product(*(grid[field] for field in fields)))
    width = len(str(len(combos) - 1))
    points = []
    for index, combo in enumerate(combos):
        values = dict(zip(fields, combo))
        described = "-".join(f"{short[f]}={_UNSAFE.sub('_', _text(v))}" for f, v in values.items())[:_NAME_LIMIT]
        stem = f"{index:0{width}d}-{described}" if fields else ""
        for seed in seeds:
            points.append(Point(index, values, seed, f"{stem}-s{seed}" if stem else f"s{seed}"))
    return points


def point_scenario(base: Scenario, point: Point) -> Scenario:
    """The scenario of one point: the base scenario with the point's fields and seed."""
    return apply_fields(base, {**point.values, "seed": point.seed}, label=point.label())


def check_points(base: Scenario, points: Sequence[Point]) -> list[Scenario]:
    """Every point's scenario, each checked by every rule a run checks first; the first point
    that fails raises, naming its ``--set`` options, the field and the fix."""
    scenarios = []
    for point in points:
        scenario = point_scenario(base, point)
        try:
            validate(scenario)
        except ScenarioError as exc:
            source = f"{base.source} with {point.label()}"
            raise ScenarioError([Problem(source, p.path, p.message, p.fix) for p in exc.problems]) from None
        scenarios.append(scenario)
    return scenarios


def _short_names(fields: list[str]) -> dict[str, str]:
    """Each field by its last part (``lr``), or whole where two fields share their last part."""
    last = [field.rsplit(".", 1)[-1] for field in fields]
    return {field: (tail if last.count(tail) == 1 else field) for field, tail in zip(fields, last)}


def _plain(value: Any) -> Any:
    """A numpy number as the Python number it holds (sweep.json is JSON)."""
    return value.item() if hasattr(value, "item") and hasattr(value, "dtype") else value


def _text(value: Any) -> str:
    """A value as YAML writes it (true, null, 0.01), for names and labels."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return repr(value) if isinstance(value, float) else str(value)
