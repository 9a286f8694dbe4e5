"""Logs across format versions: the format-1 logs written by an earlier ribbed (fixtures) still
read, list their messages, rebuild their state, verify and resume; a new log holds the D
matrices of direct feedback alignment (format 2), and a DFA broadcast checks from the log alone."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import msgpack
import numpy as np
import pytest
from typer.testing import CliRunner

import ribbed
from ribbed.cli import app
from ribbed.log import model_at, open_log, verify
from ribbed.log.format import DIGEST_SEED, VERSION, body_digest, crc, pack_body, unpack_body
from ribbed.runner import resume
from ribbed.log.replay import metric_difference

FIXTURES = Path(__file__).parent / "fixtures" / "logs"
V1_LOGS = sorted(FIXTURES.glob("*-v1-*.log"))
#: Each fixture's ticks and snapshot ticks (from its scenario beside it).
SHAPES = {"xor-dfa-v1": (24, [12, 24]), "xor-guided-v1": (20, [10, 20])}


def scenario_name(log: Path) -> str:
    return log.name.rsplit("-", 1)[0]


def test_there_are_v1_fixtures_of_both_executors() -> None:
    assert [p.name for p in V1_LOGS] == ["xor-dfa-v1-batched.log", "xor-dfa-v1-reference.log",
                                         "xor-guided-v1-batched.log", "xor-guided-v1-reference.log"]
    assert VERSION == 2


# ---------------------------------------------------------------------------- format-1 logs


@pytest.mark.parametrize("path", V1_LOGS, ids=lambda p: p.stem)
def test_a_v1_log_reads_with_its_messages(path: Path) -> None:
    ticks, snapshots = SHAPES[scenario_name(path)]
    with open_log(path) as log:
        assert log.version == 1 and log.header["level"] == "messages"
        assert "resources" not in log.header  # (version 2 added it)
        assert log.check() == 2 + ticks + len(snapshots) + 1
        assert list(log.ticks) == list(range(ticks)) and list(log.snapshot_ticks) == snapshots
        assert log.end["status"] == "completed"
        assert "dfa" not in log.topology().body
        assert log.dfa_matrices() is None  # not recorded, which is not "no DFA population"
        frame = log.messages(ticks=(2, 5))
        for tick in (2, 3, 4):
            counts = log.tick(tick).array("counts")
            rows = frame[frame["tick"] == tick]
            assert (rows["kind"] == "activation").sum() == counts[0] and (rows["kind"] == "error").sum() == counts[1]
        hidden = next(p for p in log.header["populations"] if p["role"] == "hidden")["start"]
        mine = log.messages(ticks=(2, 5), agent=hidden)
        assert len(mine) and ((mine["src"] == hidden) | (mine["dst"] == hidden)).all()


@pytest.mark.parametrize("path", V1_LOGS, ids=lambda p: p.stem)
def test_a_v1_log_rebuilds_its_state_at_any_tick(path: Path) -> None:
    _, snapshots = SHAPES[scenario_name(path)]
    with open_log(path) as log:
        snapshot = log.snapshot(snapshots[0])
        weights = {name: snapshot.decode(value) for name, value in snapshot.body["weights"].items()}
    at_snapshot = model_at(path, snapshots[0])
    for name, projection in at_snapshot.projections.items():
        assert np.array_equal(projection.get_weights(), weights[name])
    later = model_at(path, snapshots[0] + 3)
    assert later.tick == snapshots[0] + 3
    assert any(not np.array_equal(later.projections[name].get_weights(), weights[name]) for name in weights)


@pytest.mark.parametrize("path", V1_LOGS, ids=lambda p: p.stem)
def test_a_v1_log_verifies_from_python(path: Path) -> None:
    ticks, snapshots = SHAPES[scenario_name(path)]
    report = verify(path)
    assert report.ok, report.difference
    assert (report.ticks_checked, report.snapshots_checked) == (ticks, len(snapshots))


@pytest.mark.parametrize("path", V1_LOGS, ids=lambda p: p.stem)
def test_a_v1_log_through_the_command_line(path: Path) -> None:
    ticks, snapshots = SHAPES[scenario_name(path)]
    cli = CliRunner()
    info = cli.invoke(app, ["log", "info", str(path)])
    assert info.exit_code == 0, info.output
    assert "v1, level messages" in info.output and f"ticks:      {ticks} (0..{ticks - 1} of {ticks})" in info.output
    show = cli.invoke(app, ["log", "show", str(path), "--ticks", "3:5", "--kind", "error"])
    assert show.exit_code == 0, show.output
    assert "backward" in show.output and "readout" in show.output and "activation" not in show.output
    verified = cli.invoke(app, ["replay", str(path), "--verify"])
    assert verified.exit_code == 0, verified.output
    assert f"verified: {ticks} ticks and {len(snapshots)} snapshots" in verified.output


def test_a_v1_log_resumes_as_a_v1_log(tmp_path: Path) -> None:
    """A format-1 run cut after its first snapshot continues with records of the same form: the
    log stays version 1 (no D matrices appear in its topology), its topology and tick records are
    the original's byte for byte, its snapshots hold the original's state byte for byte and its
    metrics (with the metrics this version adds), and it verifies."""
    source = FIXTURES / "xor-dfa-v1-reference.log"
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with open_log(source) as log:
        cut = next(ref for ref in log.refs if ref.type == "tick" and ref.tick == 12).offset
        (run_dir / "scenario.yaml").write_text(ribbed.scenario_to_yaml(ribbed.load_scenario(log.header["scenario"])))
        original = list(log.records(("topology", "tick", "snapshot")))
    (run_dir / "run.log").write_bytes(source.read_bytes()[:cut])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ribbed.RibbedWarning)
        resume(run_dir)
    with open_log(run_dir / "run.log") as log:
        assert log.version == 1 and log.dfa_matrices() is None and log.end["status"] == "completed"
        again = list(log.records(("topology", "tick", "snapshot")))
    assert [r.type for r in again] == [r.type for r in original]
    for before, after in zip(original, again):
        if before.type != "snapshot":
            assert after.data == before.data
            continue
        state = {key: value for key, value in before.body.items() if key != "metrics"}
        assert {key: value for key, value in after.body.items() if key != "metrics"} == state
        assert metric_difference(before.body["metrics"], after.body["metrics"]) is None
        assert set(after.body["metrics"]) >= set(before.body["metrics"])
    added = [set(a.body["metrics"]) - set(b.body["metrics"]) for a, b in zip(again, original) if a.type == "snapshot"]
    assert not added[0] and added[-1]  # the snapshot kept from the cut log; the null baselines, now recorded
    assert verify(run_dir / "run.log").ok


# ---------------------------------------------------------------------------- format-2 logs: D matrices


@pytest.fixture(scope="module", params=["reference", "batched"])
def dfa_run(request, tmp_path_factory) -> tuple[Path, ribbed.NetworkModel]:
    scenario = ribbed.load_scenario(FIXTURES / "xor-dfa-v1.yaml").model_dump()
    scenario["backend"] = {"kind": request.param}
    out = tmp_path_factory.mktemp(request.param) / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ribbed.RibbedWarning)
        result = ribbed.run(scenario, out=out)
    return out / "run.log", result.model


def test_a_new_log_holds_every_dfa_matrix(dfa_run) -> None:
    path, model = dfa_run
    with open_log(path) as log:
        assert log.version == VERSION == 2
        matrices = log.dfa_matrices()
        dtype = np.dtype(log.header["dtype"])
        broadcast = log.header["broadcast"]
    expected = {name: p.get_dfa_matrix() for name, p in model.populations.items() if p.get_dfa_matrix() is not None}
    assert list(matrices) == list(expected) == ["hidden", "hidden2"]
    for name, D in matrices.items():
        population = model.populations[name]
        assert D.dtype == dtype and D.shape == (len(population), model.network.output.size)
        assert np.array_equal(D.astype(np.float64), expected[name])  # D is fixed: as built, as at the end
    assert broadcast == [i for name in matrices for i in range(model.populations[name].info.start,
                                                                model.populations[name].info.start
                                                                + len(model.populations[name]))]


def test_a_dfa_broadcast_checks_from_the_log_alone(dfa_run) -> None:
    """delta_j = f'(u_j) * sum_o D_jo delta_o (docs/semantics.md): with tanh, f' = 1 - y^2 from the
    logged activation; every term is in the log."""
    path, _ = dfa_run
    with open_log(path) as log:
        populations = {p["name"]: p for p in log.header["populations"]}
        output = next(p for p in log.header["populations"] if p["role"] == "output")
        outputs = slice(output["start"], output["start"] + output["size"])
        tolerance = 1e-12 if log.header["dtype"] == "float64" else 1e-5
        matrices = log.dfa_matrices()
        checked = 0
        for record in log.records(("tick",)):
            y, delta = record.array("activation"), record.array("delta")
            for name, D in matrices.items():
                columns = slice(populations[name]["start"], populations[name]["start"] + populations[name]["size"])
                expected = (1 - y[:, columns] ** 2) * (delta[:, outputs] @ D.T)
                assert np.allclose(delta[:, columns], expected, rtol=tolerance, atol=tolerance), (record.tick, name)
                checked += 1
    assert checked == 2 * 24


def forge_topology(path: Path, mutate) -> None:
    """Rewrite a log with its topology body changed by ``mutate(body)``, every CRC and digest
    after it recomputed (a forger who rebuilds the whole chain)."""
    data = path.read_bytes()
    with open_log(path) as log:
        records = [msgpack.unpackb(data[ref.offset:ref.offset + ref.size], raw=False) for ref in log.refs]
    previous, parts = DIGEST_SEED, []
    for record in records:
        if record["type"] == "topology":
            record["body"] = pack_body(mutate(unpack_body(record["body"])))
        record["crc"], record["digest"] = crc(record["body"]), body_digest(previous, record["body"])
        previous = record["digest"]
        parts.append(msgpack.packb(record, use_bin_type=True))
    path.write_bytes(b"".join(parts))
    Path(str(path) + ".idx").unlink(missing_ok=True)


def test_a_forged_dfa_matrix_fails_verification_and_names_the_neuron(dfa_run, tmp_path: Path) -> None:
    path, model = dfa_run
    forged = tmp_path / "run.log"
    shutil.copyfile(path, forged)

    def flip(body: dict) -> dict:
        D = body["dfa"]["hidden2"]
        values = np.frombuffer(D["data"], dtype=D["dtype"]).reshape(D["shape"]).copy()
        values[3, 1] = -values[3, 1]
        D["data"] = values.tobytes()
        return body

    forge_topology(forged, flip)
    with open_log(forged) as log:
        assert log.check() > 0  # the forged log is self-consistent
    report = verify(forged)
    assert not report.ok
    difference = report.difference
    assert (difference.tick, difference.record, difference.field) == (-1, "topology", "dfa/hidden2")
    assert difference.agent == model.populations["hidden2"].info.start + 3
    assert report.ticks_checked == 0


def test_a_forged_v1_topology_fails_verification(tmp_path: Path) -> None:
    """A version-1 topology is checked against the version-1 body: a changed synapse index is named."""
    forged = tmp_path / "run.log"
    shutil.copyfile(FIXTURES / "xor-dfa-v1-reference.log", forged)

    def move(body: dict) -> dict:
        post = body["projections"][1]["post"]
        values = np.frombuffer(post["data"], dtype=post["dtype"]).copy()
        values[0] = (values[0] + 1) % 5
        post["data"] = values.tobytes()
        return body

    forge_topology(forged, move)
    report = verify(forged)
    assert not report.ok
    assert (report.difference.record, report.difference.field) == ("topology", "projections/hidden->hidden2/post")


def test_snapshot_metrics_are_compared_on_the_logged_names_within_a_tolerance():
    logged = {"tick": 12, "loss": 0.25, "r2": float("nan"), "kind": "x"}
    assert metric_difference(logged, {**logged, "new_metric": 1.0}) is None  # a later version's addition
    assert metric_difference(logged, {**logged, "loss": 0.25 * (1 + 1e-12)}) is None  # another summation order
    assert metric_difference(logged, {**logged, "loss": 0.25 * (1 + 1e-6)}) == "loss"
    assert metric_difference(logged, {key: v for key, v in logged.items() if key != "r2"}) == "r2"
    assert metric_difference(logged, {**logged, "r2": 0.0}) == "r2"
    assert metric_difference(logged, {**logged, "kind": "y"}) == "kind"
