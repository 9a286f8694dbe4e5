"""Bad input never yields a traceback.

Every case below is a scenario (or a command line) that is wrong in one way.  For each, the CLI
(``ribbed validate FILE`` and ``ribbed run FILE``) must exit with code 2, print no traceback,
and print one message that names the file, the field path and what is expected; the Python API
must raise :class:`ribbed.ScenarioError` whose first problem is located at that field path.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import ribbed
from ribbed.cli import app

#: A valid scenario that every case breaks in one way.
BASE: dict[str, Any] = {
    "name": "base",
    "task": "xor",
    "populations": [
        {"name": "in", "size": 2, "role": "input"},
        {"name": "hidden", "size": 4},
        {"name": "out", "size": 2, "role": "output", "activation": "identity"},
    ],
    "projections": [{"pre": "in", "post": "hidden"}, {"pre": "hidden", "post": "out"}],
    "run": {"ticks": 5, "eval_every": 5},
}

BASE_YAML = """\
name: base
task: xor
populations:
  - {name: in, size: 2, role: input}
  - {name: hidden, size: 4}
  - {name: out, size: 2, role: output, activation: identity}
projections:
  - {pre: in, post: hidden}
  - {pre: hidden, post: out}
run:
  ticks: 5
  eval_every: 5
"""

Mutation = Callable[[dict, Path], None]


def _parts(path: str) -> list[Union[str, int]]:
    """``'populations[1].size'`` -> ``['populations', 1, 'size']``."""
    return [int(index) if index else key for key, index in re.findall(r"([A-Za-z_]\w*)|\[(\d+)\]", path)]


def setting(path: str, value: Any) -> Mutation:
    """A mutation that sets the field at ``path`` (written as the loader prints paths)."""

    def mutate(data: dict, folder: Path) -> None:
        *parents, last = _parts(path)
        target: Any = data
        for part in parents:
            target = target[part]
        target[last] = value

    return mutate


def npz_task(columns: int, save: bool = True) -> Mutation:
    """Switch the task to an .npz file next to the scenario, with ``columns`` input features."""

    def mutate(data: dict, folder: Path) -> None:
        if save:
            rng = np.random.default_rng(0)
            np.savez(folder / "data.npz",
                     X_train=rng.standard_normal((40, columns)), y_train=np.arange(40) % 2,
                     X_test=rng.standard_normal((10, columns)), y_test=np.arange(10) % 2)
        data["task"] = {"kind": "npz", "path": "data.npz", "problem": "classification", "loss": "cross_entropy"}

    return mutate


def npz_arrays(**overrides: np.ndarray) -> Mutation:
    """Switch the task to an .npz file whose arrays are valid but for ``overrides``."""

    def mutate(data: dict, folder: Path) -> None:
        rng = np.random.default_rng(0)
        arrays = {"X_train": rng.standard_normal((40, 2)), "y_train": np.arange(40) % 2,
                  "X_test": rng.standard_normal((10, 2)), "y_test": np.arange(10) % 2, **overrides}
        np.savez(folder / "data.npz", **arrays)
        data["task"] = {"kind": "npz", "path": "data.npz", "problem": "classification", "loss": "cross_entropy"}

    return mutate


@dataclass(frozen=True)
class Case:
    """One bad input: the file's content, where the error is, and what the message must say.

    ``source`` is YAML text written as is, a mutation of :data:`BASE`, or None for no file at all.
    ``stage`` is ``load`` when :func:`ribbed.load_scenario` refuses it, ``build`` when only building
    the model does (the task's data or the executor).  ``commands`` are the subcommands that must
    refuse it (``validate`` does not build an executor).
    """

    source: Union[str, Mutation, None]
    path: str
    words: tuple[str, ...]
    stage: str = "load"
    commands: tuple[str, ...] = ("validate", "run")


CASES = {
    # ---- the file itself
    "missing file": Case(None, "", ("no such file", "give the path of a YAML file", "xor")),
    "empty file": Case("", "", ("expected a mapping of sections", "empty file", "name: ...")),
    "top-level list": Case("- name: base\n- task: xor\n", "", ("expected a mapping of sections", "got a list")),
    "invalid YAML": Case("name: base\npopulations: [{name: in, size: 2\n", "", ("invalid YAML", "fix the YAML syntax")),
    "key written twice": Case(BASE_YAML + "  ticks: 7\n", "run.ticks",
                              ("written twice", "first on line 11", "keep only one")),
    "key written twice in a list item": Case(BASE_YAML.replace("{name: hidden, size: 4}",
                                                               "{name: hidden, size: 4, size: 5}"),
                                             "populations[1].size", ("written twice", "keep only one")),
    # ---- one field
    "unknown key": Case(setting("run.tickz", 3), "run.tickz", ("unknown key 'tickz'", "use one of", "ticks")),
    "unknown top-level key": Case(setting("popluations", []), "popluations",
                                  ("unknown key 'popluations'", "populations")),
    "wrong type": Case(setting("populations[1].size", "four"), "populations[1].size",
                       ("valid integer", "'four'", "use a value of that type")),
    "wrong type, mapping for a list": Case(setting("projections", {"pre": "in"}), "projections",
                                           ("valid list", "got a mapping")),
    "boolean for an integer": Case(setting("populations[1].size", True), "populations[1].size",
                                   ("valid integer", "True")),
    "number written as a string": Case(setting("run.ticks", "40"), "run.ticks", ("valid integer", "'40'")),
    "negative size": Case(setting("populations[1].size", -3), "populations[1].size",
                          ("greater than 0", "-3", "allowed range")),
    "negative ticks": Case(setting("run.ticks", -5), "run.ticks", ("greater than 0", "-5")),
    "unknown task kind": Case(setting("task", "mnist"), "task.kind",
                              ("unknown kind 'mnist'", "use one of", "'digits'", "'xor'")),
    "unknown task kind, written out": Case(setting("task", {"kind": "mnist", "noise": 0.1}), "task.kind",
                                           ("unknown kind 'mnist'", "'sine'")),
    "unknown connectivity rule": Case(setting("projections[0].connectivity", "all_to_some"),
                                      "projections[0].connectivity.rule",
                                      ("unknown rule 'all_to_some'", "'all_to_all'", "'fixed_in_degree'")),
    # ---- fields that must agree with each other
    "projection from an unknown population": Case(setting("projections[0].pre", "inputs"), "projections[0].pre",
                                                  ("unknown population 'inputs'", "name one of: in, hidden, out")),
    "projection to an unknown population": Case(setting("projections[1].post", "output"), "projections[1].post",
                                                ("unknown population 'output'", "name one of: in, hidden, out")),
    "no input population": Case(setting("populations[0].role", "hidden"), "populations",
                                ("no population has role: input", "set 'role: input'")),
    "no output population": Case(setting("populations[2].role", "hidden"), "populations",
                                 ("no population has role: output", "set 'role: output'")),
    "task input size mismatch": Case(setting("populations[0].size", 3), "populations[0].size",
                                     ("task 'xor' has 2 inputs", "'in' has 3 neurons", "set size: 2")),
    "task output size mismatch": Case(setting("populations[2].size", 5), "populations[2].size",
                                      ("task 'xor' has 2 outputs", "'out' has 5 neurons", "set size: 2")),
    "one_to_one between different sizes": Case(setting("projections[0].connectivity", "one_to_one"),
                                               "projections[0].connectivity.rule",
                                               ("one_to_one needs equal sizes", "pre 2, post 4", "same size")),
    "fixed_in_degree k above the presynaptic size": Case(
        setting("projections[0].connectivity", {"rule": "fixed_in_degree", "k": 5}),
        "projections[0].connectivity.k", ("k=5 exceeds the 2 available", "use k <= 2")),
    "edge index out of range": Case(
        setting("projections[0].connectivity", {"rule": "edges", "edges": [[0, 0], [2, 1]]}),
        "projections[0].connectivity.edges[1]",
        ("edge [2, 1] is out of range", "pre 2, post 4", "indices local to each population")),
    "unknown networkx generator": Case(
        setting("projections[1].connectivity", {"rule": "networkx", "generator": "no_such_graph"}),
        "projections[1].connectivity.generator",
        ("no graph generator named 'no_such_graph'", "erdos_renyi_graph")),
    "infinite noise": Case(setting("task", {"kind": "xor", "noise": float("inf")}), "task.noise",
                           ("finite number", "inf")),
    "infinite learning rate": Case(setting("learning", {"lr": float("inf")}), "learning.lr", ("finite number",)),
    "NaN initial weight": Case(setting("projections[0].init", {"kind": "constant", "value": float("nan")}),
                               "projections[0].init.value", ("finite number",)),
    "YAML nested too deeply": Case("name: " + "[" * 5000 + "]" * 5000 + "\n", "", ("nested too deeply",)),
    # ---- found when the model is built
    "too few samples to split": Case(setting("task", {"kind": "xor", "n_samples": 8, "test_fraction": 0.1}),
                                     "task.test_fraction", ("cannot split 8 samples", "test_fraction"),
                                     stage="build"),
    "generator that returns no graph": Case(
        lambda data, folder: data["projections"].append(
            {"pre": "hidden", "post": "hidden",
             "connectivity": {"rule": "networkx", "generator": "number_of_nonisomorphic_trees"}}),
        "projections[2].connectivity", ("returned a value of type 'int', not a graph",), stage="build"),
    "npz with an empty X_train": Case(npz_arrays(X_train=np.zeros((0, 2)), y_train=np.zeros(0, dtype=int)),
                                      "task.path", ("X_train", "is empty"), stage="build"),
    "npz with text inputs": Case(npz_arrays(X_test=np.array([["a", "b"]] * 10)), "task.path",
                                 ("X_test", "not numbers"), stage="build"),
    "npz with infinite inputs": Case(npz_arrays(X_train=np.full((40, 2), np.inf)), "task.path",
                                     ("X_train", "infinite or NaN"), stage="build"),
    "npz with 2-D test labels": Case(npz_arrays(y_test=np.zeros((10, 2), dtype=int)), "task.path",
                                     ("y_test must be a 1-D array of integer labels",), stage="build"),
    "npz with negative test labels": Case(npz_arrays(y_test=-(np.arange(10) % 2)), "task.path",
                                          ("y_test must be a 1-D array of integer labels",), stage="build"),
    "npz task file missing": Case(npz_task(2, save=False), "task.path",
                                  ("no such file", "data.npz", "relative to the scenario file"), stage="build"),
    "npz task with the wrong number of columns": Case(npz_task(3), "task.path",
                                                      ("3 features", "'in' has 2 neurons", "size to 3"),
                                                      stage="build"),
    "ray executor on a GPU": Case(setting("backend", {"kind": "ray", "device": "cuda"}), "backend.device",
                                  ("shards compute on the CPU", "device: cpu"), stage="build"),
    "reference executor in float32": Case(setting("backend", {"kind": "reference", "dtype": "float32"}),
                                          "backend.dtype", ("float64 only", "remove backend.dtype"), stage="build"),
    "a GPU that is not there": Case(setting("backend", {"kind": "batched", "device": "cuda:99"}), "backend.device",
                                    ("'cuda:99' was requested", "device: cpu"), stage="build"),
    "a device torch does not know": Case(setting("backend", {"kind": "batched", "device": "tpu"}),
                                         "backend.device", ("tpu",)),
    "storage that is not a layout": Case(setting("projections[1].storage", "csc"),
                                         "projections[1].storage", ("'auto', 'dense' or 'sparse'",)),
    # ---- guided learning
    "a guide kind not in the registry": Case(setting("populations[1].guide", "sklearn.svm.SVR"),
                                             "populations[1].guide.kind", ("unknown kind 'sklearn.svm.SVR'",
                                                                                "'tree', 'sklearn', 'linear', 'mlp'")),
    "a guide on the output population": Case(setting("populations[2].guide", "mlp"), "populations[2].guide",
                                             ("hidden neurons", "output population", "move the guide")),
    "a guide on a hebbian population": Case(
        lambda data, folder: data["populations"][1].update(guide="linear", learning={"rule": "hebbian"}),
        "populations[1].guide", ("hebbian rule", "no credit", "gradient rule")),
    "a coupling without a guide": Case(setting("populations[1].coupling", "hash"), "populations[1].coupling",
                                       ("has no guide", "add 'guide: mlp'")),
    "a meta section and no guide anywhere": Case(setting("meta", {"kind": "fixed", "alpha": 0.5}), "meta",
                                                 ("no population has a guide", "remove 'meta'")),
    "alpha outside [0, 1]": Case(lambda data, folder: data.update(meta={"kind": "fixed", "alpha": 1.5})
                                 or data["populations"][1].update(guide="mlp"), "meta.alpha",
                                 ("less than or equal to 1",)),
    "hash with too many bits": Case(lambda data, folder: data["populations"][1].update(
        guide="linear", coupling={"kind": "hash", "bits": 40}), "populations[1].coupling.bits",
        ("less than or equal to 16",)),
    # ---- broadcast credit (the unguided control)
    "a broadcast kind that does not exist": Case(setting("populations[1].broadcast", "feedback"),
                                                 "populations[1].broadcast.kind", ("unknown kind 'feedback'", "'dfa'")),
    "broadcast on the output population": Case(setting("populations[2].broadcast", "dfa"), "populations[2].broadcast",
                                               ("hidden neurons", "output population", "move 'broadcast'")),
    "broadcast with a guide": Case(lambda data, folder: data["populations"][1].update(guide="mlp", broadcast="dfa"),
                                   "populations[1].broadcast", ("has a guide", "remove 'broadcast'")),
    "broadcast on a hebbian population": Case(
        lambda data, folder: data["populations"][1].update(broadcast="dfa", learning={"rule": "hebbian"}),
        "populations[1].broadcast", ("hebbian rule", "no credit", "gradient rule")),
    "broadcast on a population that computes no credit": Case(
        lambda data, folder: data["populations"][1].update(broadcast="dfa", bias=False)
        or data["projections"][0].update(frozen=True),
        "populations[1].broadcast", ("computes no credit", "remove 'broadcast'"), stage="build"),
    "backward_every of zero": Case(setting("schedule", {"backward_every": 0}), "schedule.backward_every",
                                   ("greater than 0",)),
    "a guide on a population that computes no credit": Case(
        lambda data, folder: data["populations"][1].update(guide="mlp", bias=False)
        or data["projections"][0].update(frozen=True), "populations[1].guide",
        ("computes no credit", "remove the guide"), stage="build"),
    # ---- time within a tick (docs/semantics.md, "Spiking neurons", "Time within a tick")
    "a lif policy without beta": Case(setting("populations[1].firing", {"policy": "lif"}), "populations[1].firing",
                                      ("needs its membrane decay beta", "beta: 0.9")),
    "a lif beta above 1": Case(setting("populations[1].firing", {"policy": "lif", "beta": 1.5}),
                               "populations[1].firing.beta", ("less than or equal to 1",)),
    "beta on a threshold policy": Case(setting("populations[1].firing", {"policy": "threshold", "beta": 0.5}),
                                       "populations[1].firing", ("lif membrane's decay", "remove beta")),
    "an unknown firing policy": Case(setting("populations[1].firing", {"policy": "izhikevich"}),
                                     "populations[1].firing.policy",
                                     ("'rate', 'threshold', 'lif', 'random' or 'conductance'",)),
    "a negative surrogate slope": Case(setting("populations[1].firing",
                                               {"policy": "threshold", "surrogate": {"kind": "sigmoid", "parameter": -1}}),
                                       "populations[1].firing.surrogate.parameter", ("greater than 0",)),
    "a refractory period on a rate neuron": Case(setting("populations[1].firing", {"refractory": 2}),
                                                 "populations[1].firing", ("emits no spikes", "remove refractory")),
    "a firing policy on the input population": Case(setting("populations[0].firing", {"policy": "threshold"}),
                                                    "populations[0].firing", ("task's encoding", "task.encoding")),
    "a readout on a hidden population": Case(setting("populations[1].readout", "mean"), "populations[1].readout",
                                             ("output population", "move 'readout'")),
    "a spike count of a rate output": Case(setting("populations[2].readout", "count"), "populations[2].readout",
                                           ("emits no spikes to count", "readout: mean")),
    "a membrane readout of a threshold output": Case(
        lambda data, folder: data["populations"][2].update(firing={"policy": "threshold"}, readout="membrane"),
        "populations[2].readout", ("only a lif neuron has a membrane",)),
    "zero steps per sample": Case(setting("run.steps_per_sample", 0), "run.steps_per_sample", ("greater than 0",)),
    "an unknown encoding": Case(setting("task", {"kind": "xor", "encoding": "temporal"}), "task.encoding.kind",
                                ("unknown kind 'temporal'", "'latency'")),
    "Hebbian learning over several steps": Case(
        lambda data, folder: data["populations"][1].update(learning={"rule": "hebbian"})
        or data["run"].update(steps_per_sample=4),
        "populations[1].learning.rule", ("not defined yet with time within a tick", "direct_feedback_alignment")),
    "a guide on a spiking population": Case(
        lambda data, folder: data["populations"][1].update(guide="mlp", firing={"policy": "threshold"}),
        "populations[1].guide", ("not defined yet with time within a tick", "remove 'guide'")),
    "a sequence whose steps do not split the features": Case(
        lambda data, folder: data.update(task={"kind": "digits", "encoding": "sequence"})
        or data["run"].update(steps_per_sample=8) or data["populations"][2].update(size=10),
        "populations[0].size", ("feeds the 64 features of task 'digits' as", "8 steps of 2 inputs", "set size: 8")),
    "a sequence of steps that do not divide the features": Case(
        lambda data, folder: data.update(task={"kind": "mackey_glass", "window": 12, "encoding": "sequence"})
        or data["run"].update(steps_per_sample=5) or data["populations"][0].update(size=1)
        or data["populations"][2].update(size=1),
        "run.steps_per_sample", ("feeds the 12 features of task 'mackey_glass'", "dividing 12 (e.g. 2, 3, 4")),
    "a sequence of npz features that do not split": Case(
        lambda data, folder: npz_task(7)(data, folder) or data["task"].update(encoding="sequence")
        or data["run"].update(steps_per_sample=3),
        "task.path", ("feeds the 7 features of task 'npz'", "dividing 7"), stage="build"),
    "a BPTT window on a one-step tick": Case(setting("run.bptt_window", 4), "run.bptt_window",
                                             ("presents each sample for one step", "remove bptt_window")),
    "a zero BPTT window": Case(lambda data, folder: data["run"].update(steps_per_sample=4, bptt_window=0),
                               "run.bptt_window", ("greater than 0",)),
    "a mackey_glass window that is not the input size": Case(
        lambda data, folder: data.update(task={"kind": "mackey_glass", "window": 6})
        or data["populations"][2].update(size=1), "populations[0].size",
        ("task 'mackey_glass' has 6 inputs", "set size: 6")),
    "an estimator guide from a file": Case(setting("populations[1].guide", "sklearn"), "populations[1].guide",
                                           ("no estimator was given", "NetworkModel(scenario, guides="),
                                           stage="build"),
}


def write_case(case: Case, folder: Path) -> Path:
    """The file of ``case`` in ``folder`` (not created for the missing-file case)."""
    path = folder / "scenario.yaml"
    if case.source is None:
        return path
    if isinstance(case.source, str):
        text = case.source
    else:
        data = copy.deepcopy(BASE)
        case.source(data, folder)
        text = yaml.safe_dump(data, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def assert_clear(text: str, path: Path, case: Case) -> None:
    """The message names the file, the field path and what is expected, without a traceback."""
    assert "Traceback" not in text
    assert str(path) in text, f"the message does not name the file {path}:\n{text}"
    if case.path:
        assert f": {case.path}: " in text, f"the message does not name the field {case.path}:\n{text}"
    for word in case.words:
        assert word in text, f"{word!r} missing from:\n{text}"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


# --------------------------------------------------------------------------- the Python API


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_api_raises_scenario_error_at_the_field(case: Case, tmp_path: Path) -> None:
    path = write_case(case, tmp_path)
    if case.stage == "load":
        with pytest.raises(ribbed.ScenarioError) as info:
            ribbed.load_scenario(path)
    else:
        scenario = ribbed.load_scenario(path)
        with pytest.raises(ribbed.ScenarioError) as info:
            ribbed.NetworkModel(scenario)
    error = info.value
    assert isinstance(error, ribbed.RibbedError)
    assert [p.path for p in error.problems] == [case.path], "expected exactly one problem, at the field"
    problem = error.problems[0]
    assert problem.source == str(path)
    assert problem.fix, "every problem says how to fix it"
    assert_clear(str(error), path, case)


@pytest.mark.parametrize("text, path, line", [
    (BASE_YAML.replace("{pre: in, post: hidden}", "{pre: in, post: hidden, connectivity: {rule: edges, "
                                                  "edges: [[0, 0], [2, 1]]}}"),
     "projections[0].connectivity.edges[1]", 8),
    (BASE_YAML.replace("size: 4", "size: -4"), "populations[1].size", 5),
    (BASE_YAML + "  ticks: 7\n", "run.ticks", 13),
    (BASE_YAML.replace("task: xor", "task: mnist"), "task.kind", 2),
], ids=["edge", "size", "duplicate key", "task kind"])
def test_problems_carry_the_line_of_the_field(text: str, path: str, line: int, tmp_path: Path) -> None:
    file = tmp_path / "scenario.yaml"
    file.write_text(text, encoding="utf-8")
    with pytest.raises(ribbed.ScenarioError) as info:
        ribbed.load_scenario(file)
    problem = info.value.problems[0]
    assert (problem.path, problem.line) == (path, line)
    assert str(info.value).startswith(f"{file}:{line}: {path}: ")


def test_a_mapping_is_checked_like_a_file() -> None:
    data = copy.deepcopy(BASE)
    data["populations"][1]["size"] = -1
    with pytest.raises(ribbed.ScenarioError) as info:
        ribbed.load_scenario(data)
    assert info.value.problems[0].path == "populations[1].size"
    assert info.value.problems[0].source == "<mapping>"


# --------------------------------------------------------------------------- the CLI, in process


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_cli_exits_2_with_one_clear_message(case: Case, tmp_path: Path, runner: CliRunner) -> None:
    path = write_case(case, tmp_path)
    out = tmp_path / "run-dir"
    for command in case.commands:
        args = [command, str(path)] + (["--out", str(out)] if command == "run" else [])
        result = runner.invoke(app, args)
        assert result.exit_code == 2, f"{command}: exit {result.exit_code}\n{result.output}"
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        assert result.stderr.startswith("error: "), result.output
        assert "ok:" not in result.stdout
        assert_clear(result.output, path, case)
        assert not out.exists(), f"{command} created the run directory of a refused run"


def test_validate_reports_each_bad_file_and_still_checks_the_good_ones(tmp_path: Path, runner: CliRunner) -> None:
    bad = write_case(CASES["negative size"], tmp_path)
    good = tmp_path / "good.yaml"
    good.write_text(BASE_YAML, encoding="utf-8")
    result = runner.invoke(app, ["validate", str(bad), str(good)])
    assert result.exit_code == 2
    assert f"ok: {good}:" in result.stdout
    assert f"{bad}:" in result.stderr and "populations[1].size" in result.stderr
    assert "Traceback" not in result.output


def test_shards_option_on_an_executor_without_shards(tmp_path: Path, runner: CliRunner) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(BASE_YAML, encoding="utf-8")
    out = tmp_path / "run-dir"
    result = runner.invoke(app, ["run", str(path), "--backend", "batched", "--shards", "2", "--out", str(out)])
    assert result.exit_code == 2, result.output
    text = result.output
    assert "Traceback" not in text
    assert f"{path} with --backend batched --shards 2" in text and "backend" in text
    assert "'shards' applies to the ray executor only" in text and "set 'kind: ray'" in text
    assert not out.exists()
    with pytest.raises(ribbed.ScenarioError) as info:
        ribbed.run(path, backend="batched", shards=2, write=False)
    assert info.value.problems[0].path == "backend"


def test_out_must_not_be_a_non_empty_folder(tmp_path: Path, runner: CliRunner) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(BASE_YAML, encoding="utf-8")
    out = tmp_path / "earlier-run"
    out.mkdir()
    (out / "metrics.csv").write_text("tick,loss\n0,1.0\n", encoding="utf-8")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    result = runner.invoke(app, ["run", str(path), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "--out" in result.stderr and str(out) in result.stderr
    assert "not an empty folder" in result.stderr and "choose a new folder" in result.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    with pytest.raises(ribbed.RibbedError, match="not an empty folder"):
        ribbed.run(path, out=out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_out_may_be_an_empty_folder(tmp_path: Path, runner: CliRunner) -> None:
    """The counterpart of the test above: an existing but empty folder is accepted."""
    path = tmp_path / "scenario.yaml"
    path.write_text(BASE_YAML, encoding="utf-8")
    out = tmp_path / "empty"
    out.mkdir()
    result = runner.invoke(app, ["run", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "summary.json").is_file()


def test_text_that_looks_like_markup_is_printed_as_written(tmp_path: Path, runner: CliRunner) -> None:
    """File paths and keys are not rich markup: '[lr]' is kept and '[/x]' raises nothing."""
    folder = tmp_path / "sweep[lr]"
    folder.mkdir()
    path = folder / "scenario.yaml"
    path.write_text(BASE_YAML + '"[/x]": 1\n', encoding="utf-8")
    for command in ("validate", "run"):
        result = runner.invoke(app, [command, str(path)])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        assert f"{path}:" in result.stderr
        assert "unknown key '[/x]'" in result.stderr


def test_a_key_that_is_a_list_is_invalid_yaml(tmp_path: Path, runner: CliRunner) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(BASE_YAML + "? [a, b]\n: 1\n", encoding="utf-8")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f"{path}:13: invalid YAML" in result.stderr


# --------------------------------------------------------------------------- the real console script


def ribbed_command() -> list[str]:
    """The installed ``ribbed`` script next to this Python, or ``python -m ribbed.cli``."""
    script = Path(sys.executable).with_name("ribbed")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "ribbed.cli"]


def run_script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")}
    return subprocess.run([*ribbed_command(), *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env)


SCRIPT_CASES = ["missing file", "invalid YAML", "projection from an unknown population",
                "npz task with the wrong number of columns"]


@pytest.mark.parametrize("name", SCRIPT_CASES)
def test_console_script(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    path = write_case(case, tmp_path)
    command = "validate" if name != "npz task with the wrong number of columns" else "run"
    result = run_script(command, str(path), cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert "\x1b[" not in result.stderr, "no colour codes when stderr is not a terminal"
    assert_clear(result.stdout + result.stderr, path, case)
    assert not any(p.is_dir() for p in tmp_path.iterdir()), "a refused run left a run directory"


def test_console_script_backend_ray_on_a_gpu(tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(BASE_YAML, encoding="utf-8")
    result = run_script("run", str(path), "--backend", "ray", "--device", "cuda", "--out", str(tmp_path / "r"),
                        cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    assert "backend.device: the ray executor's shards compute on the CPU" in result.stderr
    assert not (tmp_path / "r").exists()


def test_a_run_folder_that_cannot_be_created(tmp_path: Path, runner: CliRunner) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("", encoding="utf-8")
    path = tmp_path / "scenario.yaml"
    path.write_text(BASE_YAML + f"output: {{dir: {blocker}}}\n", encoding="utf-8")
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "cannot create the run folder" in result.stderr and "can write to" in result.stderr


def test_a_network_that_no_credit_reaches_is_warned_about(tmp_path: Path, runner: CliRunner) -> None:
    data = copy.deepcopy(BASE)
    data["populations"].insert(2, {"name": "pca", "size": 3, "bias": False})
    data["projections"] = [{"pre": "in", "post": "hidden"},
                           {"pre": "hidden", "post": "pca", "learning": {"rule": "hebbian"}},
                           {"pre": "pca", "post": "out"}]
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    for args in (["validate", str(path)], ["run", str(path), "--out", str(tmp_path / "run")]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "warning:" in result.stderr and "population 'hidden'" in result.stderr
        assert "no error reaches it" in result.stderr
    with pytest.warns(ribbed.RibbedWarning, match="population 'hidden'"):
        ribbed.NetworkModel(ribbed.load_scenario(path))


def test_the_base_scenario_is_valid(tmp_path: Path) -> None:
    """Guard for the table: each case breaks a scenario that is valid, as a mapping and as YAML."""
    path = tmp_path / "scenario.yaml"
    path.write_text(BASE_YAML, encoding="utf-8")
    scenario = ribbed.load_scenario(path)
    assert scenario == ribbed.load_scenario(BASE)
    ribbed.NetworkModel(scenario)
