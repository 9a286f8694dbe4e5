"""Do a run's defaults fit the machine?  ``ribbed run digits`` timed as whole processes, with
its defaults against hand-picked settings, on an idle machine and beside a busy process.

Configurations (each a whole ``ribbed run`` process, from start to exit, so import, build,
the log's writer and the evaluations are all counted):

  defaults            ``ribbed run digits``: ribbed.resources picks torch's threads and the writer
  threads 1           backend.threads: 1
  threads 1, log off  backend.threads: 1, log.level: off (no writer at all)
  threads 2           backend.threads: 2

Each runs ``--repeats`` times (default 5) in rounds, a different configuration first in each
round; the table shows medians and each median over the fastest configuration's.  Then the same
again while another CPU-bound process (``python -c "while True: pass"``) runs, stopped after.
The figure the defaults are held to: within 1.3x of the fastest configuration, idle and busy.
Timings on a shared machine are noisy: compare the ratios of one invocation, not runs of two.

    python benchmarks/defaults.py            # the whole digits run (2000 ticks), 5 repeats (several minutes on 2 cores)
    python benchmarks/defaults.py --quick    # 100 ticks, 1 repeat: checks that the script works
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: (label, changes to the digits scenario); the first is the scenario as it is.
CONFIGS = (
    ("defaults", {}),
    ("threads 1", {"backend": {"threads": 1}}),
    ("threads 1, log off", {"backend": {"threads": 1}, "log": {"level": "off"}}),
    ("threads 2", {"backend": {"threads": 2}}),
)
#: The bar: the defaults' median within this factor of the fastest configuration's.
BAR = 1.3


def ribbed_command() -> list[str]:
    """The ``ribbed`` command of this Python (the console script beside it, as a user runs it)."""
    script = shutil.which("ribbed", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-c", "from ribbed.cli import main; main()"]


def write_scenarios(folder: Path) -> dict[str, str]:
    """Each configuration's scenario argument: ``digits`` for the defaults, else a YAML file of the
    digits scenario with its changes (every other setting as the built-in)."""
    from ribbed.scenarios.loader import load_scenario, scenario_to_yaml

    arguments = {}
    for label, changes in CONFIGS:
        if not changes:
            arguments[label] = "digits"
            continue
        data = load_scenario("digits").model_dump(mode="json")
        for section, values in changes.items():
            data[section] = {**(data.get(section) or {}), **values}
        path = folder / (label.replace(",", "").replace(" ", "-") + ".yaml")
        path.write_text(scenario_to_yaml(load_scenario(data)), encoding="utf-8")
        arguments[label] = str(path)
    return arguments


def time_run(argument: str, ticks: int | None, out: Path) -> tuple[float, dict]:
    """Seconds of one ``ribbed run`` process, and the run's summary.json."""
    command = ribbed_command() + ["run", argument, "--out", str(out)] + (["--ticks", str(ticks)] if ticks else [])
    began = time.perf_counter()
    completed = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - began
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {completed.stderr.strip()[-2000:]}")
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    shutil.rmtree(out, ignore_errors=True)
    return seconds, summary


def measure(arguments: dict[str, str], repeats: int, ticks: int | None, tmp: Path, tag: str) -> dict[str, dict]:
    """Every configuration ``repeats`` times, in rounds that rotate which goes first."""
    labels = [label for label, _ in CONFIGS]
    times: dict[str, list[float]] = {label: [] for label in labels}
    chosen: dict[str, dict] = {}
    for round_ in range(repeats):
        order = labels[round_ % len(labels):] + labels[:round_ % len(labels)]
        for label in order:
            seconds, summary = time_run(arguments[label], ticks, tmp / f"{tag}-{round_}-{labels.index(label)}")
            times[label].append(seconds)
            chosen[label] = summary.get("resources", {})
            print(f"  {tag:5} round {round_ + 1}/{repeats}  {label:20} {seconds:7.2f} s", flush=True)
    return {label: {"seconds": times[label], "median_s": statistics.median(times[label]), "chosen": chosen[label]}
            for label in labels}


def table(title: str, rows: dict[str, dict]) -> float:
    """Print one table; the defaults' median over the fastest configuration's."""
    fastest = min(row["median_s"] for row in rows.values())
    print(f"\n{title}")
    print(f"{'configuration':20} {'median s':>9} {'x fastest':>9}   chosen (cores, torch threads, interop, writer)")
    for label, row in rows.items():
        row["x_fastest"] = row["median_s"] / fastest
        c = row["chosen"]
        print(f"{label:20} {row['median_s']:9.2f} {row['x_fastest']:9.2f}   {c.get('cores')}, {c.get('torch_threads')}, "
              f"{c.get('torch_interop_threads')}, {c.get('log_writer')}")
    ratio = rows["defaults"]["x_fastest"]
    print(f"defaults within {BAR}x of the fastest: {'PASS' if ratio <= BAR else 'FAIL'} ({ratio:.2f}x)")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100 ticks, 1 repeat (checks that the script works)")
    parser.add_argument("--repeats", type=int, default=None, help="runs of each configuration (default 5; quick 1)")
    parser.add_argument("--ticks", type=int, default=None, help="run.ticks (default: the scenario's; quick 100)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/defaults.json"))
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 5)
    ticks = args.ticks or (100 if args.quick else None)

    from ribbed.resources import available_cores, cgroup_cpu_limit

    load = os.getloadavg()
    print(f"ribbed defaults benchmark ({'quick' if args.quick else 'full'}): `ribbed run digits`"
          f"{f' --ticks {ticks}' if ticks else ''}, median of {repeats}; {os.cpu_count()} cores on the machine, "
          f"{available_cores()} available to this process (cgroup quota: {cgroup_cpu_limit()}); "
          f"load average {load[0]:.2f} {load[1]:.2f}")
    results: dict = {"mode": "quick" if args.quick else "full", "repeats": repeats, "ticks": ticks,
                     "machine": platform.platform(), "cpu_count": os.cpu_count(), "available_cores": available_cores(),
                     "cgroup_cpu_limit": cgroup_cpu_limit(), "loadavg_start": load, "bar": BAR}
    tmp = Path(tempfile.mkdtemp(prefix="ribbed-defaults-"))
    try:
        arguments = write_scenarios(tmp)
        results["idle"] = measure(arguments, repeats, ticks, tmp, "idle")
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            results["busy"] = measure(arguments, repeats, ticks, tmp, "busy")
        finally:
            hog.kill()
            hog.wait()
        results["defaults_x_fastest"] = {
            "idle": table("idle machine", results["idle"]),
            "busy": table('beside a busy process (python -c "while True: pass")', results["busy"]),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nResults: {args.json}")


if __name__ == "__main__":
    main()
