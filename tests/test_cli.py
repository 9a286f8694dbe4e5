"""The ``ribbed`` command line on good input: help, version, the built-ins, the schema, a run."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

import ribbed
from ribbed.cli import app

COMMANDS = {
    "run": "Run a scenario",
    "validate": "Check scenario files",
    "schema": "Print the scenario JSON Schema",
    "scenarios": "List the built-in scenarios",
    "dashboard": "Serve a live dashboard of a scenario",
    "report": "Write one self-contained HTML report",
    "compare": "Final metrics side by side",
}


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def ribbed_command() -> list[str]:
    """The installed ``ribbed`` script next to this Python, or ``python -m ribbed.cli``."""
    script = Path(sys.executable).with_name("ribbed")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "ribbed.cli"]


def run_script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run the console script with its output captured (not a terminal), as in a job or a pipe.
    The variables that make rich treat any stream as a terminal are left out."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")}
    return subprocess.run([*ribbed_command(), *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env)


def builtin_yaml(name: str) -> dict:
    text = resources.files("ribbed.scenarios.builtin").joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def with_overrides(name: str, **run: int) -> ribbed.Scenario:
    """The built-in ``name`` with fields of its ``run`` section (or ``seed``) replaced."""
    data = ribbed.load_scenario(name).model_dump()
    if "seed" in run:
        data["seed"] = run.pop("seed")
    data["run"].update(run)
    return ribbed.load_scenario(data)


# --------------------------------------------------------------------------- help and version


def test_help_lists_every_command(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: ribbed" in result.stdout
    assert "neurons that learn by message passing" in result.stdout
    for command, summary in COMMANDS.items():
        assert command in result.stdout
        assert summary in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_each_command(command: str, runner: CliRunner) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert f"Usage: ribbed {command}" in result.stdout
    assert COMMANDS[command] in result.stdout


def test_run_help_describes_its_options(runner: CliRunner) -> None:
    result = runner.invoke(app, ["run", "--help"])
    assert result.exit_code == 0
    for option in ("--backend", "--ticks", "--seed", "--out"):
        assert option in result.stdout
    assert "reference" in result.stdout and "batched" in result.stdout


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"ribbed {ribbed.__version__}"


# --------------------------------------------------------------------------- scenarios, validate


def test_scenarios_lists_every_builtin_one_line_each(runner: CliRunner) -> None:
    builtins = ribbed.builtin_scenarios()
    assert {"xor", "digits", "sine"} <= set(builtins)
    result = runner.invoke(app, ["scenarios"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == len(builtins)
    for line, (name, description) in zip(lines, builtins.items()):
        assert line.split()[0] == name
        assert line.endswith(description)


@pytest.mark.parametrize("name", sorted(ribbed.builtin_scenarios()))
def test_validate_every_builtin(name: str, runner: CliRunner) -> None:
    result = runner.invoke(app, ["validate", name])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"ok: {name} (built-in): '{name}'")
    assert result.stderr == ""


# --------------------------------------------------------------------------- schema


@pytest.fixture(scope="module")
def schema_document() -> dict:
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_schema_is_a_json_schema(schema_document: dict) -> None:
    jsonschema.Draft202012Validator.check_schema(schema_document)
    assert schema_document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema_document["additionalProperties"] is False


@pytest.mark.parametrize("name", sorted(ribbed.builtin_scenarios()))
def test_schema_accepts_every_builtin(name: str, schema_document: dict) -> None:
    validator = jsonschema.Draft202012Validator(schema_document)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(builtin_yaml(name))]
    assert errors == []


def test_schema_accepts_the_tag_shorthand_and_rejects_unknown_keys(schema_document: dict) -> None:
    validator = jsonschema.Draft202012Validator(schema_document)
    scenario = builtin_yaml("xor")
    scenario["task"] = "xor"
    scenario["projections"][0]["connectivity"] = "all_to_all"
    scenario["projections"][0]["init"] = "glorot_uniform"
    assert list(validator.iter_errors(scenario)) == []

    unknown = {**builtin_yaml("xor"), "popluations": []}
    errors = list(validator.iter_errors(unknown))
    assert errors and "popluations" in errors[0].message
    wrong_tag = {**builtin_yaml("xor"), "task": "mnist"}
    assert list(validator.iter_errors(wrong_tag))


# --------------------------------------------------------------------------- run


def test_run_xor_writes_its_run_directory_quietly(tmp_path: Path) -> None:
    out = tmp_path / "xor-run"
    result = run_script("run", "xor", "--out", str(out), "--ticks", "20", cwd=tmp_path)
    text = result.stdout + result.stderr
    assert result.returncode == 0, text
    assert "Traceback" not in text

    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout
    assert lines[0].startswith("xor: held-out accuracy ") and "after 20 ticks" in lines[0]
    assert lines[1] == f"run directory: {out}"
    # The progress bar stays quiet when the output is not a terminal.
    assert result.stderr == ""
    for mark in ("━", "\r", "\x1b[", "ticks loss"):
        assert mark not in text

    assert sorted(p.name for p in out.iterdir()) == ["agents.csv", "metrics.csv", "run.log", "run.log.idx",
                                                     "scenario.yaml", "summary.json", "tuning.csv"]
    assert ribbed.load_scenario(out / "scenario.yaml") == with_overrides("xor", ticks=20)
    assert ribbed.load_scenario(out / "scenario.yaml") != ribbed.load_scenario("xor")

    rows = list(csv.DictReader((out / "metrics.csv").open(encoding="utf-8")))
    assert rows[-1]["tick"] == "20"
    accuracy = float(rows[-1]["test_accuracy"])
    assert f"held-out accuracy {accuracy:.4f}" in lines[0]
    agents = list(csv.DictReader((out / "agents.csv").open(encoding="utf-8")))
    assert {row["tick"] for row in agents} == {row["tick"] for row in rows}
    assert len(agents) == len(rows) * 12  # 2 + 8 + 2 neurons

    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["status"] == "completed" and summary["error"] is None
    assert (summary["scenario"], summary["ticks"], summary["seed"]) == ("xor", 20, 0)
    assert summary["final"]["test_accuracy"] == pytest.approx(accuracy)


def test_seed_and_ticks_overrides_are_recorded(tmp_path: Path, runner: CliRunner) -> None:
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", "xor", "--seed", "7", "--ticks", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "after 3 ticks" in result.stdout

    written = yaml.safe_load((out / "scenario.yaml").read_text(encoding="utf-8"))
    assert written["seed"] == 7 and written["run"]["ticks"] == 3
    assert written["run"]["batch_size"] == builtin_yaml("xor")["run"]["batch_size"]  # the rest is unchanged
    assert ribbed.load_scenario(out / "scenario.yaml") == with_overrides("xor", seed=7, ticks=3)

    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert (summary["seed"], summary["ticks"]) == (7, 3)


@pytest.mark.parametrize("option, value", [("--ticks", "-5"), ("--ticks", "0"), ("--seed", "-1")])
def test_out_of_range_options_are_refused(option: str, value: str, tmp_path: Path, runner: CliRunner) -> None:
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", "xor", option, value, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f"Invalid value for '{option}'" in result.stderr
    assert "greater than or equal to" in result.stderr
    assert not out.exists()


def test_run_on_the_batched_executor_from_the_command_line(tmp_path: Path, runner: CliRunner) -> None:
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", "xor", "--backend", "batched", "--device", "cpu", "--ticks", "50",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "on the batched executor (cpu, float32)" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["backend"], summary["device"], summary["dtype"]) == ("batched", "cpu", "float32")
    assert yaml.safe_load((out / "scenario.yaml").read_text())["backend"]["kind"] == "batched"
    with open(out / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["tick"]) for r in rows] == [0, 50]
    assert int(rows[-1]["messages"]) > 0
