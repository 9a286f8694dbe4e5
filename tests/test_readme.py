"""The README's examples are real: its scenario runs, its error example is what ribbed prints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import ribbed

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


def block(language: str, after: str) -> str:
    section = README[README.index(after):]
    return re.search(rf"```{language}\n(.*?)```", section, re.S).group(1)


def test_minimal_scenario_loads_and_trains(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text(block("yaml", "## A minimal scenario"), encoding="utf-8")
    scenario = ribbed.load_scenario(path)
    assert scenario.projections[1].learning.lr == 0.05
    metrics = ribbed.NetworkModel(scenario).run()
    assert metrics["test_accuracy"].iloc[-1] > 0.9


def test_error_example_is_what_ribbed_prints(tmp_path):
    example = block("", "A mistake in a file").strip().splitlines()
    text = block("yaml", "## A minimal scenario").replace("{name: hidden, size: 8,", "{name: hidden, size: -3,")
    path = tmp_path / "my.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ribbed.ScenarioError) as caught:
        ribbed.load_scenario(path)
    printed = f"error: {caught.value}".replace(str(path), "my.yaml").splitlines()
    assert printed == example


def test_python_example_runs(monkeypatch):
    code = block("python", "## The same run from Python").replace('"digits"', '"xor"')
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert len(namespace["metrics"]) > 1


def test_guide_fragment_is_a_valid_part_of_a_scenario():
    import yaml

    fragment = yaml.safe_load(block("yaml", "## Guides, coupling and trust"))
    data = ribbed.load_scenario("digits").model_dump(exclude_none=True)
    data["populations"][1].update(fragment["populations"][0])
    data.update({key: fragment[key] for key in ("coupling", "meta", "schedule")})
    scenario = ribbed.load_scenario(data)
    assert scenario.populations[1].guide.kind == "mlp" and scenario.schedule.backward_every == 4
    assert scenario.population_coupling(scenario.populations[1]).kind == "hash"
