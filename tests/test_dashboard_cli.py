"""``ribbed dashboard`` refuses bad input with a located error before any server starts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ribbed.cli import app


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def refused(runner: CliRunner, *args: str) -> str:
    result = runner.invoke(app, ["dashboard", *args, "--no-browser"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "at http://" not in result.output  # no server was started
    return result.output


def test_unknown_scenario(runner: CliRunner) -> None:
    output = refused(runner, "no-such-scenario")
    assert "error:" in output and "no-such-scenario" in output


def test_scenario_file_with_a_mistake_names_its_line(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\ntask: {kind: xor}\npopulations:\n  - {name: in, size: -3, role: input}\n"
                    "  - {name: out, size: 2, role: output}\nprojections:\n  - {pre: in, post: out}\n")
    output = refused(runner, str(path))
    assert "bad.yaml:4" in output and "populations[0].size" in output


def test_eval_every_longer_than_the_run(runner: CliRunner) -> None:
    output = refused(runner, "xor", "--eval-every", "1000000")
    assert "--eval-every" in output and "fix:" in output


def test_eval_every_below_one_is_refused_by_the_option(runner: CliRunner) -> None:
    result = runner.invoke(app, ["dashboard", "xor", "--eval-every", "0", "--no-browser"])
    assert result.exit_code == 2
    assert "--eval-every" in result.output


def test_port_in_use(runner: CliRunner) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        output = refused(runner, "xor", "--port", str(port))
    assert f"127.0.0.1:{port}" in output and "--port" in output and "fix:" in output
