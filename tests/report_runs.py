"""Real, small runs and a sweep for the tests of reports, figures, comparisons and log.weights.

Each is built once per test process (the first test that asks for it), in a temporary folder
removed when the process ends: built-in scenarios shortened to a few evaluations, so that every
figure is drawn from files a real run wrote.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import cache
from pathlib import Path

import ribbed
from ribbed.scenarios.loader import load_scenario

_ROOT = Path(tempfile.mkdtemp(prefix="ribbed-report-tests-"))
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)


def shortened(name: str, ticks: int = 40, eval_every: int = 20, **changes) -> dict:
    """A built-in scenario as a dict, run for ``ticks`` ticks with an evaluation every ``eval_every``."""
    data = load_scenario(name).model_dump(mode="json")
    data["run"].update(ticks=ticks, eval_every=eval_every)
    if data.get("coupling") and data["coupling"].get("rehash_every"):
        data["coupling"]["rehash_every"] = 10  # clusters re-form between the evaluations
    for dotted, value in changes.items():
        target = data
        *path, last = dotted.split(".")
        for key in path:
            target = target[key]
        target[last] = value
    return data


@cache
def run_dir(name: str, ticks: int = 40, eval_every: int = 20) -> Path:
    """The run directory of the built-in ``name``, shortened."""
    out = _ROOT / f"{name}-{ticks}-{eval_every}"
    ribbed.run(shortened(name, ticks, eval_every), out=out)
    return out


@cache
def interrupted_dir() -> Path:
    """A digits run stopped (as Ctrl-C stops it) after 30 of its 60 ticks."""
    out = _ROOT / "interrupted"

    def stop(model) -> None:
        if model.tick == 30:
            raise KeyboardInterrupt

    try:
        ribbed.run(shortened("digits", 60, 20), out=out, on_tick=stop)
    except KeyboardInterrupt:
        pass
    return out


@cache
def sweep_dir() -> Path:
    """A sweep of digits over two learning rates with 3 seeds each (6 runs of 40 ticks)."""
    out = _ROOT / "sweep"
    ribbed.sweep(shortened("digits", 40, 20), seeds=3, grid={"learning.lr": [0.02, 0.2]}, out=out, workers=1)
    return out


def copy_of(folder: Path, name: str) -> Path:
    """A copy of a run or sweep folder that a test may change."""
    target = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=_ROOT)) / folder.name
    shutil.copytree(folder, target, ignore=shutil.ignore_patterns("report"))
    return target
