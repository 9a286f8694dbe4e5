"""The message log end to end: every run writes one, replay verifies it bit for bit, a
tampered log fails at exactly the tampered tick, and a killed run resumes to the same result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import msgpack
import numpy as np
import pytest

import ribbed
from ribbed.errors import LogTruncatedWarning, RibbedError, ScenarioError
from ribbed.log import model_at, open_log, verify
from ribbed.log.format import DIGEST_SEED, body_digest, crc, pack_body, unpack_body
from ribbed.runner import resume
from ribbed.scenarios.loader import builtin_scenarios, load_scenario


def short(name: str, backend: str, level: str = "activity", ticks: int | None = None, **run) -> dict:
    """A built-in scenario cut short: a few ticks on the reference executor, more on batched."""
    scenario = load_scenario(name).model_dump()
    scenario["run"].update({"ticks": ticks or (6 if backend == "reference" else 30),
                            "eval_every": 3 if backend == "reference" else 10, **run})
    encoding = scenario["task"].get("encoding") or {}
    if backend == "reference" and "steps_per_sample" not in run and encoding.get("kind") != "sequence":
        # the agents' steps are the slow part (stdp-pairs: 1000 steps of 1001 agents; digits-spiking:
        # 25 of 174): ten steps exercise the same code (a sequence's steps are its chunks: kept)
        scenario["run"]["steps_per_sample"] = min(scenario["run"]["steps_per_sample"], 10)
    scenario["backend"].update({"kind": backend, "dtype": None})
    scenario["log"] = {"level": level}
    return scenario


def quiet_run(scenario, out: Path, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ribbed.RibbedWarning)
        return ribbed.run(scenario, out=out, **options)


@pytest.mark.parametrize("backend", ["reference", "batched"])
@pytest.mark.parametrize("name", sorted(builtin_scenarios()))
def test_verify_passes_for_every_builtin(tmp_path: Path, name: str, backend: str) -> None:
    quiet_run(short(name, backend), tmp_path / "run")
    report = verify(tmp_path / "run" / "run.log")
    assert report.ok, report.difference
    expected_ticks = 6 if backend == "reference" else 30
    assert report.ticks_checked == expected_ticks
    assert report.snapshots_checked == (2 if backend == "reference" else 3)


# ---------------------------------------------------------------------------- tampering


def rewrite(path: Path, tick: int, mutate, *, recompute_crc: bool, rechain: bool) -> None:
    """Rewrite a log with the body of ``tick``'s record changed by ``mutate(body) -> body``,
    its CRC recomputed or not; with ``rechain``, every CRC and digest is recomputed (a forger
    who rebuilds the whole chain)."""
    data = Path(path).read_bytes()
    with open_log(path) as log:
        records = [msgpack.unpackb(data[ref.offset:ref.offset + ref.size], raw=False) for ref in log.refs]
    previous, parts = DIGEST_SEED, []
    for record in records:
        if (record["type"], record["tick"]) == ("tick", tick):
            record["body"] = pack_body(mutate(unpack_body(record["body"])))
            if recompute_crc:
                record["crc"] = crc(record["body"])
        if rechain:
            record["crc"], record["digest"] = crc(record["body"]), body_digest(previous, record["body"])
        previous = record["digest"]
        parts.append(msgpack.packb(record, use_bin_type=True))
    Path(path).write_bytes(b"".join(parts))
    Path(str(path) + ".idx").unlink(missing_ok=True)


def flip_weight(body: dict) -> dict:
    name = next(iter(body["weights"]))
    data = bytearray(body["weights"][name]["data"])
    data[4 * 17 + 1] ^= 0x10  # one byte of the 18th synapse's weight (float32)
    body["weights"][name]["data"] = bytes(data)
    return body


@pytest.fixture(scope="module")
def messages_log(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("messages") / "run"
    quiet_run(short("digits", "batched", level="messages", ticks=20), folder)
    return folder / "run.log"


def tampered_copy(source: Path, folder: Path) -> Path:
    target = folder / "run.log"
    target.write_bytes(source.read_bytes())
    return target


def test_a_flipped_weight_byte_fails_verification_at_that_tick(messages_log: Path, tmp_path: Path) -> None:
    log = tampered_copy(messages_log, tmp_path)
    rewrite(log, 12, flip_weight, recompute_crc=False, rechain=False)
    report = verify(log)
    assert not report.ok
    assert report.difference.tick == 12 and "CRC" in report.difference.detail


def test_a_record_edited_with_its_crc_recomputed_breaks_the_digest_chain(messages_log: Path, tmp_path: Path) -> None:
    log = tampered_copy(messages_log, tmp_path)
    rewrite(log, 12, flip_weight, recompute_crc=True, rechain=False)
    report = verify(log)
    assert not report.ok
    assert report.difference.tick == 12 and "digest chain" in report.difference.detail


def test_a_forged_chain_still_fails_the_replay_at_that_tick_and_names_the_agent(messages_log: Path,
                                                                                tmp_path: Path) -> None:
    log = tampered_copy(messages_log, tmp_path)
    rewrite(log, 12, flip_weight, recompute_crc=True, rechain=True)
    with open_log(log) as reader:
        assert reader.check() > 0  # the forged log is self-consistent
        name = next(iter(reader.tick(12).body["weights"]))
    report = verify(log)
    assert not report.ok
    difference = report.difference
    assert (difference.tick, difference.record) == (12, "tick")
    assert difference.field == f"weights/{name}"
    network = ribbed.NetworkModel(messages_log.parent / "scenario.yaml").network
    projection = next(p for p in network.projections if p.name == name)
    assert difference.agent == projection.post.start + int(projection.post_idx[17])
    assert report.ticks_checked == 12


def test_a_changed_loss_is_named_at_its_tick(messages_log: Path, tmp_path: Path) -> None:
    log = tampered_copy(messages_log, tmp_path)
    rewrite(log, 7, lambda body: {**body, "loss": body["loss"] + 1e-12}, recompute_crc=True, rechain=True)
    report = verify(log)
    assert not report.ok and (report.difference.tick, report.difference.field) == (7, "loss")


# ---------------------------------------------------------------------------- killed runs


KILL_SCRIPT = """
import sys, warnings
import ribbed
warnings.simplefilter("ignore")
scenario = ribbed.load_scenario("digits").model_dump()
scenario["run"].update({"ticks": 3000, "eval_every": 200})
scenario["log"] = {"level": "activity"}
ribbed.run(scenario, out=sys.argv[1])
"""


def test_a_killed_run_reads_to_its_last_tick_and_resumes_identically(tmp_path: Path) -> None:
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(killed)], stderr=subprocess.PIPE)
    index = killed / "run.log.idx"
    deadline = time.monotonic() + 120
    while not index.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    time.sleep(0.3)
    assert process.poll() is None, "the run ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()

    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always", LogTruncatedWarning)
        with open_log(killed / "run.log") as log:
            ticks = log.ticks
            assert log.end is None  # no end record: the run did not close its log
            assert len(ticks) > 200 and np.array_equal(ticks, np.arange(len(ticks)))
            log.check()
            last = log.tick(int(ticks[-1]))
            assert last.array("activation").shape == (32, 138)

    scenario = ribbed.load_scenario("digits").model_dump()
    scenario["run"].update({"ticks": 3000, "eval_every": 200})
    scenario["log"] = {"level": "activity"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LogTruncatedWarning)
        resumed = resume(killed)
    whole = quiet_run(scenario, tmp_path / "whole")
    for name in ("metrics.csv", "agents.csv"):
        assert (killed / name).read_text() == (tmp_path / "whole" / name).read_text()
    for name, projection in whole.model.projections.items():
        assert np.array_equal(projection.get_weights(), resumed.model.projections[name].get_weights())
    assert resumed.metrics.equals(whole.metrics)
    with open_log(killed / "run.log") as a, open_log(tmp_path / "whole" / "run.log") as b:
        assert a.end["status"] == "completed"
        assert [r.data for r in a.records(("tick", "snapshot"))] == [r.data for r in b.records(("tick", "snapshot"))]
    assert verify(killed / "run.log").ok


@pytest.mark.parametrize("backend", ["reference", "batched"])
@pytest.mark.parametrize("name", ["digits-guide-tree", "digits-guide-hash", "digits-specialize", "digits-fa",
                                  "digits-spiking"])
def test_resume_continues_exactly(tmp_path: Path, name: str, backend: str) -> None:
    """Optimizer, guide (replay buffers, fitted trees, MLP moments), coupling and meta state all
    come back from the snapshot."""
    scenario = short(name, backend, level="summary", ticks=9 if backend == "reference" else 45,
                     eval_every=3 if backend == "reference" else 15)
    if "guide" in name or "specialize" in name:
        population = next(p for p in scenario["populations"] if p.get("guide"))
        if population["guide"]["kind"] == "tree":
            population["guide"]["refit_every"] = 2
    whole = quiet_run(scenario, tmp_path / "whole")
    stop = 7 if backend == "reference" else 37

    def interrupt(model) -> None:
        if model.tick == stop:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        quiet_run(scenario, tmp_path / "cut", on_tick=interrupt)
    with open_log(tmp_path / "cut" / "run.log") as log:
        assert log.end["status"] == "interrupted"
    resumed = resume(tmp_path / "cut")
    for file in ("metrics.csv", "agents.csv", "tuning.csv"):  # the null baselines and stabilities too
        assert (tmp_path / "cut" / file).read_text() == (tmp_path / "whole" / file).read_text(), file
    for p, projection in whole.model.projections.items():
        assert np.array_equal(projection.get_weights(), resumed.model.projections[p].get_weights())
    values, _ = whole.model.executor.state()
    again, _ = resumed.model.executor.state()
    assert values.keys() == again.keys()
    for key in values:
        assert (values[key] is None and again[key] is None) or np.array_equal(values[key], again[key], equal_nan=True), key


def test_resume_refuses_a_completed_run_and_a_folder_without_log(tmp_path: Path) -> None:
    quiet_run(short("xor", "batched"), tmp_path / "done")
    with pytest.raises(RibbedError, match="completed"):
        resume(tmp_path / "done")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RibbedError, match="no run.log"):
        resume(tmp_path / "empty")


# ---------------------------------------------------------------------------- reading


def test_replay_until_rebuilds_the_state_of_that_tick(tmp_path: Path) -> None:
    scenario = short("digits-guide-direct", "batched", level="summary", ticks=40)
    run = quiet_run(scenario, tmp_path / "run")
    model = model_at(tmp_path / "run" / "run.log", 25)
    direct = ribbed.NetworkModel(scenario)
    for _ in range(25):
        direct.step()
    for name, projection in direct.projections.items():
        assert np.array_equal(projection.get_weights(), model.projections[name].get_weights())
    values, _ = direct.executor.state()
    again, _ = model.executor.state()
    for key in values:
        assert (values[key] is None and again[key] is None) or np.array_equal(values[key], again[key], equal_nan=True), key
    with pytest.raises(RibbedError, match="not in this run"):
        model_at(tmp_path / "run" / "run.log", 41)
    assert run.model.tick == 40


def test_a_truncated_log_reads_to_its_last_whole_tick(messages_log: Path, tmp_path: Path) -> None:
    with open_log(messages_log) as log:
        ref = next(r for r in log.refs if r.type == "tick" and r.tick == 9)
    cut = tmp_path / "run.log"
    cut.write_bytes(messages_log.read_bytes()[:ref.offset + ref.size // 2])
    with pytest.warns(LogTruncatedWarning, match=f"byte {ref.offset}.*tick 8"):
        log = open_log(cut)
    assert list(log.ticks) == list(range(9)) and log.truncated_at == ref.offset
    assert len(log.messages(ticks=(8, 9))) > 0


def test_executors_log_the_same_messages(tmp_path: Path) -> None:
    """The messages level of the reference and batched executors (float64) agree: the log
    expands to the same messages."""
    frames = []
    for backend in ("reference", "batched"):
        scenario = short("digits-fa", backend, level="messages", ticks=3)
        scenario["backend"]["dtype"] = "float64"
        quiet_run(scenario, tmp_path / backend)
        with open_log(tmp_path / backend / "run.log") as log:
            frames.append(log.messages())
    reference, batched = frames
    assert len(reference) == len(batched) > 0
    for column in ("tick", "stage", "kind", "src", "dst"):
        assert (reference[column] == batched[column]).all(), column
    payload = [c for c in reference.columns if c.startswith("payload_")]
    np.testing.assert_allclose(batched[payload].to_numpy(), reference[payload].to_numpy(), rtol=1e-9, atol=1e-12)


def test_filtering_one_agent_reads_its_messages_only(messages_log: Path) -> None:
    with open_log(messages_log) as log:
        every = log.messages(ticks=(3, 6))
        mine = log.messages(ticks=(3, 6), agent=70)
        errors = log.messages(ticks=(3, 6), agent=70, kind="error")
    expected = every[(every.src == 70) | (every.dst == 70)].reset_index(drop=True)
    assert len(mine) == len(expected) > 0
    assert mine.equals(expected)
    assert set(errors.kind) == {"error"} and len(errors) == (expected.kind == "error").sum()
    assert set(mine.tick) == {3, 4, 5}


def test_snapshot_every_must_fall_on_evaluations() -> None:
    scenario = short("xor", "batched")
    scenario["log"] = {"snapshot_every": 7}
    with pytest.raises(ScenarioError, match="log.snapshot_every"):
        load_scenario(scenario)


def test_level_off_writes_no_log(tmp_path: Path) -> None:
    scenario = short("xor", "batched")
    scenario["log"] = {"level": "off"}
    quiet_run(scenario, tmp_path / "run")
    assert not (tmp_path / "run" / "run.log").exists()


# ---------------------------------------------------------------------------- the command line


def test_log_commands_end_to_end(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ribbed.cli import app

    cli = CliRunner()
    scenario = tmp_path / "xor.yaml"
    scenario.write_text(ribbed.scenario_to_yaml(load_scenario(short("xor", "batched", level="messages", ticks=20))))
    run_dir = tmp_path / "run"
    assert cli.invoke(app, ["run", str(scenario), "--out", str(run_dir)]).exit_code == 0
    log = str(run_dir / "run.log")

    info = cli.invoke(app, ["log", "info", log])
    assert info.exit_code == 0, info.output
    assert "level messages" in info.output and "ticks:      20 (0..19 of 20)" in info.output
    assert "status:     completed" in info.output and "snapshots:  10, 20" in info.output

    show = cli.invoke(app, ["log", "show", log, "--ticks", "3:5", "--agent", "2", "--kind", "error"])
    assert show.exit_code == 0, show.output
    assert "backward" in show.output and "activation" not in show.output

    for format in ("csv", "jsonl", "parquet"):
        target = tmp_path / f"messages.{format}"
        result = cli.invoke(app, ["log", "export", log, "--format", format, "--out", str(target), "--ticks", "0:4"])
        assert result.exit_code == 0, result.output
    with open_log(log) as reader:
        expected = reader.messages(ticks=(0, 4))
    import pandas as pd

    for exported in (pd.read_csv(tmp_path / "messages.csv"), pd.read_parquet(tmp_path / "messages.parquet"),
                  pd.read_json(tmp_path / "messages.jsonl", lines=True)):
        assert len(exported) == len(expected)
        assert list(exported["src"]) == list(expected["src"]) and list(exported["dst"]) == list(expected["dst"])

    verified = cli.invoke(app, ["replay", log, "--verify"])
    assert verified.exit_code == 0 and "verified: 20 ticks and 2 snapshots" in verified.output
    state = cli.invoke(app, ["replay", log, "--until", "15", "--out", str(tmp_path / "state")])
    assert state.exit_code == 0, state.output
    with np.load(tmp_path / "state" / "state.npz") as arrays:
        model = model_at(log, 15)
        for name, projection in model.projections.items():
            assert np.array_equal(arrays[f"weights/{name}"], projection.get_weights())

    again = cli.invoke(app, ["run", "--resume", str(run_dir)])
    assert again.exit_code == 2 and "completed at tick 20" in again.output
    bad = cli.invoke(app, ["log", "show", log, "--ticks", "a:b"])
    assert bad.exit_code == 2 and "--ticks" in bad.output
    not_a_log = cli.invoke(app, ["log", "info", str(scenario)])
    assert not_a_log.exit_code == 2 and "error:" in not_a_log.output and "Traceback" not in not_a_log.output


# ---------------------------------------------------------------------------- the writers


def test_the_thread_writer_writes_the_same_log(tmp_path: Path, monkeypatch) -> None:
    """On a GPU (or where no writer process can be started) a thread writes the log: the same
    records, verified and resumed the same way."""
    scenario = short("digits-guide-hash", "batched", level="messages", ticks=30)
    quiet_run(scenario, tmp_path / "process")
    monkeypatch.setenv("RIBBED_LOG_WRITER", "thread")
    quiet_run(scenario, tmp_path / "thread")

    def interrupt(model) -> None:
        if model.tick == 17:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        quiet_run(scenario, tmp_path / "cut", on_tick=interrupt)
    resume(tmp_path / "cut")
    with open_log(tmp_path / "process" / "run.log") as a, open_log(tmp_path / "thread" / "run.log") as b, \
            open_log(tmp_path / "cut" / "run.log") as c:
        bodies = [[r.data for r in log.records(("tick", "snapshot", "topology"))] for log in (a, b, c)]
    assert bodies[0] == bodies[1] == bodies[2]
    assert verify(tmp_path / "thread" / "run.log").ok


def test_a_dead_writer_process_stops_the_run_with_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RIBBED_LOG_WRITER", "process")  # (a single-core machine would get a thread)
    scenario = short("digits", "batched", level="activity", ticks=3000)
    scenario["run"]["eval_every"] = 1000

    def kill_writer(model) -> None:
        if model.tick == 50:
            model.recorder.writer._process.kill()

    with pytest.raises(RibbedError, match="log writer process stopped"):
        quiet_run(scenario, tmp_path / "run", on_tick=kill_writer)
    summary = (tmp_path / "run" / "summary.json").read_text()
    assert '"status": "failed"' in summary


@pytest.mark.parametrize("weights", [("a->b", "b->c"), ()])
def test_the_writer_process_writes_the_bytes_of_the_thread_writer(tmp_path: Path, weights: tuple) -> None:
    """The writer process builds tick records from the ring's slots (their constant bytes laid
    out once, the scalars packed at each tick): the same log, byte for byte, as the thread
    writer encoding ``records.tick_body``, for every msgpack width of the tick, odd losses,
    outputs that are or are not the output population's activation part, parts given as
    tensors, arrays or None, and a weights map full or empty."""
    import torch

    from ribbed.log.format import FORMAT, VERSION
    from ribbed.log.records import tick_body
    from ribbed.log.shared_writer import SharedLogWriter
    from ribbed.log.writer import LogWriter
    from ribbed.scheduler.base import TickResult

    batch, sizes, synapses = 3, [4, 5, 2], 7
    f4 = lambda shape: {"dtype": "<f4", "shape": list(shape), "as": "array"}  # noqa: E731
    layout = [{"name": "tick", "dtype": "<i8", "shape": [], "as": "int"},
              {"name": "backward", "dtype": "|b1", "shape": [], "as": "bool"},
              {"name": "loss", "dtype": "<f8", "shape": [], "as": "float"},
              {"name": "counts", "dtype": "<i8", "shape": [8], "as": "array"},
              {"name": "batch", "dtype": "<i8", "shape": [batch], "as": "array"},
              {"name": "outputs", **f4((batch, sizes[-1]))},
              {"name": "activation", **f4((batch, sum(sizes))), "parts": sizes, "output_part": 2},
              {"name": "answer", **f4((batch, sizes[-1]))},
              {"name": "delta", **f4((batch, sum(sizes))), "parts": sizes},
              {"name": "weights", "as": "map", "fields": [{"name": name, **f4((synapses,))} for name in weights]}]
    header = {"tick": -1, "format": FORMAT, "version": VERSION, "level": "messages", "batch_size": batch}
    shared = SharedLogWriter(tmp_path / "process.log", header, layout)
    thread = LogWriter(tmp_path / "thread.log", header)
    rng = np.random.default_rng(0)
    ticks = [0, 1, 127, 128, 255, 256, 2**16 - 1, 2**16, 2**32 - 1, 2**32, 2**40]
    losses = [0.25, float("nan"), -0.0, float("inf"), 1e-310, -3.5]
    before = np.zeros(8, dtype=np.int64)
    for i, tick in enumerate(ticks):
        tensor = lambda size: torch.from_numpy(rng.standard_normal((batch, size), dtype=np.float32))  # noqa: E731
        activation = [tensor(size) for size in sizes] if i % 3 else [t.numpy() for t in map(tensor, sizes)]
        outputs = activation[-1] if i % 2 else tensor(sizes[-1])
        delta = [None if (i + k) % 2 else tensor(size) for k, size in enumerate(sizes)]
        values = {"activation": activation, "answer": tensor(sizes[-1]), "delta": delta}
        step = {name: rng.standard_normal(synapses).astype(np.float32) for name in weights}
        result = TickResult(loss=torch.tensor(losses[i % len(losses)], dtype=torch.float64), outputs=outputs)
        counts = before + rng.integers(0, 2**40, 8)
        index = rng.integers(0, 1000, batch)
        shared.write_tick(tick, i % 2 == 0, result, index, counts, before, values, step)
        fields = {"tick": tick, "backward": i % 2 == 0, "loss": result, "counts": counts - before, "batch": index,
                  "outputs": result, "activation": activation, "answer": values["answer"],
                  "delta": [size if part is None else part for part, size in zip(delta, sizes)], "weights": step}
        thread.write("tick", tick, lambda fields=fields: tick_body(fields))
        before = counts
    for writer in (shared, thread):
        writer.close("completed", ticks[-1] + 1)
    assert (tmp_path / "process.log").read_bytes() == (tmp_path / "thread.log").read_bytes()
    # Checked as the page says (CRCs, chain), not through LogReader: this header and these ticks
    # exercise the writers' encodings, they are not a log the page allows (a reader refuses a
    # header without its fields, and ticks that do not run 0, 1, 2, ...).
    previous, written = DIGEST_SEED, []
    with open(tmp_path / "process.log", "rb") as stream:
        for record in msgpack.Unpacker(stream, raw=False):
            assert crc(record["body"]) == record["crc"] and body_digest(previous, record["body"]) == record["digest"]
            previous = record["digest"]
            written.append((record["type"], record["tick"]))
    assert [tick for kind, tick in written if kind == "tick"] == ticks and written[-1][0] == "end"
