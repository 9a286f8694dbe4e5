"""Sizes (issue 14): a scenario's run is estimated before anything is built, and what cannot fit is
refused in well under 5 s, in bounded memory, with the file, the field, the estimate and the fix.

- the estimate agrees with what a build makes: neurons and synapses exactly where the rule is
  deterministic, the batched executor's storage layout, and bytes within a factor 2 of a real
  run's peak resident memory (measured in a child process);
- huge networks (a complete graph on 200,000 neurons, 3 x 10^8 neurons with fixed_in_degree, a
  batch of 10^9) are refused by ``ribbed validate``, ``ribbed run``, ``ribbed replay`` and the
  Python API without being built (the subprocesses run under an address-space cap, so a build
  that starts anyway fails fast instead of taking the machine);
- integers that passed validation and crashed the run (a seed above 2^64 - 1, ticks above 2^63 - 1,
  a thread count of 10^5...) are refused at their field;
- networkx generators are checked against their signature and, where ribbed knows their formula,
  against the node count the projection needs, before they run;
- the memory probe reads /proc/meminfo and the cgroup limits (v1 and v2), and ``--max-memory``
  sets the bound.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import ribbed
import ribbed.resources as resources
from ribbed.cli import app
from ribbed.environment.guidance import n_context_columns, n_guide_features
from ribbed.environment.network import build_network
from ribbed.errors import RibbedError, ScenarioError
from ribbed.log.format import DIGEST_SEED, frame, pack_body, record_body
from ribbed.log.reader import LogReader
from ribbed.resources import MemoryLimit, available_memory, cgroup_memory_room, meminfo_available
from ribbed.scenarios.graphs import GraphShape, bound_arguments, graph_shape
from ribbed.scenarios.size import (
    RUNTIME_BYTES,
    estimate_size,
    format_bytes,
    parse_size,
    storage_layout,
)
from ribbed.scheduler.batched.projection_tensors import choose_layout

GIB = 2**30
BUILTINS = sorted(ribbed.builtin_scenarios())
#: Every refusal must come back in less than this (a bound, not a benchmark: they take about 0.5 s).
REFUSAL_SECONDS = 5.0


def small(**changes) -> dict:
    """A valid xor scenario: in (2) -> hidden (4) -> out (2); ``changes`` replace top-level sections."""
    data = {"name": "small", "seed": 0, "task": {"kind": "xor"},
            "populations": [{"name": "in", "size": 2, "role": "input"}, {"name": "hidden", "size": 4},
                            {"name": "out", "size": 2, "role": "output", "activation": "identity"}],
            "projections": [{"pre": "in", "post": "hidden"}, {"pre": "hidden", "post": "out"}],
            "run": {"ticks": 4, "eval_every": 2, "batch_size": 8}}
    data.update(changes)
    return data


def with_hidden(size: int, connectivity, *, backend: str = "batched", extra: dict | None = None) -> dict:
    """in (2) -> hidden (``size``, onto itself by ``connectivity``) -> out (2)."""
    data = small(backend={"kind": backend})
    data["populations"][1]["size"] = size
    data["projections"].insert(1, {"pre": "hidden", "post": "hidden", "connectivity": connectivity})
    if extra:
        data.update(extra)
    return data


def write(folder: Path, data: dict, name: str = "scenario.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def ribbed_script() -> list[str]:
    script = Path(sys.executable).with_name("ribbed")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "ribbed.cli"]


#: Runs a command with its address space capped, then prints its exit code, its largest
#: resident size (ru_maxrss of the children, KiB) and its output as JSON: a refusal that built
#: the network anyway would fail on the cap (or show in the RSS) instead of taking the machine.
_CAPPED = """
import json, resource, subprocess, sys
cap = int(sys.argv[1])
def limit():
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
done = subprocess.run(sys.argv[2:], capture_output=True, text=True, preexec_fn=limit, timeout=120)
print(json.dumps({"rc": done.returncode, "maxrss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
                  "stdout": done.stdout, "stderr": done.stderr}))
"""


def capped(*args: str, cap: int = 6 * GIB, cwd: Path | None = None) -> tuple[dict, float]:
    """Run ``ribbed ARGS`` under an address-space cap; its result and its wall time in seconds."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _CAPPED, str(cap), *ribbed_script(), *args], capture_output=True,
                          text=True, timeout=180, cwd=cwd, env=env)
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), seconds


def assert_refused(result: dict, seconds: float, path: Path, field: str, *words: str) -> None:
    """Exit code 2, one clean error naming the file and the field, in bounded time and memory."""
    text = result["stderr"]
    assert result["rc"] == 2, result
    assert "Traceback" not in text and "MemoryError" not in text, text
    assert text.startswith("error: "), text
    assert re.search(rf"^error: {re.escape(str(path))}(:\d+)?: {re.escape(field)}: ", text), text
    for word in words:
        assert word in text, f"{word!r} missing from:\n{text}"
    assert seconds < REFUSAL_SECONDS, f"the refusal took {seconds:.1f} s"
    assert result["maxrss"] < 1 * GIB, f"the refusal grew to {format_bytes(result['maxrss'])}"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


# --------------------------------------------------------------------------- the estimate against a build


@pytest.mark.parametrize("name", BUILTINS)
def test_the_estimate_counts_what_the_build_makes_for_every_builtin(name: str) -> None:
    scenario = ribbed.load_scenario(name)
    estimate, network = estimate_size(scenario), build_network(scenario)
    assert estimate.exact
    assert (estimate.neurons, estimate.synapses) == (network.n_neurons, network.n_synapses)
    assert [p.synapses for p in estimate.projections] == [p.n_synapses for p in network.projections]
    threshold = getattr(scenario.backend, "sparse_threshold", 0.3)
    assert [p.layout for p in estimate.projections] == [
        choose_layout(info, spec.storage, threshold) for info, spec in zip(network.projections, scenario.projections)]


RULES = {
    "all_to_all onto itself": ({"rule": "all_to_all"}, 30),
    "all_to_all without self-connections": ({"rule": "all_to_all", "allow_self_connections": False}, 30),
    "one_to_one": ({"rule": "one_to_one"}, 30),
    "fixed_in_degree": ({"rule": "fixed_in_degree", "k": 7}, 40),
    "fixed_in_degree without self-connections": ({"rule": "fixed_in_degree", "k": 29, "allow_self_connections": False}, 30),
    "edges": ({"rule": "edges", "edges": [[0, 1], [1, 0], [3, 3], [5, 2]]}, 6),
    "fixed_probability 1": ({"rule": "fixed_probability", "p": 1.0, "allow_self_connections": False}, 20),
    "complete_graph": ({"rule": "networkx", "generator": "complete_graph"}, 25),
    "watts_strogatz_graph": ({"rule": "networkx", "generator": "watts_strogatz_graph", "params": {"k": 6, "p": 0.3}}, 50),
    "watts_strogatz_graph, odd k": ({"rule": "networkx", "generator": "watts_strogatz_graph", "params": {"k": 5, "p": 0.5}}, 50),
    "watts_strogatz_graph, k = n": ({"rule": "networkx", "generator": "watts_strogatz_graph", "params": {"k": 12, "p": 0.1}}, 12),
    "connected_watts_strogatz_graph": ({"rule": "networkx", "generator": "connected_watts_strogatz_graph",
                                        "params": {"k": 4, "p": 0.1}}, 40),
    "barabasi_albert_graph": ({"rule": "networkx", "generator": "barabasi_albert_graph", "params": {"m": 3}}, 60),
    "gnm_random_graph": ({"rule": "networkx", "generator": "gnm_random_graph", "params": {"m": 70}}, 30),
    "gnm_random_graph, directed": ({"rule": "networkx", "generator": "gnm_random_graph",
                                    "params": {"m": 70, "directed": True}}, 30),
    "gnm_random_graph, more edges than pairs": ({"rule": "networkx", "generator": "dense_gnm_random_graph",
                                                 "params": {"m": 10_000}}, 20),
    "path_graph": ({"rule": "networkx", "generator": "path_graph"}, 30),
    "gn_graph": ({"rule": "networkx", "generator": "gn_graph"}, 30),
    "erdos_renyi_graph, p = 1": ({"rule": "networkx", "generator": "erdos_renyi_graph", "params": {"p": 1.0}}, 15),
}


@pytest.mark.parametrize("rule, size", RULES.values(), ids=RULES.keys())
def test_deterministic_rules_are_counted_exactly(rule: dict, size: int) -> None:
    """Exact where the rule makes a known number of synapses, whatever its seed draws."""
    for seed in (0, 1):
        scenario = ribbed.load_scenario({**with_hidden(size, rule), "seed": seed})
        estimate, network = estimate_size(scenario), build_network(scenario)
        assert estimate.exact, estimate.projections[1]
        assert [p.synapses for p in estimate.projections] == [p.n_synapses for p in network.projections]


@pytest.mark.parametrize("generator, params, between", [
    ("fixed_probability", {"p": 0.2}, False),
    ("erdos_renyi_graph", {"p": 0.1}, False),
    ("newman_watts_strogatz_graph", {"k": 4, "p": 0.2}, False),
    ("powerlaw_cluster_graph", {"m": 3, "p": 0.3}, False),
    ("random_geometric_graph", {"radius": 0.1}, False),
    ("bipartite.random_graph", {"p": 0.3}, True),
])
def test_random_rules_are_estimated_near_what_they_draw(generator: str, params: dict, between: bool) -> None:
    """An expectation, not a count: within 15% of the draws of three seeds (and at most the bound,
    for the geometric graph, whose edge effects only remove pairs)."""
    rule = ({"rule": "fixed_probability", **params} if generator == "fixed_probability"
            else {"rule": "networkx", "generator": generator, "params": params})
    data = with_hidden(400, rule)
    if between:
        data["populations"].insert(2, {"name": "second", "size": 300})
        data["projections"][1] = {"pre": "hidden", "post": "second", "connectivity": rule}
        data["projections"][2] = {"pre": "second", "post": "out"}
    for seed in (0, 1, 2):
        scenario = ribbed.load_scenario({**data, "seed": seed})
        expected = estimate_size(scenario).projections[1]
        drawn = build_network(scenario).projections[1].n_synapses
        assert not expected.exact
        if generator == "random_geometric_graph":
            assert 0.5 * expected.synapses <= drawn <= expected.synapses
        else:
            assert abs(drawn - expected.synapses) <= 0.15 * expected.synapses, (drawn, expected.synapses)


def test_the_guides_feature_width_is_the_environments() -> None:
    """The estimate sizes guide tables with the width environment.guidance defines (one formula)."""
    scenario = ribbed.load_scenario("digits-guide-direct")
    n_out = scenario.populations[-1].size
    estimate = estimate_size(scenario)
    part = next(p for p in estimate.parts if p.path == "populations[1].guide")
    width = n_guide_features(n_context_columns(n_out))
    assert width == 3 + 2 * (2 * n_out + 1)
    assert "64 mlp guides" in part.what and part.bytes > 64 * 4 * width * 16 * 4


def test_dense_storage_is_sized_by_its_matrix_and_named_in_the_fix() -> None:
    rule = {"rule": "fixed_probability", "p": 0.01}
    sparse = estimate_size(ribbed.load_scenario(with_hidden(3000, rule)))
    dense_data = with_hidden(3000, rule)
    dense_data["projections"][1]["storage"] = "dense"
    dense = estimate_size(ribbed.load_scenario(dense_data))
    assert (sparse.projections[1].layout, dense.projections[1].layout) == ("sparse", "dense")
    part = next(p for p in dense.parts if p.path == "projections[1].connectivity")
    assert part.bytes > 3000 * 3000 * 4 * 3 and "dense 3,000 x 3,000 matrix" in part.what
    assert "storage: sparse" in part.fix
    assert dense.bytes - sparse.bytes > 3000 * 3000 * 4 * 2.5  # three matrices instead of 90,000 values


def test_an_explicit_gpu_counts_the_executors_tensors_apart() -> None:
    data = with_hidden(20_000, {"rule": "fixed_in_degree", "k": 50})
    host = estimate_size(ribbed.load_scenario(data))
    data["backend"] = {"kind": "batched", "device": "cuda"}
    gpu = estimate_size(ribbed.load_scenario(data))
    assert host.device_bytes == 0 and gpu.device_bytes > 20_000 * 50 * 16
    assert gpu.bytes < host.bytes and gpu.bytes + gpu.device_bytes == host.bytes
    assert "on the GPU" in gpu.describe() and "on the GPU" not in host.describe()


def test_the_storage_rule_is_the_executors() -> None:
    assert storage_layout("auto", 0.3, 100, 100, 10_000) == "dense"
    assert storage_layout("auto", 0.3, 100, 100, 2_000) == "sparse"
    assert storage_layout("auto", 0.3, 10_000, 10_000, 10**8) == "sparse"  # above DENSE_LIMIT cells
    assert storage_layout("dense", 0.3, 10_000, 10_000, 10) == "dense"


#: Real peak resident memory of a run, in a child process: the main process's ru_maxrss.
_PEAK = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
assert done.returncode == 0, done.stderr
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
"""


@pytest.mark.parametrize("name, data", [
    ("xor", None), ("digits", None), ("digits-guide-tree", None),
    ("a 20,000-neuron sparse network", with_hidden(20_000, {"rule": "fixed_in_degree", "k": 20},
                                                    extra={"run": {"ticks": 4, "eval_every": 2, "batch_size": 32}})),
])
def test_the_estimate_is_within_a_factor_2_of_a_real_runs_peak(name: str, data: dict | None, tmp_path: Path) -> None:
    """What ``ribbed run`` really takes at its peak (its main process; the log's writer is a few
    tens of MiB more) against the estimate: between half and twice."""
    target = str(write(tmp_path, data)) if data is not None else name
    scenario = ribbed.load_scenario(target)
    estimate = estimate_size(scenario).bytes
    ticks = ["--ticks", "40"] if data is None else []
    done = subprocess.run([sys.executable, "-c", _PEAK, *ribbed_script(), "run", target, *ticks, "--out",
                           str(tmp_path / "run")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    peak = int(done.stdout)
    assert 0.5 <= estimate / peak <= 2.0, f"{name}: estimate {format_bytes(estimate)}, peak {format_bytes(peak)}"


# --------------------------------------------------------------------------- refusals by size


def complete_graph(size: int = 200_000) -> dict:
    return with_hidden(size, {"rule": "networkx", "generator": "complete_graph"})


def fixed_in_degree(size: int = 300_000_000) -> dict:
    data = small(backend={"kind": "batched"})
    data["populations"][1]["size"] = size
    data["projections"] = [{"pre": "in", "post": "hidden", "connectivity": {"rule": "fixed_in_degree", "k": 1}},
                           {"pre": "hidden", "post": "out", "connectivity": {"rule": "fixed_in_degree", "k": 10}}]
    return data


def huge_batch() -> dict:
    return small(run={"ticks": 4, "eval_every": 2, "batch_size": 1_000_000_000})


HUGE = {
    "complete_graph on 200,000 neurons": (complete_graph, "projections[1].connectivity",
                                          ("TiB", "19,999,900,000 edges", "sparser connectivity")),
    "3e8 neurons with fixed_in_degree": (fixed_in_degree, "run.eval_every",
                                         ("300,000,004 neurons", "smaller populations")),
    "a batch of 1e9": (huge_batch, "run.batch_size", ("smaller run.batch_size",)),
}


@pytest.mark.parametrize("make, field, words", HUGE.values(), ids=HUGE.keys())
@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_network_too_big_for_the_machine_is_refused_before_it_is_built(make, field, words, command,
                                                                          tmp_path: Path) -> None:
    path = write(tmp_path, make())
    out = tmp_path / "run"
    args = [command, str(path)] + (["--out", str(out)] if command == "run" else [])
    result, seconds = capped(*args, cwd=tmp_path)
    assert_refused(result, seconds, path, field, "the run would need about", "more than the", "--max-memory", *words)
    assert result["stdout"] == ""
    assert not out.exists(), "a refused run left a run directory"


def test_max_memory_sets_the_bound_both_ways(tmp_path: Path, runner: CliRunner) -> None:
    """Above the machine: a bound the user vouches for is taken.  Below the runtime: refused with
    what a run needs at least, at no field."""
    result = runner.invoke(app, ["validate", "xor", "--max-memory", "100M"])
    assert result.exit_code == 2, result.output
    assert "more than the 100 MiB set by --max-memory 100M" in result.stderr
    assert "the Python runtime and its libraries alone take" in result.stderr
    assert result.stderr.startswith("error: xor (built-in): the run would need")
    big = write(tmp_path, complete_graph(20_000))  # about 98 GiB: more than this machine, less than 1 PiB
    refused = runner.invoke(app, ["validate", str(big), "--max-memory", "4G"])
    assert refused.exit_code == 2 and "more than the 4 GiB set by --max-memory 4G" in refused.stderr
    limit = available_memory()
    assert limit is not None and estimate_size(ribbed.load_scenario(big)).bytes > limit.bytes
    # With the bound raised the estimate passes; validate then builds (not done here: it is big).
    from ribbed.scenarios.validation import validate

    validate(ribbed.load_scenario(big), max_memory="1P")
    with pytest.raises(ScenarioError):
        validate(ribbed.load_scenario(big))


@pytest.mark.parametrize("text", ["8X", "-1G", "0", "G", "1e9"])
def test_a_max_memory_that_is_not_a_size_is_an_error_naming_the_option(text: str, runner: CliRunner) -> None:
    for command in (["validate", "xor"], ["run", "xor", "--ticks", "1"], ["replay", "no.log", "--verify"]):
        result = runner.invoke(app, [*command, f"--max-memory={text}"])
        assert result.exit_code == 2, result.output
        assert f"error: ribbed {command[0]}: --max-memory: " in result.stderr and "512M, 8G" in result.stderr


def test_the_python_api_refuses_the_same_way() -> None:
    big = ribbed.load_scenario(complete_graph())
    for call in (lambda: ribbed.run(big, write=False), lambda: ribbed.NetworkModel(big),
                 lambda: ribbed.run(big, write=False, max_memory="8G")):
        start = time.perf_counter()
        with pytest.raises(ScenarioError) as info:
            call()
        assert time.perf_counter() - start < REFUSAL_SECONDS
        problem = info.value.problems[0]
        assert problem.path == "projections[1].connectivity" and "TiB" in problem.message
        assert "max_memory=" in problem.fix
    with pytest.raises(RibbedError, match="is not a size"):
        ribbed.run(small(), write=False, max_memory="lots")
    result = ribbed.run(small(), write=False, max_memory=2 * GIB)  # a small run passes a bound in bytes
    assert result.model.tick == 4
    with pytest.raises(ScenarioError, match="runtime and its libraries alone"):
        ribbed.NetworkModel(small(), max_memory="200M")


def test_a_log_record_beyond_the_formats_4_gib_is_refused_even_under_a_large_bound(runner: CliRunner,
                                                                                  tmp_path: Path) -> None:
    path = write(tmp_path, huge_batch())
    result = runner.invoke(app, ["validate", str(path), "--max-memory", "100P"])
    assert result.exit_code == 2, result.output
    assert f"{path}: run.batch_size: the message log's snapshot records would hold about" in result.stderr
    assert "more than the 4 GiB a record can hold" in result.stderr and "log.level: off" in result.stderr
    assert "the run would need" not in result.stderr
    off = huge_batch()  # without a log, a bound the user vouches for is all there is
    off["log"] = {"level": "off"}
    assert runner.invoke(app, ["validate", str(write(tmp_path, off, "off.yaml")), "--max-memory", "100P"]).exit_code == 0
    assert runner.invoke(app, ["validate", str(write(tmp_path, off, "off.yaml"))]).exit_code == 2


def forge_header(log: Path, target: Path, change) -> Path:
    """A copy of ``log`` whose header's scenario ``change`` edits, with every CRC and the digest
    chain recomputed (the chain has no key): a header can claim anything."""
    with LogReader(log) as reader:
        records = [reader.read(ref) for ref in reader.refs]
    previous, chunks = DIGEST_SEED, []
    for record in records:
        data = record.data
        if record.type == "header":
            body = dict(record.body)
            change(body["scenario"])
            data = pack_body(record_body("header", record.tick, body))
        prefix, previous = frame(record.type, record.tick, data, previous)
        chunks += [prefix, data]
    target.write_bytes(b"".join(chunks))
    return target


def test_replay_refuses_a_header_scenario_too_big_to_rebuild(tmp_path: Path) -> None:
    """A header scenario of 2e9 neurons: replay --verify and --until refuse it before rebuilding."""
    ribbed.run(small(), out=tmp_path / "run")
    forged = forge_header(tmp_path / "run" / "run.log", tmp_path / "forged.log",
                          lambda scenario: scenario["populations"][1].update(size=2_000_000_000))
    with LogReader(forged) as reader:
        assert reader.header["scenario"]["populations"][1]["size"] == 2_000_000_000  # it reads as a valid log
    for args in (["replay", str(forged), "--verify"], ["replay", str(forged), "--until", "2", "--out",
                                                        str(tmp_path / "state")]):
        result, seconds = capped(*args, cwd=tmp_path)
        assert_refused(result, seconds, Path(f"{forged} (header)"), "populations[1].size",
                       "2,000,000,004 neurons", "--max-memory")
    assert not (tmp_path / "state").exists()
    from ribbed.log.replay import model_at, verify

    for call in (lambda: verify(forged), lambda: model_at(forged, 2)):
        with pytest.raises(ScenarioError) as info:
            call()
        assert info.value.problems[0].path == "populations[1].size"
    assert verify(tmp_path / "run" / "run.log").ok  # the real one still verifies


def test_validate_prints_the_estimate_of_every_builtin(runner: CliRunner) -> None:
    result = runner.invoke(app, ["validate", *BUILTINS])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 2 * len(BUILTINS)
    for name, ok, estimate in zip(BUILTINS, lines[::2], lines[1::2]):
        scenario = ribbed.load_scenario(name)
        expected = estimate_size(scenario)
        assert ok.startswith(f"ok: {name} (built-in): '{name}'")
        assert f" {expected.neurons} neurons, {expected.synapses} synapses" in ok
        assert estimate.startswith(f"  estimate: {expected.neurons:,} neurons, {expected.synapses:,} synapses, about ")
        assert "MiB at its peak; the limit is " in estimate and "available on this machine" in estimate
        assert RUNTIME_BYTES <= expected.bytes < 2 * RUNTIME_BYTES


@pytest.mark.parametrize("name", BUILTINS)
def test_every_builtin_still_runs(name: str) -> None:
    result = ribbed.run(name, write=False, ticks=3)
    assert result.model.tick == 3


# --------------------------------------------------------------------------- integers that crashed the run

INTEGERS = {
    "seed above 2^64 - 1": ("seed", 2**64, "less than or equal to 18446744073709551615"),
    "ticks above 2^63 - 1": ("run.ticks", 2**63, "less than or equal to 9223372036854775807"),
    "eval_every above 2^63 - 1": ("run.eval_every", 2**64, "less than or equal to 9223372036854775807"),
    "batch_size above 2^63 - 1": ("run.batch_size", 2**70, "less than or equal to 9223372036854775807"),
    "backward_every above 2^63 - 1": ("schedule.backward_every", 2**64, "less than or equal to 9223372036854775807"),
    "snapshot_every above 2^63 - 1": ("log.snapshot_every", 2**64, "less than or equal to 9223372036854775807"),
    "n_samples above 2^63 - 1": ("task.n_samples", 2**64, "less than or equal to 9223372036854775807"),
    "a population above 2^31 - 1": ("populations[1].size", 2**31, "less than or equal to 2147483647"),
    "fixed_in_degree k above 2^31 - 1": ("projections[0].connectivity.k", 2**40, "less than or equal to 2147483647"),
    "fixed_in_degree k above the presynaptic size": ("projections[0].connectivity.k", 3, "k=3 exceeds the 2 available"),
    "an edge index above 2^31 - 2": ("projections[0].connectivity.edges[0][0]", 2**40, "less than 2147483647"),
    "a networkx parameter beyond 64 bits": ("projections[1].connectivity.params", 2**64,
                                            "params 'k' is 18446744073709551616, beyond a 64-bit integer"),
    "threads above 1024": ("backend.threads", 100_000, "less than or equal to 1024"),
    "ray partitions above 2^20": ("backend.partitions", 2**21, "less than or equal to 1048576"),
    "ray split_above above 2^31 - 1": ("backend.split_above", 2**40, "less than or equal to 2147483647"),
    "a tree guide's refit_every above 2^63 - 1": ("populations[1].guide.refit_every", 2**64, "less than or equal to"),
    "a hash coupling's rehash_every above 2^63 - 1": ("populations[1].coupling.rehash_every", 2**64, "less than or equal to"),
}


def _set_integer(field: str, value: int) -> dict:
    data = small()
    if field.startswith("projections[0].connectivity"):
        key = field.rsplit(".", 2)[-1] if "edges" not in field else "edges"
        data["projections"][0]["connectivity"] = ({"rule": "edges", "edges": [[value, 0]]} if key.startswith("edges")
                                                  else {"rule": "fixed_in_degree", "k": value})
        return data
    if field.startswith("projections[1].connectivity.params"):
        data["projections"].insert(1, {"pre": "hidden", "post": "hidden", "connectivity": {
            "rule": "networkx", "generator": "watts_strogatz_graph", "params": {"k": value, "p": 0.1}}})
        return data
    if field.startswith("backend"):
        data["backend"] = {"kind": "ray" if "partitions" in field or "split" in field else "batched",
                           field.split(".")[1]: value}
        return data
    if field.startswith("populations[1].guide"):
        data["populations"][1]["guide"] = {"kind": "tree", "refit_every": value}
        return data
    if field.startswith("populations[1].coupling"):
        data["populations"][1].update(guide="linear", coupling={"kind": "hash", "rehash_every": value})
        return data
    if field == "task.n_samples":
        data["task"] = {"kind": "xor", "n_samples": value}
        return data
    *parents, last = field.replace("[1]", ".1").split(".")
    target = data
    for part in parents:
        target = target[int(part)] if part.isdigit() else target.setdefault(part, {})
    target[last] = value
    return data


@pytest.mark.parametrize("field, value, words", INTEGERS.values(), ids=INTEGERS.keys())
def test_an_integer_that_crashed_the_run_is_refused_at_its_field(field: str, value: int, words: str,
                                                                 tmp_path: Path) -> None:
    path = write(tmp_path, _set_integer(field, value))
    start = time.perf_counter()
    with pytest.raises(ScenarioError) as info:
        ribbed.load_scenario(path)
    assert time.perf_counter() - start < REFUSAL_SECONDS
    problem = info.value.problems[0]
    assert problem.path == field, info.value
    assert words in problem.message and problem.fix and problem.line


def test_the_largest_values_still_load_and_the_largest_seed_runs(tmp_path: Path) -> None:
    data = small(seed=2**64 - 1)
    data["run"] = {"ticks": 4, "eval_every": 2, "batch_size": 8}
    result = ribbed.run(data, out=tmp_path / "run")
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["seed"] == 2**64 - 1
    assert result.model.tick == 4
    long = small(run={"ticks": 2**63 - 1, "eval_every": 2**63 - 1, "batch_size": 1}, schedule={"backward_every": 2**63 - 1})
    estimate_size(ribbed.load_scenario(long))  # loads, and two evaluations keep it small
    forever = small(run={"ticks": 2**63 - 1, "eval_every": 100, "batch_size": 1})
    with pytest.raises(ScenarioError) as info:  # a row per neuron at each of 9e16 evaluations
        ribbed.NetworkModel(forever)
    assert info.value.problems[0].path == "run.eval_every"


# --------------------------------------------------------------------------- networkx calls


GENERATORS = {
    "watts_strogatz_graph between two populations": (
        "watts_strogatz_graph", {"k": 4, "p": 0.1}, True, "params",
        ("watts_strogatz_graph(n_pre=10, n_post=6, **params)", "argument 'k' gets n_post = 6", "sets it again",
         "bipartite.random_graph")),
    "erdos_renyi_graph between two populations": (
        "erdos_renyi_graph", {}, True, "generator",
        ("erdos_renyi_graph(n_pre=10, n_post=6, **params)", "graph of 10 nodes", "n_pre + n_post = 16",
         "bipartite generator")),
    "barabasi_albert_graph between two populations": (
        "barabasi_albert_graph", {"m": 2}, True, "params", ("argument 'm' gets n_post = 6",)),
    "a parameter the generator does not have": (
        "watts_strogatz_graph", {"k": 4, "p": 0.1, "kk": 3}, False, "params",
        ("watts_strogatz_graph has no parameter 'kk'", "remove 'kk' from params", "k, p")),
    "a missing parameter": (
        "watts_strogatz_graph", {"k": 4}, False, "params", ("needs 'p'", "add 'p: ...' to params")),
    "the size given twice": (
        "complete_graph", {"n": 10}, False, "params", ("argument 'n' gets n = 10", "remove 'n' from params")),
    "random_regular_graph's degree set in params": (
        "random_regular_graph", {"d": 3}, False, "params", ("argument 'd' gets n = 10",
                                                            "whose first argument is the number of nodes")),
    "hypercube_graph (2^n nodes)": (
        "hypercube_graph", {}, False, "generator", ("hypercube_graph(n=10, **params) makes a graph of 1,024 nodes",
                                                    "one node per neuron")),
    "star_graph (n + 1 nodes)": (
        "star_graph", {}, False, "generator", ("makes a graph of 11 nodes", "population has 10 neurons")),
    "a bipartite generator onto itself": (
        "bipartite.random_graph", {"p": 0.5}, False, "params", ("needs 'm'",)),
    "a bipartite generator with a size too many": (
        "complete_bipartite_graph", {"n2": 4}, True, "params", ("argument 'n2' gets n_post = 6",)),
    "a generator taking one size between two populations": (
        "hypercube_graph", {}, True, "generator", ("takes 1 size, not 2", "bipartite generator")),
}


@pytest.mark.parametrize("generator, params, between, key, words", GENERATORS.values(), ids=GENERATORS.keys())
def test_a_generator_call_that_cannot_work_is_refused_before_it_runs(generator, params, between, key, words,
                                                                     tmp_path: Path) -> None:
    data = small()
    data["populations"][1]["size"] = 10
    rule = {"rule": "networkx", "generator": generator, "params": params}
    if between:
        data["populations"].insert(2, {"name": "second", "size": 6})
        data["projections"] = [{"pre": "in", "post": "hidden"}, {"pre": "hidden", "post": "second", "connectivity": rule},
                               {"pre": "second", "post": "out"}]
    else:
        data["projections"].insert(1, {"pre": "hidden", "post": "hidden", "connectivity": rule})
    path = write(tmp_path, data)
    with pytest.raises(ScenarioError) as info:
        ribbed.load_scenario(path)
    [problem] = info.value.problems
    assert problem.path == f"projections[1].connectivity.{key}", problem
    assert problem.line is not None
    text = str(info.value)
    for word in words:
        assert word in text, f"{word!r} missing from:\n{text}"
    assert "got multiple values" not in text


def test_the_generators_that_work_between_populations_still_do() -> None:
    for generator, params in (("bipartite.random_graph", {"p": 0.5}), ("complete_bipartite_graph", {}),
                              ("bipartite.gnmk_random_graph", {"k": 20})):
        data = small()
        data["populations"].insert(2, {"name": "second", "size": 6})
        data["projections"] = [{"pre": "in", "post": "hidden"},
                               {"pre": "hidden", "post": "second",
                                "connectivity": {"rule": "networkx", "generator": generator, "params": params}},
                               {"pre": "second", "post": "out"}]
        scenario = ribbed.load_scenario(data)
        network = build_network(scenario)
        estimate = estimate_size(scenario)
        assert network.projections[1].n_synapses > 0
        if generator != "bipartite.random_graph":
            assert estimate.projections[1].synapses == network.projections[1].n_synapses


def test_graph_shapes_from_arguments() -> None:
    args = bound_arguments("watts_strogatz_graph", (1000,), {"k": 10, "p": 0.5})
    assert args["n"] == 1000 and args["k"] == 10 and args["seed"] is None
    assert graph_shape("watts_strogatz_graph", (1000,), args) == GraphShape(1000, 5000, 10_000, True)
    complete = graph_shape("complete_graph", (200_000,), bound_arguments("complete_graph", (200_000,), {}))
    assert complete.edges == 200_000 * 199_999 // 2 and complete.synapses == 2 * complete.edges
    unknown = graph_shape("random_lobster", (100,), bound_arguments("random_lobster", (100,), {"p1": 0.5, "p2": 0.5}))
    assert (unknown.known, unknown.nodes, unknown.synapses) == (False, None, 100 * 100)
    huge = graph_shape("hypercube_graph", (10,), {"n": 10**9})
    assert huge.nodes == 2**63  # capped: no 2^(10^9) computed
    from ribbed.scenarios.graphs import known_generators, networkx_generator

    for name in known_generators():  # every formula is for a generator networkx has
        assert callable(networkx_generator(name)), name


def test_an_unknown_generator_is_bounded_by_all_pairs_and_refused_when_that_cannot_fit(tmp_path: Path) -> None:
    data = with_hidden(300_000, {"rule": "networkx", "generator": "random_lobster", "params": {"p1": 0.5, "p2": 0.5}})
    start = time.perf_counter()
    with pytest.raises(ScenarioError) as info:
        ribbed.NetworkModel(ribbed.load_scenario(data))
    assert time.perf_counter() - start < REFUSAL_SECONDS
    problem = info.value.problems[0]
    assert problem.path == "projections[1].connectivity"
    assert "no size formula for random_lobster" in problem.message and "known_generators()" in problem.fix


# --------------------------------------------------------------------------- reading sizes and memory


@pytest.mark.parametrize("text, value", [("8G", 8 * GIB), ("512M", 512 * 2**20), ("1.5GiB", 3 * GIB // 2),
                                         ("100000", 100_000), ("2t", 2 * 2**40), ("64KB", 65536), (4096, 4096),
                                         (" 3 G ", 3 * GIB)])
def test_parse_size(text, value) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "G", "8X", "-1G", "0", "1e9", "8 GB extra", True, 0])
def test_parse_size_refuses_what_is_not_a_positive_size(text) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_format_bytes() -> None:
    assert [format_bytes(n) for n in (512, 1536, 430 * 2**20, 29.8 * GIB, 41.2 * 2**40)] == \
        ["512 B", "1.5 KiB", "430 MiB", "29.8 GiB", "41.2 TiB"]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_meminfo_available(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    _write(meminfo, "MemTotal:       24683652 kB\nMemFree:  100 kB\nMemAvailable:   2048 kB\n")
    assert meminfo_available(meminfo) == 2048 * 1024
    _write(meminfo, "MemTotal:       24683652 kB\n")  # an old kernel
    assert meminfo_available(meminfo) is None
    assert meminfo_available(tmp_path / "missing") is None


def test_cgroup_v2_memory_room_takes_the_tightest_ancestor(tmp_path: Path) -> None:
    membership = tmp_path / "proc-cgroup"
    _write(membership, "0::/job.slice/run.scope\n")
    assert cgroup_memory_room(tmp_path, membership) is None  # no memory.max anywhere
    _write(tmp_path / "job.slice" / "memory.max", "max\n")
    _write(tmp_path / "job.slice" / "run.scope" / "memory.max", "max\n")
    assert cgroup_memory_room(tmp_path, membership) is None  # unlimited
    _write(tmp_path / "job.slice" / "memory.max", f"{4 * GIB}\n")
    _write(tmp_path / "job.slice" / "memory.current", f"{3 * GIB}\n")
    assert cgroup_memory_room(tmp_path, membership) == GIB
    _write(tmp_path / "job.slice" / "run.scope" / "memory.max", f"{GIB}\n")
    _write(tmp_path / "job.slice" / "run.scope" / "memory.current", f"{GIB // 4}\n")
    assert cgroup_memory_room(tmp_path, membership) == 3 * GIB // 4


def test_cgroup_v1_memory_room(tmp_path: Path) -> None:
    membership = tmp_path / "proc-cgroup"
    _write(membership, "4:memory:/process_api/abc\n1:cpu:/\n")
    folder = tmp_path / "memory" / "process_api" / "abc"
    _write(folder / "memory.limit_in_bytes", "9223372036854771712\n")  # the kernel's "no limit"
    _write(folder / "memory.usage_in_bytes", "1839271936\n")
    assert cgroup_memory_room(tmp_path, membership) is None
    _write(folder / "memory.limit_in_bytes", f"{2 * GIB}\n")
    assert cgroup_memory_room(tmp_path, membership) == 2 * GIB - 1839271936


def test_available_memory_is_the_tightest_probe_plus_what_the_process_holds(monkeypatch) -> None:
    monkeypatch.setattr(resources, "own_rss", lambda: 100)
    monkeypatch.setattr(resources, "meminfo_available", lambda: 8 * GIB)
    monkeypatch.setattr(resources, "cgroup_memory_room", lambda: None)
    assert available_memory() == MemoryLimit(8 * GIB + 100, "available on this machine (MemAvailable in /proc/meminfo)")
    monkeypatch.setattr(resources, "cgroup_memory_room", lambda: 2 * GIB)
    assert available_memory() == MemoryLimit(2 * GIB + 100, "left by this process's cgroup memory limit")
    monkeypatch.setattr(resources, "meminfo_available", lambda: None)
    monkeypatch.setattr(resources, "cgroup_memory_room", lambda: None)
    monkeypatch.setattr(resources, "_sysconf_available", lambda: GIB)
    assert available_memory() == MemoryLimit(GIB + 100, "free on this machine")
    monkeypatch.setattr(resources, "_sysconf_available", lambda: None)
    assert available_memory() is None


def test_without_a_memory_probe_no_bound_is_applied(monkeypatch) -> None:
    import ribbed.scenarios.validation as validation

    monkeypatch.setattr(validation, "available_memory", lambda: None)
    validation.validate(ribbed.load_scenario(complete_graph(20_000)))  # no bound: only the record limit applies
    with pytest.raises(ScenarioError):
        validation.validate(ribbed.load_scenario(complete_graph(20_000)), max_memory="8G")


def test_the_probe_reads_this_machine() -> None:
    limit = available_memory()
    assert limit is not None and limit.bytes > 0  # Linux: /proc/meminfo is there
    assert resources.own_rss() > 0


def test_copying_a_scenario_keeps_its_estimate() -> None:
    """The estimate is a function of the scenario alone (no machine state but the Ray shard default)."""
    data = with_hidden(500, {"rule": "fixed_in_degree", "k": 9})
    first = estimate_size(ribbed.load_scenario(data))
    again = estimate_size(ribbed.load_scenario(copy.deepcopy(data)))
    assert first == again and first.synapses == 2 * 500 + 9 * 500 + 2 * 500
