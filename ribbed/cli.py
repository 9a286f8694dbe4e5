"""The ``ribbed`` command line: run, sweep, validate, schema, scenarios, dashboard, the message
log's commands (log info/show/export, replay), and report and compare.

Bad input (a missing file, invalid YAML, a wrong field...) is reported as one clear message
naming the file, the line, the field and the fix, with exit code 2 and no traceback.
"""

from __future__ import annotations

import json
import math
import sys
import warnings
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import typer
from typer.core import TyperCommand, TyperGroup
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ribbed import __version__
from ribbed.errors import Problem, RibbedError, RibbedWarning
from ribbed.scenarios.backend import BACKEND_KINDS
from ribbed.scenarios.loader import builtin_scenarios, load_scenario
from ribbed.scenarios.schema import Scenario

if TYPE_CHECKING:
    from ribbed.model import NetworkModel  # a type hint only: importing the model loads torch


class _FlagsAsFlags:
    """Help that shows a flag as a flag. Typer's rich help prints each option's type after it,
    flags included ('--verify <bool>', '--help <bool>'), which reads as if the flag took a value
    ('--verify true', which is refused: a flag takes none). A flag's type is shown as nothing
    instead, as typer's plain help already does."""

    def get_params(self, ctx: typer.Context) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class _Group(_FlagsAsFlags, TyperGroup):
    pass


class _Command(_FlagsAsFlags, TyperCommand):
    pass


class _Typer(typer.Typer):
    """A Typer whose groups and commands show flags as flags (see :class:`_FlagsAsFlags`)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cls=_Group, **kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        return super().command(*args, cls=_Command, **kwargs)


app = _Typer(
    name="ribbed",
    help="Multi-agent simulation of neurons that learn by message passing.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


#: The executors --backend accepts: those the schema names.
BackendName = Enum("BackendName", {kind: kind for kind in BACKEND_KINDS}, type=str)


def _report(exc: RibbedError) -> None:
    """Print an error; its text is escaped, because file paths ('exp[lr]/a.yaml') and the keys
    a user wrote ('[/x]') are not rich markup: unescaped they vanish or raise a MarkupError."""
    err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, markup=True, soft_wrap=True)


def _warn(message: object) -> None:
    err.print(f"[bold yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)


def _fail(exc: RibbedError) -> typer.Exit:
    _report(exc)
    return typer.Exit(code=2)


def _version(value: bool) -> None:
    if value:
        out.print(f"ribbed {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Multi-agent simulation of neurons that learn by message passing."""


_MAX_MEMORY_HELP = ("Refuse a scenario whose estimated memory is above this (bytes, or 512M, 8G, 1.5T; powers of "
                    "1024) instead of the memory this machine has available.")


def _memory_limit(text: Optional[str], command: str):
    """The bound ``--max-memory`` sets (a :class:`~ribbed.resources.MemoryLimit`), or the memory
    available when it is not given; a size that cannot be read is an error naming the option."""
    from ribbed.scenarios.validation import memory_limit

    try:
        return memory_limit(text)
    except RibbedError as exc:
        problem = exc.problems[0]
        raise _fail(RibbedError(Problem(f"ribbed {command}", "--max-memory", problem.message, problem.fix))) from None


def _format(value: float, digits: int = 4) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _show_warnings(caught: list) -> None:
    while caught:
        _warn(caught.pop(0).message)


@app.command()
def run(
    scenario: Optional[str] = typer.Argument(None, help="A scenario YAML file, or the name of a built-in scenario."),
    backend: Optional[BackendName] = typer.Option(None, help="Executor to run on (overrides backend.kind)."),
    device: Optional[str] = typer.Option(None, help="batched executor: cpu, cuda, cuda:N or auto "
                                         "(overrides backend.device)."),
    shards: Optional[int] = typer.Option(None, min=1, help="ray executor: number of shards (overrides "
                                         "backend.shards; the result does not depend on it)."),
    ticks: Optional[int] = typer.Option(None, min=1, help="Number of ticks (overrides run.ticks)."),
    seed: Optional[int] = typer.Option(None, min=0, help="Root seed (overrides seed)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run directory (must not exist or be empty)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the interrupted run in this run "
                                          "directory from its log's last snapshot (no SCENARIO or options)."),
    max_memory: Optional[str] = typer.Option(None, "--max-memory", help=_MAX_MEMORY_HELP),
) -> None:
    """Run a scenario and write its run directory (resolved scenario, metrics, message log, summary)."""
    if (scenario is None) == (resume is None):
        raise _fail(RibbedError(Problem("ribbed run", "", "give either a SCENARIO or --resume RUN_DIR",
                                        "ribbed run digits, or ribbed run --resume runs/digits-s0-20260101-120000")))
    if resume is not None and any(v is not None for v in (backend, device, shards, ticks, seed, out_dir)):
        raise _fail(RibbedError(Problem("ribbed run", "--resume", "a resumed run continues with the settings it "
                                        "was started with", "leave out --backend, --device, --shards, --ticks, --seed and --out")))
    limit = _memory_limit(max_memory, "run")
    try:  # the rules and the size, before the runner loads torch (seconds): a refusal comes back at once
        if resume is not None:
            from ribbed.log.header_scenario import check_header_size

            check_header_size(resume / "run.log", limit, str(resume / "scenario.yaml"))
        else:
            from ribbed.scenarios.overrides import apply_overrides
            from ribbed.scenarios.validation import validate as check_rules

            check_rules(apply_overrides(load_scenario(scenario), ticks=ticks, seed=seed,
                                        backend=backend.value if backend else None, device=device, shards=shards),
                        max_memory=limit)
    except RibbedError as exc:
        raise _fail(exc) from None
    from ribbed.runner import resume as resume_run
    from ribbed.runner import run as run_scenario

    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("ticks"),
        TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[score]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=err, disable=not err.is_terminal,
    )
    state: dict = {}

    def on_tick(model: NetworkModel) -> None:
        if "task" not in state:
            state["task"] = progress.add_task(model.scenario.name, total=model.scenario.run.ticks, loss="-", score="")
        metrics = model.last_metrics
        score = (f"test acc {_format(metrics.get('test_accuracy'), 3)}" if "test_accuracy" in metrics
                 else f"test r2 {_format(metrics.get('test_r2'), 3)}")
        progress.update(state["task"], completed=model.tick, loss=_format(model.last_result.loss), score=score)

    try:
        with progress, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RibbedWarning)
            ticked = lambda model: _show_warnings(caught) or on_tick(model)  # noqa: E731
            if resume is not None:
                result = resume_run(resume, on_tick=ticked, max_memory=limit)
            else:
                result = run_scenario(scenario, out=out_dir, ticks=ticks, seed=seed,
                                      backend=backend.value if backend else None, device=device, shards=shards,
                                      on_tick=ticked, max_memory=limit)
    except RibbedError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt as exc:  # (ribbed.signals.RunInterrupted: SIGINT or SIGTERM, the log closed)
        signum = getattr(exc, "signal", 2)
        err.print("interrupted: everything written so far is kept in the run directory; "
                  "continue it with ribbed run --resume RUN_DIR", highlight=False, markup=False)
        raise typer.Exit(code=128 + signum) from None
    final = result.model.last_metrics
    name = result.model.scenario.name
    if "test_accuracy" in final:
        headline = f"held-out accuracy {final['test_accuracy']:.4f}"
    else:
        headline = f"held-out R^2 {final['test_r2']:.4f}"
        if "test_persistence_r2" in final:  # a time series: against the persistence baseline
            headline += f" (persistence baseline {final['test_persistence_r2']:.4f})"
    out.print(f"{name}: {headline} (test loss {final['test_loss']:.4f}) after {result.model.tick} ticks "
              f"in {result.seconds:.1f} s on the {result.model.executor.name} executor "
              f"({result.model.executor.device_name}, {result.model.executor.dtype_name})",
              highlight=False, markup=False)
    described = result.model.executor.describe()
    if "partitioning" in described:
        cut = described["partitioning"]
        out.print(f"{cut['shards']} shards on {len(set(described['shard_nodes']))} Ray node(s), "
                  f"{cut['partitions']} partitions; {cut['cut_fraction']:.1%} of synapses cross between shards",
                  highlight=False, markup=False)
    out.print(f"run directory: {result.directory}", highlight=False, markup=False)


@app.command()
def sweep(
    scenario: Optional[str] = typer.Argument(None, help="A scenario YAML file, or the name of a built-in scenario."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Seeds: a count (10: 0 to 9), a range (0-9) or a "
                                        "list (0,3,5); default: the scenario's seed."),
    sets: Optional[list[str]] = typer.Option(None, "--set", help="FIELD=V1,V2,...: a dotted scenario field and its "
                                             "values (learning.lr=0.01,0.05); repeat for a grid."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="The sweep's folder (default: <output.dir>/"
                                           "<name>-sweep-<date-time>); the same sweep found there is continued."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Local worker processes (default: the "
                                          "cores this process may use); with --address, the most Ray tasks at a time."),
    address: Optional[str] = typer.Option(None, "--address", help="Run the points as Ray tasks on this cluster "
                                          "(host:port, or auto)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the sweep in this folder (no SCENARIO, "
                                          "--seeds, --set or --out)."),
) -> None:
    """Run a scenario over a grid of field values and seeds, in parallel, into one folder.

    Each point and seed is a run directory; sweep.parquet holds every metrics row of them all."""
    from ribbed.sweeps import SweepInterrupted, resume_sweep
    from ribbed.sweeps import sweep as run_sweep

    if (scenario is None) == (resume is None):
        raise _fail(RibbedError(Problem("ribbed sweep", "", "give either a SCENARIO or --resume SWEEP_DIR",
                                        "ribbed sweep xor --seeds 0-4 --set learning.lr=0.05,0.2, or "
                                        "ribbed sweep --resume runs/xor-sweep-20260101-120000")))
    if resume is not None and (seeds is not None or sets or out_dir is not None):
        raise _fail(RibbedError(Problem("ribbed sweep", "--resume", "a sweep continues with the grid and seeds it "
                                        "was started with (its sweep.json)", "leave out --seeds, --set and --out")))
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("points"),
                        TextColumn("{task.fields[failed]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                        console=err, disable=not err.is_terminal)
    state: dict = {"failed": 0}

    def on_point(done: int, total: int, outcome) -> None:
        if "task" not in state:
            state["task"] = progress.add_task("sweep", total=total, completed=done, failed="")
            return
        if outcome is not None and outcome.status == "failed":
            state["failed"] += 1
        progress.update(state["task"], completed=done, failed=f"{state['failed']} failed" if state["failed"] else "")

    try:
        with progress:
            if resume is not None:
                result = resume_sweep(resume, workers=workers, address=address, progress=on_point)
            else:
                result = run_sweep(scenario, seeds=seeds, grid=sets or None, out=out_dir, workers=workers,
                                   address=address, progress=on_point)
    except RibbedError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt as exc:  # SweepInterrupted once the runs closed their files; or before any ran
        if isinstance(exc, SweepInterrupted):
            err.print(f"interrupted: the finished points are kept in {exc.directory}; continue the sweep with "
                      f"ribbed sweep --resume {exc.directory}", highlight=False, markup=False)
        else:
            err.print("interrupted before any point ran", highlight=False, markup=False)
        raise typer.Exit(code=128 + getattr(exc, "signal", 2)) from None
    total, failed = len(result.outcomes), result.failed
    out.print(f"{total - len(failed)} of {total} points completed; sweep.parquet: {len(result.frame)} rows",
              highlight=False, markup=False)
    out.print(f"sweep folder: {result.directory}", highlight=False, markup=False)
    if failed:
        for outcome in failed:
            first = (outcome.error or outcome.status).splitlines()[0]
            err.print(f"[bold red]failed:[/] {escape(outcome.name)}: {escape(first)}", highlight=False)
        err.print(f"{len(failed)} of {total} points failed (their run directories and sweep.parquet say why)",
                  highlight=False, markup=False)
        raise typer.Exit(code=1)


@app.command()
def validate(
    files: list[str] = typer.Argument(..., help="Scenario files (or built-in names) to check."),
    max_memory: Optional[str] = typer.Option(None, "--max-memory", help=_MAX_MEMORY_HELP),
) -> None:
    """Check scenario files: schema, cross-references, connectivity, task data, and the run's estimated size."""
    from ribbed.log.keys import scenario_key
    from ribbed.scenarios.size import estimate_size, format_bytes
    from ribbed.scenarios.validation import validate as check_rules

    limit = _memory_limit(max_memory, "validate")
    failed = False
    for name in files:
        try:
            scenario = load_scenario(name)
            # Every rule, the size estimate against the bound included, before anything is built:
            # a scenario too big for this machine is refused from its formula, not by building it.
            check_rules(scenario, max_memory=limit)  # a file cannot supply scikit-learn estimators: none are given
            estimate = estimate_size(scenario)
            from ribbed.environment.network import build_network
            from ribbed.environment.tasks import load_task

            network = build_network(scenario)
            load_task(scenario)
            scenario_key(scenario)  # a log.key_file that cannot be used
        except RibbedError as exc:
            _report(exc)
            failed = True
            continue
        except MemoryError:
            _report(RibbedError(Problem(name, "", "ran out of memory building this network",
                                        "use smaller populations or sparser connectivity")))
            failed = True
            continue
        for message in network.warnings:
            _warn(f"{scenario.source}: {message}")
        out.print(f"ok: {scenario.source}: '{scenario.name}', {len(network.populations)} populations, "
                  f"{network.n_neurons} neurons, {network.n_synapses} synapses, task {scenario.task.kind}",
                  highlight=False, markup=False)
        bound = f"; the limit is {format_bytes(limit.bytes)} {limit.source}" if limit is not None else ""
        out.print(f"  estimate: {estimate.describe()}{bound}", highlight=False, markup=False)
    if failed:
        raise typer.Exit(code=2)


@app.command()
def schema(indent: int = typer.Option(2, min=0, help="JSON indentation.")) -> None:
    """Print the scenario JSON Schema (point your editor's YAML support at it)."""
    document = {"$schema": "https://json-schema.org/draft/2020-12/schema", **Scenario.model_json_schema()}
    sys.stdout.write(json.dumps(document, indent=indent or None) + "\n")


@app.command()
def scenarios() -> None:
    """List the built-in scenarios."""
    listing = builtin_scenarios()
    width = max(map(len, listing))
    for name, description in listing.items():
        out.print(f"{name:<{width}}  {description}", highlight=False, markup=False)


@app.command()
def dashboard(
    scenario: str = typer.Argument(..., help="A scenario YAML file, or the name of a built-in scenario."),
    port: int = typer.Option(8765, min=1, max=65535, help="Port to serve the page on."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (this machine only by default)."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Do not open a browser at the page."),
    eval_every: int = typer.Option(1, "--eval-every", min=1, help="Evaluate every N ticks (the page's "
                                   "'evaluate every' slider starts there)."),
) -> None:
    """Serve a live dashboard of a scenario (Mesa's SolaraViz): play, step, reset, sliders, live plots."""
    from ribbed.dashboard_server import check_eval_every, check_port, serve
    from ribbed.scenarios.validation import validate as check_rules

    try:
        loaded = load_scenario(scenario)
        check_rules(loaded)  # every rule and the size estimate, before the server starts
        check_eval_every(loaded, eval_every)
        check_port(host, port)
    except RibbedError as exc:
        raise _fail(exc) from None

    def on_start(url: str) -> None:
        out.print(f"ribbed dashboard: '{loaded.name}' at {url}  (Ctrl-C stops it)", highlight=False, markup=False)

    try:
        status = serve(scenario, host=host, port=port, open_browser=not no_browser, eval_every=eval_every,
                       on_start=on_start)
    except RibbedError as exc:
        raise _fail(exc) from None
    if status:
        raise typer.Exit(code=status)
    out.print("ribbed dashboard: stopped", highlight=False, markup=False)


# --------------------------------------------------------------------------- the message log

log_app = _Typer(help="Read a run's message log: info, show, export (docs/log-format.md).",
                      no_args_is_help=True)
app.add_typer(log_app, name="log")


def _ticks(text: Optional[str]):
    """'100:120' (120 excluded), '100:', ':120' or '100'."""
    if text is None:
        return None
    try:
        if ":" not in text:
            return int(text)
        start, stop = text.split(":", 1)
        return (int(start) if start else None, int(stop) if stop else None)
    except ValueError:
        raise _fail(RibbedError(Problem("ribbed log", "--ticks", f"'{text}' is not a tick or a range",
                                        "write a tick (120) or a range START:STOP, STOP excluded (100:120)"))) from None


_KEY_FILE = typer.Option(None, "--key-file", help="The key file of a keyed log (its scenario's log.key_file): "
                         "its digest chain is then authenticated (docs/log-format.md, 'Keyed chain').")


def _open_log(path: Path, key_file: Optional[Path] = None):
    from ribbed.log.keys import read_key_file
    from ribbed.log.reader import LogReader

    key = None if key_file is None else read_key_file(key_file, source="ribbed", field="--key-file")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RibbedWarning)
        log = LogReader(path, key=key)
    _show_warnings(caught)
    return log


def _chain(log) -> str:
    """What the log's digest chain is, and whether it was authenticated."""
    if not log.keyed:
        return "SHA-256 (not keyed: detects changes, not who made them)"
    state = "authenticated with --key-file" if log.authenticated else "NOT authenticated (give --key-file)"
    return f"HMAC-SHA256, key id {log.key_id}: {state}"


@log_app.command("info")
def log_info(path: Path = typer.Argument(..., help="A run's run.log."), key_file: Optional[Path] = _KEY_FILE) -> None:
    """Scenario, seed, versions, ticks, snapshots, message counts by kind, chain, and size."""
    from ribbed.scheduler.messages import Kind

    try:
        log = _open_log(path, key_file)
        header = log.header
        counts = np.zeros(len(Kind), dtype=np.int64)
        for record in log.records(("tick",)):
            counts += record.array("counts")
        end = log.end
    except RibbedError as exc:
        raise _fail(exc) from None
    ticks = log.ticks
    scenario = header["scenario"]
    lines = [
        f"log:        {path} (format {header['format']} v{header['version']}, level {header['level']})",
        f"scenario:   {scenario['name']}, seed {header['seed']}",
        f"run:        {header['executor']} executor on {header['device']} ({header['dtype']}), "
        f"torch threads {header['threads'].get('torch_threads')}, created {header['created']}",
        "versions:   " + ", ".join(f"{k} {v}" for k, v in header["versions"].items()),
        f"ticks:      {len(ticks)}" + (f" ({ticks[0]}..{ticks[-1]} of {header['ticks']})" if len(ticks) else ""),
        "snapshots:  " + (", ".join(map(str, log.snapshot_ticks)) or "none"),
        "status:     " + (end["status"] if end else "no end record (the run was killed, or is still running)")
        + (f", truncated at byte {log.truncated_at}" if log.truncated_at is not None else ""),
        "messages:   " + ", ".join(f"{kind.name.lower()} {int(n)}" for kind, n in zip(Kind, counts) if n),
        "chain:      " + _chain(log),
        f"size:       {log.size} bytes" + (f", {log.size / len(ticks):.0f} bytes per tick" if len(ticks) else ""),
    ]
    for line in lines:
        out.print(line, highlight=False, markup=False)


def _filters(ticks, agent, kind, stage) -> dict:
    return {"ticks": _ticks(ticks), "agent": agent, "kind": kind, "stage": stage}


_TICKS = typer.Option(None, "--ticks", help="A tick (120) or a range START:STOP, STOP excluded (100:120).")
_AGENT = typer.Option(None, "--agent", help="Only messages this agent sent or received (-1: the task).")
_KIND = typer.Option(None, "--kind", help="Only this kind (activation, error, ...); repeat for several.")
_STAGE = typer.Option(None, "--stage", help="Only this stage (sense, forward, readout, backward, ...).")


@log_app.command("show")
def log_show(
    path: Path = typer.Argument(..., help="A run's run.log."),
    ticks: Optional[str] = _TICKS, agent: Optional[int] = _AGENT,
    kind: Optional[list[str]] = _KIND, stage: Optional[list[str]] = _STAGE,
    limit: int = typer.Option(50, min=1, help="Show at most this many messages."),
    key_file: Optional[Path] = _KEY_FILE,
) -> None:
    """Print the messages of a log, filtered by tick, agent, kind and stage."""
    from ribbed.log.messages import iter_messages, to_frame

    try:
        log = _open_log(path, key_file)
        shown, total = [], 0
        for block in iter_messages(log, **_filters(ticks, agent, kind or None, stage or None)):
            total += len(block)
            if sum(len(b) for b in shown) < limit and len(block):
                shown.append(block)
    except RibbedError as exc:
        raise _fail(exc) from None
    if not total:
        out.print("no messages match (the log's level decides which kinds it holds: "
                  f"this one is '{log.header['level']}')", highlight=False, markup=False)
        return
    import pandas as pd

    frame = pd.concat([to_frame(b) for b in shown]).head(limit)
    payload = [c for c in frame.columns if c.startswith("payload_")]
    frame["payload"] = [" ".join(f"{v:.4g}" for v in row[:4]) + (" ..." if len(row) > 4 else "")
                        for row in frame[payload].to_numpy()]
    text = frame.drop(columns=payload).to_string(index=False)
    out.print(text, highlight=False, markup=False)
    out.print(f"{min(limit, total)} of {total} messages shown (payloads: the first samples of {len(payload)})",
              highlight=False, markup=False)


class ExportFormat(str, Enum):
    parquet = "parquet"
    csv = "csv"
    jsonl = "jsonl"


@log_app.command("export")
def log_export(
    path: Path = typer.Argument(..., help="A run's run.log."),
    format: ExportFormat = typer.Option(..., "--format", help="parquet, csv or jsonl."),
    out_file: Path = typer.Option(..., "--out", help="The file to write (must not exist)."),
    ticks: Optional[str] = _TICKS, agent: Optional[int] = _AGENT,
    kind: Optional[list[str]] = _KIND, stage: Optional[list[str]] = _STAGE,
    key_file: Optional[Path] = _KEY_FILE,
) -> None:
    """Write the (filtered) messages of a log to a file, a block of ticks at a time."""
    from ribbed.log.export import export

    try:
        count = export(_open_log(path, key_file), out_file, format.value,
                       **_filters(ticks, agent, kind or None, stage or None))
    except RibbedError as exc:
        raise _fail(exc) from None
    out.print(f"wrote {count} messages to {out_file}", highlight=False, markup=False)


@app.command()
def replay(
    path: Path = typer.Argument(..., help="A run's run.log."),
    verify: bool = typer.Option(False, "--verify", help="Re-run the scenario from the log's header and check "
                                "every tick and snapshot against the log, bit for bit."),
    until: Optional[int] = typer.Option(None, "--until", min=0, help="Rebuild the network's state at this tick."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="With --until: the folder to write the state to."),
    key_file: Optional[Path] = typer.Option(None, "--key-file", help="The key file of a keyed log (its scenario's "
                                            "log.key_file): --verify authenticates its digest chain with it, and "
                                            "refuses a keyed log without it."),
    max_memory: Optional[str] = typer.Option(None, "--max-memory", help=_MAX_MEMORY_HELP),
) -> None:
    """Verify a logged run, or rebuild its full state at a tick.

    --verify exits with 0 when the log verifies, 1 when it does not (a record that differs from
    the replay, or is damaged or malformed: the first one is named), 2 when it cannot be checked
    (not a log, a keyed log without --key-file, an unusable key file)."""
    if verify == (until is not None) or (until is not None) != (out_dir is not None):
        raise _fail(RibbedError(Problem("ribbed replay", "", "give either --verify, or --until TICK with --out DIR",
                                        "ribbed replay run.log --verify, or ribbed replay run.log --until 500 "
                                        "--out state/")))
    limit = _memory_limit(max_memory, "replay")
    try:
        from ribbed.log.header_scenario import check_header_size

        check_header_size(path, limit)  # before the replay loads torch: a header can claim any size
    except RibbedError as exc:
        raise _fail(exc) from None
    from ribbed.log import replay as replaying

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RibbedWarning)
            if verify:
                report = replaying.verify(path, key_file=key_file, max_memory=limit)
            else:
                folder = replaying.write_state(replaying.model_at(path, until, key_file=key_file, max_memory=limit),
                                               out_dir)
        _show_warnings(caught)
    except RibbedError as exc:
        raise _fail(exc) from None
    if not verify:
        out.print(f"state at tick {until} written to {folder}", highlight=False, markup=False)
        return
    if report.ok:
        keyed = " (digest chain authenticated with the key)" if key_file is not None else ""
        out.print(f"verified: {report.ticks_checked} ticks and {report.snapshots_checked} snapshots match "
                  f"{path}{keyed}", highlight=False, markup=False)
        return
    err.print(f"[bold red]differs:[/] {escape(str(report.difference))}", highlight=False)
    err.print(f"({report.ticks_checked} ticks and {report.snapshots_checked} snapshots matched before it)",
              highlight=False, markup=False)
    raise typer.Exit(code=1)


@app.command()
def report(
    path: Path = typer.Argument(..., help="A run directory (ribbed run) or a sweep folder (ribbed sweep)."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="The HTML file to write (default: "
                                            "DIR/report/report.html); the figures' PNGs go beside it."),
) -> None:
    """Write one self-contained HTML report of a run or a sweep (figures embedded), and its PNGs."""
    try:
        from ribbed.report import write_report

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RibbedWarning)  # (a truncated log is read as far as it goes)
            target = write_report(path, out_file)
    except RibbedError as exc:
        raise _fail(exc) from None
    out.print(f"report: {target}", highlight=False, markup=False)


@app.command()
def compare(
    paths: list[Path] = typer.Argument(..., help="Run directories and sweep folders; the first entry is the "
                                       "reference the others are tested against."),
    metric: Optional[list[str]] = typer.Option(None, "--metric", help="A metrics.csv column to compare (repeat "
                                               "for several; default: the held-out score, the losses and the "
                                               "specialization summaries)."),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Also write the comparison to this JSON file."),
) -> None:
    """Final metrics side by side: mean ± 95% CI across seeds, and Welch's test against the first entry."""
    from rich.table import Table

    try:
        from ribbed.compare import compare as comparing
        from ribbed.compare import write_json

        result = comparing(paths, metric or None)
        if json_file is not None:
            write_json(result, json_file)
    except RibbedError as exc:
        raise _fail(exc) from None
    table = Table(title=f"final metrics, against {escape(result.entries[0].label)}", show_lines=False)
    for name, justify in (("metric", "left"), ("entry", "left"), ("seeds", "right"), ("mean ± 95% CI", "right"),
                          ("difference", "right"), ("Welch p", "right")):
        text = justify == "left"  # names fold onto a second line; numbers are never cut
        table.add_column(name, justify=justify, overflow="fold" if text else "ellipsis", no_wrap=not text)
    for name in result.metrics:
        for index, entry in enumerate(result.entries):
            cell = result.cells[(name, entry.label)]
            table.add_row(escape(name) if index == 0 else "", escape(entry.label), str(cell.interval.n),
                          cell.interval.text(), "" if index == 0 else _format(cell.difference),
                          "" if index == 0 else _format(cell.p, 3), end_section=index == len(result.entries) - 1)
    out.print(table)
    if json_file is not None:
        out.print(f"comparison written to {json_file}", highlight=False, markup=False)


def main() -> None:
    """The ``ribbed`` command.  An operating-system error that no command turned into a located
    error of its own (a file that vanished, a full disk, a permission) is shown as one line, its
    first cause, not as a traceback."""
    try:
        app()
    except OSError as exc:
        where = exc.filename or "ribbed"
        _report(RibbedError(Problem(str(where), "", exc.strerror or str(exc),
                                    "check that the file exists and that its disk has space and is writable")))
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
