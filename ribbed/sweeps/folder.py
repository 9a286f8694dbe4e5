"""A sweep's folder: ``sweep.json`` (what the sweep is), one run directory per point, and a lock.

``sweep.json`` is written before any point runs, whole or not at all (a temporary file and a
rename), and names the scenario (resolved, every default written out), the grid, the seeds and
every point: a sweep can be continued from its folder alone (``ribbed sweep --resume DIR``), and
running the same sweep again into the same folder continues it.  A folder that holds another
sweep, or other files, is refused rather than mixed with.

The lock (``.sweep.lock``, ``flock``) keeps two sweeps out of one folder.  The sweep and each of
its worker processes hold it shared; a sweep that starts takes it exclusively first, so it waits
for the workers of a sweep that was killed (they stop between two ticks when their parent dies)
before it touches a run directory.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from ribbed import __version__
from ribbed.errors import Problem, RibbedError
from ribbed.scenarios.loader import load_scenario, scenario_to_yaml
from ribbed.scenarios.schema import Scenario
from ribbed.sweeps.grid import Point

__all__ = ["LOCK_NAME", "MANIFEST_NAME", "SweepFolder", "choose_folder", "point_status", "read_manifest"]

MANIFEST_NAME = "sweep.json"
LOCK_NAME = ".sweep.lock"
FORMAT = "ribbed-sweep"
VERSION = 1
#: How long a sweep waits for the workers of an earlier sweep of its folder to stop.
LOCK_WAIT_S = 120.0


def choose_folder(scenario: Scenario, out: str | Path | None) -> Path:
    """``out``, or a new ``<output.dir>/<name>-sweep-<date-time>``."""
    if out is not None:
        return Path(out)
    from ribbed.runner import dated_folder

    return dated_folder(Path(scenario.output.dir), f"{scenario.name}-sweep")


def manifest(scenario: Scenario, grid: dict[str, list[Any]], seeds: list[int], points: list[Point]) -> dict:
    """What sweep.json holds (``created`` aside, every field is what makes the sweep)."""
    return {
        "format": FORMAT, "version": VERSION, "ribbed": __version__,
        "created": datetime.now().isoformat(timespec="seconds"),
        "scenario": {"source": scenario.source, "resolved": yaml.safe_load(scenario_to_yaml(scenario))},
        "grid": grid, "seeds": seeds,
        "points": [{"name": p.name, "index": p.index, "seed": p.seed, "values": p.values} for p in points],
    }


def read_manifest(folder: Path) -> dict:
    """The sweep.json of ``folder``, checked to be one."""
    path = folder / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RibbedError(Problem(str(folder), "", f"there is no {MANIFEST_NAME} in this folder",
                                  "give the folder of a sweep (the one ribbed sweep printed)")) from None
    except (OSError, ValueError) as exc:
        raise RibbedError(Problem(str(path), "", f"cannot read it: {exc}",
                                  "give the folder of a sweep that ribbed sweep wrote")) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise RibbedError(Problem(str(path), "format", "is not a ribbed sweep manifest",
                                  "give the folder of a sweep that ribbed sweep wrote"))
    if data.get("version") != VERSION:
        raise RibbedError(Problem(str(path), "version", f"version {data.get('version')} is not one this ribbed "
                                  f"reads (it reads {VERSION})", "continue it with the ribbed that started it"))
    return data


def manifest_scenario(data: dict, folder: Path) -> Scenario:
    """The base scenario a manifest names (resolved: it stands alone)."""
    scenario = load_scenario(data["scenario"]["resolved"])
    return scenario.locate(f"{folder / MANIFEST_NAME} ({data['scenario']['source']})", None)


def point_status(directory: Path) -> str | None:
    """A point's status from its summary.json (completed, failed, interrupted), or None."""
    try:
        return json.loads((directory / "summary.json").read_text(encoding="utf-8")).get("status")
    except (OSError, ValueError, AttributeError):
        return None


class SweepFolder:
    """The sweep's folder, opened for this sweep: created with its manifest, or checked to hold
    the same sweep; locked while the sweep runs (see the module docstring)."""

    def __init__(self, path: Path, wanted: dict):
        self.path = path
        self._lock: int | None = None
        existing = path / MANIFEST_NAME
        if path.exists() and not path.is_dir():
            raise RibbedError(Problem(str(path), "", "is a file, not a folder", "give a folder for --out"))
        if path.is_dir() and not existing.exists() and any(p.name != LOCK_NAME for p in path.iterdir()):
            raise RibbedError(Problem(str(path), "", f"holds files but no {MANIFEST_NAME}: it is not a sweep's folder",
                                      "give a new folder for --out, so that nothing in it is overwritten"))
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RibbedError(Problem(str(path), "", f"cannot create the sweep folder: {exc.strerror or exc}",
                                      "choose a folder this process can write to (--out)")) from None
        self._acquire()
        if existing.exists():
            _check_same(read_manifest(path), wanted, existing)
        else:
            _write_atomically(existing, json.dumps(wanted, indent=2) + "\n")

    def _acquire(self) -> None:
        import fcntl

        self._lock = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(self._lock)
                    self._lock = None
                    raise RibbedError(Problem(str(self.path), "", "another sweep (or the workers of one that "
                                              "was stopped) still uses this folder",
                                              "wait for it to finish, or stop it, then run the sweep again")) from None
                time.sleep(0.2)
        fcntl.flock(self._lock, fcntl.LOCK_SH)  # now shared with this sweep's workers

    def close(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


def hold_shared(folder: Path) -> int:
    """In a worker process: hold the folder's lock shared while the worker lives (see above)."""
    import fcntl

    descriptor = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(descriptor, fcntl.LOCK_SH)
    return descriptor


def _check_same(found: dict, wanted: dict, where: Path) -> None:
    for key, what in (("scenario", "scenario"), ("grid", "--set options"), ("seeds", "--seeds")):
        a = found[key]["resolved"] if key == "scenario" else found[key]
        b = json.loads(json.dumps(wanted[key]["resolved"] if key == "scenario" else wanted[key]))
        if a != b:
            raise RibbedError(Problem(str(where), key, f"this folder holds another sweep: its {what} differ",
                                      "give a new folder for --out, or continue this sweep with "
                                      f"ribbed sweep --resume {where.parent}"))


def _write_atomically(target: Path, text: str) -> None:
    partial = target.with_name(f".{target.name}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, target)
    except OSError as exc:
        raise RibbedError(Problem(str(target), "", f"cannot write: {exc.strerror or exc}",
                                  "free space on its disk (or make the folder writable), then run the sweep again"))\
            from None
    finally:
        partial.unlink(missing_ok=True)
