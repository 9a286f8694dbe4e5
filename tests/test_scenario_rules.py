"""Scenario rules in one home: the backend as a tagged union per executor, one ``validate`` for
every rule beyond the fields' types, command-line overrides that switch executors, and a
scenarios layer that imports nothing above it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

import ribbed
from conftest import layered_scenario
from ribbed.log import open_log
from ribbed.model import check_estimators
from ribbed.scenarios.backend import BACKEND_KINDS, BatchedBackendSpec, RayBackendSpec, ReferenceBackendSpec
from ribbed.scenarios.overrides import apply_overrides
from ribbed.scenarios.schema import Scenario
from ribbed.scenarios.validation import validate

ROOT = Path(__file__).resolve().parents[1]
RAY_ONLY = {"shards", "partitions", "split_above", "address", "cpus_per_shard", "threads_per_shard", "placement",
            "shard_resources", "timeout_s", "object_store_mb"}

#: Every backend key of the single BackendSpec this version replaced, with its default, as a
#: run's scenario.yaml or a log's header of that version stated them.
FLAT_DUMP = {"kind": "reference", "device": "auto", "dtype": None, "sparse_threshold": 0.3, "shards": None,
             "partitions": 12, "split_above": 4096, "address": None, "cpus_per_shard": 1.0, "threads_per_shard": 1,
             "placement": "spread", "shard_resources": None, "timeout_s": 300.0, "object_store_mb": None,
             "threads": None}


def xor(backend=None) -> dict:
    data = layered_scenario([2, 4, 2], ["tanh", "identity"])
    if backend is not None:
        data["backend"] = backend
    return data


# --------------------------------------------------------------------------- the tagged union


def test_each_executor_has_only_its_own_keys() -> None:
    assert BACKEND_KINDS == ("reference", "batched", "ray")
    assert RAY_ONLY <= set(RayBackendSpec.model_fields)
    assert not RAY_ONLY & set(BatchedBackendSpec.model_fields)
    assert not RAY_ONLY & set(ReferenceBackendSpec.model_fields)
    assert "sparse_threshold" not in ReferenceBackendSpec.model_fields


@pytest.mark.parametrize("backend, member", [
    (None, ReferenceBackendSpec), ({}, ReferenceBackendSpec), ("batched", BatchedBackendSpec),
    ({"kind": "ray", "shards": 2}, RayBackendSpec), ({"dtype": "float64"}, ReferenceBackendSpec),
])
def test_the_kind_picks_the_spec(backend, member) -> None:
    scenario = ribbed.load_scenario(xor(backend))
    assert type(scenario.backend) is member


#: Built-ins that state their backend: stdp-pairs is a float64 CPU run (one neuron's steps are too small
#: for a GPU, and its test holds it to the float64 oracle of tests/song_abbott.py).
STATED_BACKENDS = {"stdp-pairs": {"device": "cpu", "dtype": "float64"}}


def test_builtins_resolve_as_before() -> None:
    for name in ribbed.builtin_scenarios():
        backend = ribbed.load_scenario(name).backend
        expected = {"kind": backend.kind, "device": "auto", "dtype": None, "threads": None,
                    **STATED_BACKENDS.get(name, {})}
        if backend.kind == "batched":
            expected["sparse_threshold"] = 0.3
        assert backend.model_dump() == expected, name


def test_the_resolved_scenario_lists_only_the_keys_of_its_executor(tmp_path: Path) -> None:
    dumped = yaml.safe_load(ribbed.scenario_to_yaml(ribbed.load_scenario("digits")))["backend"]
    assert list(dumped) == ["kind", "device", "dtype", "sparse_threshold", "threads"]
    ray = ribbed.load_scenario(xor({"kind": "ray", "shards": 3, "partitions": 6}))
    again = ribbed.load_scenario(yaml.safe_load(ribbed.scenario_to_yaml(ray)))
    assert again == ray and again.backend.shards == 3


def test_a_dump_of_the_single_backend_spec_still_loads_the_same() -> None:
    """Scenarios written by the previous version state every executor's keys at their defaults."""
    for kind, member in (("reference", ReferenceBackendSpec), ("batched", BatchedBackendSpec)):
        old = ribbed.load_scenario(xor({**FLAT_DUMP, "kind": kind}))
        assert type(old.backend) is member
        assert old == ribbed.load_scenario(xor({"kind": kind}))
    for path in sorted((ROOT / "tests" / "fixtures" / "logs").glob("*.log")):
        with open_log(path) as log:
            stored = log.header["scenario"]
        assert set(stored["backend"]) == set(FLAT_DUMP), "the fixture is a log of the previous version"
        scenario = ribbed.load_scenario(stored)
        assert scenario.backend.kind == stored["backend"]["kind"]
        assert set(scenario.backend.model_dump()) < set(FLAT_DUMP)


@pytest.mark.parametrize("backend, key, owners", [
    ({"kind": "batched", "shards": 2}, "shards", "the ray executor"),
    ({"kind": "reference", "placement": "pack"}, "placement", "the ray executor"),
    ({"kind": "reference", "sparse_threshold": 0.1}, "sparse_threshold", "the batched and ray executors"),
    ({"sparse_threshold": 0.1}, "sparse_threshold", "the batched and ray executors"),
])
def test_a_key_of_another_executor_is_refused_unless_it_is_that_executors_default(backend, key, owners) -> None:
    with pytest.raises(ribbed.ScenarioError) as info:
        ribbed.load_scenario(xor(backend))
    [problem] = info.value.problems
    assert problem.path == "backend"
    assert problem.message == f"'{key}' applies to {owners} only"
    assert problem.fix.endswith(f"or remove '{key}'")


def test_an_unknown_key_names_the_keys_of_that_executor() -> None:
    with pytest.raises(ribbed.ScenarioError) as info:
        ribbed.load_scenario(xor({"kind": "batched", "shardz": 2}))
    [problem] = info.value.problems
    assert problem.path == "backend.shardz"
    assert "unknown key 'shardz'" in problem.message
    assert problem.fix == "remove it, or use one of: device, dtype, kind, sparse_threshold, threads"


def test_the_json_schema_shows_which_keys_go_with_which_executor() -> None:
    document = Scenario.model_json_schema()
    definitions = document["$defs"]
    assert RAY_ONLY <= set(definitions["RayBackendSpec"]["properties"])
    assert not RAY_ONLY & set(definitions["BatchedBackendSpec"]["properties"])
    assert not RAY_ONLY & set(definitions["ReferenceBackendSpec"]["properties"])
    validator = jsonschema.Draft202012Validator(document)
    assert list(validator.iter_errors(xor({"kind": "ray", "shards": 2}))) == []
    assert list(validator.iter_errors(xor("batched"))) == []
    assert list(validator.iter_errors(xor({"dtype": "float64"}))) == []  # no kind: the reference executor
    assert list(validator.iter_errors(xor({"kind": "batched", "shards": 2})))
    assert list(validator.iter_errors(xor({"kind": "gpu"})))


# --------------------------------------------------------------------------- validate


def test_validate_names_every_problem_at_once() -> None:
    data = xor({"kind": "reference", "dtype": "float32", "device": "cuda"})
    scenario = ribbed.load_scenario(data)  # the machine's rules are not the schema's
    with pytest.raises(ribbed.ScenarioError) as info:
        validate(scenario, guides={"p1": object()})
    assert [p.path for p in info.value.problems] == ["backend.device", "backend.dtype", "populations[1].guide"]
    assert "computes on the CPU" in info.value.problems[0].message
    assert "float64 only" in info.value.problems[1].message
    assert "whose guide is not of kind sklearn" in info.value.problems[2].message


def test_validate_rechecks_a_scenario_changed_in_place() -> None:
    scenario = ribbed.load_scenario(xor())
    validate(scenario)
    scenario.populations[0].size = 3  # validated as a field, not against the task
    with pytest.raises(ribbed.ScenarioError) as info:
        validate(scenario)
    [problem] = info.value.problems
    assert problem.path == "populations[0].size" and "task 'xor' has 2 inputs" in problem.message
    with pytest.raises(ribbed.ScenarioError, match="task 'xor' has 2 inputs"):
        ribbed.NetworkModel(scenario)


def test_validate_refuses_a_gpu_torch_cannot_see() -> None:
    scenario = ribbed.load_scenario(xor({"kind": "batched", "device": "cuda:99"}))
    with pytest.raises(ribbed.ScenarioError) as info:
        validate(scenario)
    assert info.value.problems[0].path == "backend.device"
    assert "'cuda:99' was requested" in info.value.problems[0].message


def test_validate_refuses_ray_when_it_is_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = ribbed.load_scenario(xor({"kind": "ray"}))
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails as when it is not installed
    with pytest.raises(ribbed.ScenarioError) as info:
        validate(scenario)
    [problem] = info.value.problems
    assert problem.path == "backend.kind" and "needs Ray, which is not installed" in problem.message


def test_check_estimators_keeps_its_name_and_returns_the_estimators() -> None:
    from sklearn.neighbors import KNeighborsRegressor

    data = xor()
    data["populations"][1]["guide"] = "sklearn"
    scenario = ribbed.load_scenario(data)
    estimator = KNeighborsRegressor()
    assert check_estimators(scenario, {"p1": estimator}) == {"p1": estimator}
    with pytest.raises(ribbed.ScenarioError, match="no estimator was given"):
        check_estimators(scenario, {})


# --------------------------------------------------------------------------- overrides


def test_switching_to_the_reference_executor_leaves_the_files_device_behind() -> None:
    data = ribbed.load_scenario("digits").model_dump()
    data["backend"].update(device="cuda:3", sparse_threshold=0.1)
    switched = apply_overrides(ribbed.load_scenario(data), backend="reference")
    assert switched.backend == ReferenceBackendSpec()
    validate(switched)


def test_switching_to_ray_keeps_the_shared_keys_and_takes_the_shards() -> None:
    data = ribbed.load_scenario("digits").model_dump()
    data["backend"].update(sparse_threshold=0.1, threads=1)
    switched = apply_overrides(ribbed.load_scenario(data), backend="ray", shards=2)
    assert switched.backend == RayBackendSpec(kind="ray", sparse_threshold=0.1, threads=1, shards=2)
    back = apply_overrides(switched, backend="batched")
    assert back.backend == BatchedBackendSpec(kind="batched", sparse_threshold=0.1, threads=1)


def test_an_option_that_does_not_fit_the_executor_names_the_options() -> None:
    with pytest.raises(ribbed.ScenarioError) as info:
        apply_overrides(ribbed.load_scenario("xor"), backend="batched", shards=2)
    [problem] = info.value.problems
    assert problem.source == "xor (built-in) with --backend batched --shards 2"
    assert problem.message == "'shards' applies to the ray executor only"
    original = ribbed.load_scenario(xor())
    assert apply_overrides(original) is original


def test_the_cli_run_validates_before_it_writes(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ribbed.cli import app

    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", "xor", "--device", "cuda", "--ticks", "2", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "backend.device: the reference executor computes on the CPU" in result.output
    assert not out.exists()
    result = CliRunner().invoke(app, ["run", "digits", "--backend", "reference", "--ticks", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "on the reference executor (cpu, float64)" in result.stdout
    assert yaml.safe_load((out / "scenario.yaml").read_text())["backend"] == ReferenceBackendSpec().model_dump()


# --------------------------------------------------------------------------- layers


FORBIDDEN = ("ribbed.environment", "ribbed.agents", "ribbed.coupling", "ribbed.meta", "ribbed.scheduler",
             "ribbed.model", "ribbed.log", "ribbed.runner", "ribbed.cli", "ribbed.specialization")


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function (not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    guarded = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
               and "TYPE_CHECKING" in ast.unparse(block.test) for node in ast.walk(block)}
    names = set()
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios").glob("*.py")), ids=lambda p: p.name)
def test_the_scenarios_layer_imports_nothing_above_it(path: Path) -> None:
    above = sorted(name for name in imported_modules(path) if name.startswith(FORBIDDEN))
    assert above == []


def test_loading_and_validating_a_scenario_imports_no_higher_layer_nor_torch() -> None:
    code = ("import sys; from ribbed.scenarios.loader import load_scenario; "
            "from ribbed.scenarios.validation import validate; validate(load_scenario('xor')); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'ray', 'networkx', 'sklearn') "
            "or m.startswith(('ribbed.environment', 'ribbed.scheduler', 'ribbed.model', 'ribbed.agents'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_layer_test_sees_a_lazy_import(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import ribbed.model\n"
                      "def f():\n    from ribbed.scheduler.base import make_executor\n", encoding="utf-8")
    assert imported_modules(module) == {"typing", "ribbed.scheduler.base"}

