"""The ``ribbed`` command line: run, validate, schema, scenarios.

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
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ribbed import __version__
from ribbed.errors import Problem, RibbedError, RibbedWarning
from ribbed.model import NetworkModel
from ribbed.scenarios.loader import builtin_scenarios, load_scenario
from ribbed.scenarios.schema import Scenario

app = typer.Typer(
    name="ribbed",
    help="Multi-agent simulation of neurons that learn by message passing.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


class BackendName(str, Enum):
    reference = "reference"
    batched = "batched"
    ray = "ray"


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


def _format(value: float, digits: int = 4) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _show_warnings(caught: list) -> None:
    while caught:
        _warn(caught.pop(0).message)


@app.command()
def run(
    scenario: str = typer.Argument(..., help="A scenario YAML file, or the name of a built-in scenario."),
    backend: Optional[BackendName] = typer.Option(None, help="Executor to run on (overrides backend.kind)."),
    device: Optional[str] = typer.Option(None, help="batched executor: cpu, cuda, cuda:N or auto "
                                         "(overrides backend.device)."),
    ticks: Optional[int] = typer.Option(None, min=1, help="Number of ticks (overrides run.ticks)."),
    seed: Optional[int] = typer.Option(None, min=0, help="Root seed (overrides seed)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run directory (must not exist or be empty)."),
) -> None:
    """Run a scenario and write its run directory (resolved scenario, metrics, summary)."""
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
            result = run_scenario(scenario, out=out_dir, ticks=ticks, seed=seed,
                                  backend=backend.value if backend else None, device=device,
                                  on_tick=lambda model: _show_warnings(caught) or on_tick(model))
    except RibbedError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        err.print("interrupted: everything written so far is kept in the run directory")
        raise typer.Exit(code=130) from None
    final = result.model.last_metrics
    name = result.model.scenario.name
    if "test_accuracy" in final:
        headline = f"held-out accuracy {final['test_accuracy']:.4f}"
    else:
        headline = f"held-out R^2 {final['test_r2']:.4f}"
    out.print(f"{name}: {headline} (test loss {final['test_loss']:.4f}) after {result.model.tick} ticks "
              f"in {result.seconds:.1f} s on the {result.model.executor.name} executor "
              f"({result.model.executor.device_name}, {result.model.executor.dtype_name})",
              highlight=False, markup=False)
    out.print(f"run directory: {result.directory}", highlight=False, markup=False)


@app.command()
def validate(
    files: list[str] = typer.Argument(..., help="Scenario files (or built-in names) to check."),
) -> None:
    """Check scenario files: schema, cross-references, connectivity and task data."""
    from ribbed.environment.network import build_network
    from ribbed.environment.tasks import load_task
    from ribbed.model import check_estimators
    from ribbed.scheduler.executor import check_backend

    failed = False
    for name in files:
        try:
            scenario = load_scenario(name)
            check_backend(scenario)
            check_estimators(scenario, {})  # a file cannot supply scikit-learn estimators
            network = build_network(scenario)
            load_task(scenario)
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
