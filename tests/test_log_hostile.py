"""Hostile logs: crafted records that pass their CRC and the digest chain (both recomputed, as a
forger without a key would) but break the format, read by the Python API and by every log
command; trailing garbage; a damaged index; memory bounded by the file's size.

Every crafted log is made from a real small log: one record's body is edited (re-packed with
msgpack), then every CRC and digest from there on is recomputed.  Each must give a
LogFormatError naming the record's tick and byte offset, through the Python API and the command
line alike (exit code 2 for ``log info/show/export``, 1 for ``replay --verify``, which reports
the first record that does not verify), with no traceback, in well under 5 s.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import msgpack
import numpy as np
import pytest

import ribbed
from ribbed.errors import LogError, LogFormatError, LogTruncatedWarning
from ribbed.log.reader import LogReader

SEED = b"ribbed-log\x00"
ALL = ("header", "topology", "tick", "snapshot", "end")
#: The slowest a command may take on a crafted log (the issue's bound).
SECONDS = 5.0


def xor(level: str, ticks: int = 10) -> dict:
    return {"name": "x", "seed": 0, "task": {"kind": "xor"},
            "populations": [{"name": "in", "size": 2, "role": "input"},
                            {"name": "h", "size": 4, "activation": "tanh"},
                            {"name": "out", "size": 2, "role": "output", "activation": "identity"}],
            "projections": [{"pre": "in", "post": "h"}, {"pre": "h", "post": "out"}],
            "run": {"ticks": ticks, "batch_size": 8, "eval_every": 5}, "log": {"level": level}}


@pytest.fixture(scope="module")
def real_log(tmp_path_factory) -> dict:
    """A real log at level messages (header, topology, ticks 0-9, snapshots 5 and 10, end), its
    index, and its records as frames."""
    out = tmp_path_factory.mktemp("real") / "run"
    ribbed.run(ribbed.load_scenario(xor("messages")), out=out)
    data = (out / "run.log").read_bytes()
    return {"data": data, "index": (out / "run.log.idx").read_bytes(), "frames": frames(data)}


def frames(data: bytes) -> list[dict]:
    """The records of a log as their five-key maps (bodies as bytes)."""
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data)
    return list(unpacker)


def chained(records: list[dict], digest: Callable[[bytes, bytes], bytes] | None = None) -> tuple[bytes, list[int]]:
    """The log of ``records`` with every CRC and digest recomputed (plain SHA-256 unless
    ``digest(previous, body)`` says otherwise), and each record's offset."""
    digest = digest or (lambda previous, body: hashlib.sha256(previous + body).digest())
    previous, parts, offsets, offset = SEED, [], [], 0
    for record in records:
        record = dict(record, crc=zlib.crc32(record["body"]) & 0xFFFFFFFF)
        record["digest"] = previous = digest(previous, record["body"])
        part = msgpack.packb(record, use_bin_type=True)
        offsets.append(offset)
        offset += len(part)
        parts.append(part)
    return b"".join(parts), offsets


def body(record: dict) -> dict:
    return msgpack.unpackb(record["body"], raw=False, strict_map_key=False)


def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


# ---------------------------------------------------------------------------------------------
# The crafted kinds.

def array(dtype: str, shape: list, data: bytes) -> dict:
    return {"dtype": dtype, "shape": shape, "data": data}


def on_tick(field: str, value: Callable[[dict], Any]) -> Callable[[dict], bytes]:
    """An edit of a tick body: ``field`` set to ``value(body)`` (None: removed)."""
    def edit(decoded: dict) -> bytes:
        new = value(decoded)
        if new is None:
            decoded.pop(field)
        else:
            decoded[field] = new
        return pack(decoded)
    return edit


def header_population(size: int, consistent: bool) -> Callable[[dict], bytes]:
    """The header's input population grown to ``size`` neurons; with ``consistent``, the
    populations after it and ``n_neurons`` follow, so the header agrees with itself."""
    def edit(header: dict) -> bytes:
        header["populations"][0]["size"] = size
        if consistent:
            start = 0
            for population in header["populations"]:
                population["start"] = start
                start += population["size"]
            header["n_neurons"] = start
        return pack(header)
    return edit


def raw_weights(value: bytes) -> Callable[[dict], bytes]:
    """An edit of a tick body: its ``weights`` replaced by the msgpack bytes ``value``."""
    def edit(decoded: dict) -> bytes:
        items = [(key, item) for key, item in decoded.items() if key != "weights"]
        return bytes([0x80 | len(items) + 1]) + b"".join(pack(k) + pack(v) for k, v in items) + pack("weights") + value
    return edit


def nested_lists(depth: int) -> Callable[[dict], bytes]:
    """``weights`` made of ``depth`` lists nested in each other."""
    return raw_weights(b"\x91" * depth + b"\xc0")


def array_bomb(levels: int, length: int) -> Callable[[dict], bytes]:
    """``weights`` made of ``levels`` nested array headers, each declaring ``length`` items
    (msgpack allocates a list at its declared length before reading an item of it)."""
    return raw_weights((b"\xdc" + length.to_bytes(2, "big")) * levels + b"\x00" * 4096)


def with_type(kind: str) -> Callable[[dict], dict]:
    def edit(record: dict) -> dict:
        decoded = body(record)
        decoded["type"] = kind
        return dict(record, type=kind, body=pack(decoded))
    return edit


@dataclass
class Kind:
    """One crafted log: the record edited (type, tick), how (``edit(body) -> body bytes``, or
    ``frame(record) -> record``), what the reader says, and where (default: the record edited)."""

    name: str
    record: tuple[str, int]
    message: str
    edit: Callable[[dict], bytes] | None = None
    frame: Callable[[dict], dict] | None = None
    at: tuple[str, int] | None = None


def _state_key(snapshot: dict) -> str:
    return next(key for key, value in snapshot["state"].items() if value is not None and len(value["data"]) >= 16)


def truncated_state(snapshot: dict) -> bytes:
    key = _state_key(snapshot)
    snapshot["state"][key]["data"] = snapshot["state"][key]["data"][:-8]
    return pack(snapshot)


KINDS = [
    Kind("counts of shape [0, 2^63]", ("tick", 3), "larger than any array can be",
         on_tick("counts", lambda b: array("<i8", [0, 2**63], b""))),
    Kind("counts as float", ("tick", 3), "must be an array of dtype <i8, got <f8",
         on_tick("counts", lambda b: dict(b["counts"], dtype="<f8"))),
    Kind("a narrow activation", ("tick", 3), "must be an array of shape [8, 8]",
         on_tick("activation", lambda b: array("<f8", [8, 3], bytes(8 * 3 * 8)))),
    Kind("dtype object", ("tick", 3), "is not one of the format's dtypes",
         on_tick("outputs", lambda b: dict(b["outputs"], dtype="|O"))),
    Kind("dtype complex128", ("tick", 3), "is not one of the format's dtypes",
         on_tick("outputs", lambda b: array("complex128", [8, 1], bytes(128)))),
    Kind("dtype unicode", ("tick", 3), "is not one of the format's dtypes",
         on_tick("batch", lambda b: array("<U8", [2], bytes(64)))),
    Kind("dtype big-endian", ("tick", 3), "is not one of the format's dtypes",
         on_tick("outputs", lambda b: dict(b["outputs"], dtype=">f8"))),
    Kind("a negative dimension", ("tick", 3), "not a list of at most 8 non-negative integers",
         on_tick("batch", lambda b: dict(b["batch"], shape=[-8]))),
    Kind("a shape whose product overflows", ("tick", 3), "larger than any array can be",
         on_tick("outputs", lambda b: dict(b["outputs"], shape=[2**32, 2**32]))),
    Kind("data shorter than the shape", ("tick", 3), "needs 64 bytes, has 56",
         on_tick("batch", lambda b: dict(b["batch"], data=b["batch"]["data"][:-8]))),
    Kind("header: an input of 4e8 neurons", ("header", -1), "must be an array of shape [8, 400000006]",
         header_population(400_000_000, consistent=True), at=("tick", 0)),
    Kind("header: an input of 1e12 neurons", ("header", -1), "'populations[1].start': must be 1000000000000",
         header_population(10**12, consistent=False)),
    Kind("body tick differs from the frame's", ("tick", 3), "differs from its body's ('tick', 4)",
         on_tick("tick", lambda b: 4)),
    Kind("a missing field", ("tick", 3), "lacks loss", on_tick("loss", lambda b: None)),
    Kind("an unknown field", ("tick", 3), "has unknown bogus", on_tick("bogus", lambda b: 1)),
    Kind("a string where an integer goes", ("header", -1), "'batch_size': must be an integer",
         lambda h: pack({**h, "batch_size": "8"})),
    Kind("a snapshot with a truncated state array", ("snapshot", 5), "needs 64 bytes, has 56", truncated_state),
    Kind("a projection from a population that does not exist", ("header", -1), "names no population",
         lambda h: pack({**h, "projections": [dict(h["projections"][0], pre="ghost"), h["projections"][1]]})),
    Kind("topology: a synapse to a neuron outside its population", ("topology", -1),
         "holds neuron indices outside population 'h'",
         lambda t: pack({**t, "projections": [
             dict(t["projections"][0], post=array("<i4", [8], np.full(8, 99, "<i4").tobytes())), t["projections"][1]]})),
    Kind("lists nested 2000 deep", ("tick", 3), "containers nest deeper than msgpack unpacks", nested_lists(2000)),
    Kind("lists nested 100 deep", ("tick", 3), "field 'weights': must be a map", nested_lists(100)),
    Kind("an array declaring 2^32 - 1 items", ("tick", 3), "more than its",
         raw_weights(b"\xdd\xff\xff\xff\xff" + b"\x00" * 64)),
    Kind("a map declaring 2^32 - 1 entries", ("tick", 3), "exceeds max_map_len",
         raw_weights(b"\xdf\xff\xff\xff\xff" + b"\x00" * 64)),
    Kind("1000 nested arrays of 60000 declared items", ("tick", 3), "more than its", array_bomb(1000, 60000)),
    Kind("an unknown record type", ("tick", 3), "the record type is unknown ('bogus')", frame=with_type("bogus")),
    Kind("an end record of unknown status", ("end", 10), "'status': must be one of",
         lambda e: pack({**e, "status": "exploded"})),
]


def craft(real_log: dict, kind: Kind) -> tuple[bytes, int]:
    """The crafted log's bytes, and the offset of the record the reader names."""
    records = [dict(r) for r in real_log["frames"]]
    position = next(i for i, r in enumerate(records) if (r["type"], r["tick"]) == kind.record)
    if kind.frame is not None:
        records[position] = kind.frame(records[position])
    else:
        records[position]["body"] = kind.edit(body(records[position]))
    data, offsets = chained(records)
    return data, offsets[position if kind.at is None else
                         next(i for i, r in enumerate(records) if (r["type"], r["tick"]) == kind.at)]


def read_all(path: Path) -> None:
    """Everything the Python API reads: open, check, every record, the messages, the end."""
    with LogReader(path) as log:
        log.check()
        for record in log.records(ALL):
            for value in record.body.values():
                if isinstance(value, dict) and "dtype" in value:
                    record.decode(value)
        log.messages()
        log.dfa_matrices()
        log.end  # noqa: B018


@pytest.mark.parametrize("keep_index", [False, True], ids=["scan", "stale index"])
@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_a_crafted_log_is_a_located_format_error(real_log, tmp_path, kind: Kind, keep_index: bool):
    data, offset = craft(real_log, kind)
    path = tmp_path / "run.log"
    path.write_bytes(data)
    if keep_index:  # the index of the log before it was edited: stale, so the log is scanned
        Path(str(path) + ".idx").write_bytes(real_log["index"])
    tick = (kind.at or kind.record)[1]
    started = time.perf_counter()
    with pytest.raises(LogFormatError) as caught:
        read_all(path)
    assert time.perf_counter() - started < SECONDS
    error = caught.value
    assert (error.tick, error.offset) == (tick, offset), str(error)
    assert kind.message in str(error)
    assert f"byte {offset}" in str(error) and "fix:" in str(error)


def ribbed_command(*args: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "ribbed.cli", *args], capture_output=True, text=True,
                            timeout=timeout, env={**os.environ, "COLUMNS": "250"})
    return result, time.perf_counter() - started


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_every_command_names_the_crafted_record(real_log, tmp_path, kind: Kind):
    data, offset = craft(real_log, kind)
    path = tmp_path / "run.log"
    path.write_bytes(data)
    tick = (kind.at or kind.record)[1]
    commands = {"info": (["log", "info", str(path)], 2),
                "show": (["log", "show", str(path)], 2),
                "export": (["log", "export", str(path), "--format", "csv", "--out", str(tmp_path / "out.csv")], 2),
                "verify": (["replay", str(path), "--verify"], 1)}
    for name, (args, code) in commands.items():
        result, seconds = ribbed_command(*args)
        assert result.returncode == code, (name, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, (name, result.stderr)
        assert seconds < SECONDS, (name, seconds)
        assert f"tick {tick}" in result.stderr and f"byte {offset}" in result.stderr, (name, result.stderr)
        assert kind.message in result.stderr, (name, result.stderr)
    assert not (tmp_path / "out.csv").exists() or (tmp_path / "out.csv").stat().st_size == 0


def test_a_snapshot_that_does_not_fit_its_network_is_a_located_error(real_log, tmp_path):
    """A snapshot whose executor state is well formed but does not fit the network (its kinds
    and shapes are the executor's, not the page's) fails where it is restored, at its tick."""
    records = [dict(r) for r in real_log["frames"]]
    position = next(i for i, r in enumerate(records) if (r["type"], r["tick"]) == ("snapshot", 10))
    snapshot = body(records[position])
    snapshot["state"]["/neurons/0/alpha"] = array("<f8", [2, 2], bytes(32))  # a scalar, as a matrix
    records[position]["body"] = pack(snapshot)
    data, offsets = chained(records)
    path = tmp_path / "run.log"
    path.write_bytes(data)
    result, _ = ribbed_command("replay", str(path), "--until", "10", "--out", str(tmp_path / "state"))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"tick 10: the snapshot at byte {offsets[position]} does not fit the network" in result.stderr


# ---------------------------------------------------------------------------------------------
# Memory bounded by the file's size.

RSS_SCRIPT = r"""
import json, resource, sys, warnings
import pandas  # noqa: F401  (imported before the first measure: not the reader's growth)
import ribbed.log.messages
from ribbed.errors import LogError
from ribbed.log.reader import LogReader

def peak():
    # The process's own high-water mark (VmHWM).  getrusage's ru_maxrss is no use here: after
    # fork and exec it still holds the forking parent's peak (the test runner's, hundreds of MB).
    with open("/proc/self/status") as status:
        return int(status.read().split("VmHWM:")[1].split()[0]) * 1024

warnings.simplefilter("ignore")
with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")  # the high-water mark starts again from what the imports left resident
before, outcome = peak(), {}
for path in sys.argv[1:]:
    try:
        with LogReader(path) as log:
            log.check()
            frame = log.messages()
            log.end
        outcome[path] = f"read: {len(frame)} messages"
    except LogError as exc:
        outcome[path] = type(exc).__name__
print(json.dumps({"before": before, "after": peak(), "outcome": outcome}))
"""

#: The crafted kinds that declare huge sizes (arrays, containers, populations).
HUGE = ["counts of shape [0, 2^63]", "a shape whose product overflows", "header: an input of 4e8 neurons",
        "header: an input of 1e12 neurons", "an array declaring 2^32 - 1 items", "a map declaring 2^32 - 1 entries",
        "1000 nested arrays of 60000 declared items", "lists nested 2000 deep"]


@pytest.fixture(scope="module")
def summary_log(tmp_path_factory) -> bytes:
    """A real log at level summary cut after tick 3 (no snapshot, as a run killed early): its
    header's input population then grown to 1e12 neurons, consistently.  Nothing in the file
    contradicts the header (a summary log holds no per-neuron arrays), so it is read: the issue's
    ``log show`` allocated 7.28 TiB for such a header."""
    out = tmp_path_factory.mktemp("summary") / "run"
    ribbed.run(ribbed.load_scenario(xor("summary")), out=out)
    records = frames((out / "run.log").read_bytes())
    records = records[:1 + next(i for i, r in enumerate(records) if (r["type"], r["tick"]) == ("tick", 3))]
    records[0] = dict(records[0], body=header_population(10**12, consistent=True)(body(records[0])))
    return chained(records)[0]


def test_reading_crafted_logs_takes_memory_bounded_by_their_size(real_log, summary_log, tmp_path):
    """Peak RSS growth while reading every crafted log that declares a huge size (and the
    summary log whose header claims 1e12 inputs, which is read) stays within 64 MiB plus ten
    times the largest file: the arrays the reader makes are views of the file's bytes or small
    multiples of them, and nothing is made from a declared size (the issue's figures: 2.98 GiB
    from a 333 KB file for 4e8 inputs, 7.28 TiB for 1e12).  64 MiB: the interpreter's own
    growth while it reads (pandas' first DataFrames, numpy's buffers), measured at about 6 MiB
    (Linux: the peak is read from /proc)."""
    paths = []
    for kind in (k for k in KINDS if k.name in HUGE):
        path = tmp_path / f"{len(paths)}.log"
        path.write_bytes(craft(real_log, kind)[0])
        paths.append(path)
    accepted = tmp_path / "summary.log"
    accepted.write_bytes(summary_log)
    paths.append(accepted)
    result = subprocess.run([sys.executable, "-c", RSS_SCRIPT, *map(str, paths)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout)
    largest = max(path.stat().st_size for path in paths)
    growth = measured["after"] - measured["before"]
    print(f"peak RSS {measured['before'] / 2**20:.1f} MiB before, {measured['after'] / 2**20:.1f} MiB after "
          f"reading {len(paths)} logs of at most {largest} bytes: growth {growth / 2**20:.1f} MiB")
    assert growth <= (64 << 20) + 10 * largest, measured
    outcome = measured["outcome"]
    assert outcome.pop(str(accepted)).startswith("read: ")
    assert set(outcome.values()) == {"LogFormatError"}, outcome


def test_a_header_claiming_1e12_inputs_is_shown_without_allocating_them(summary_log, tmp_path):
    path = tmp_path / "run.log"
    path.write_bytes(summary_log)
    for args in (["log", "show", str(path)], ["log", "info", str(path)]):
        result, seconds = ribbed_command(*args)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        assert seconds < SECONDS
    assert "readout activation" in ribbed_command("log", "show", str(path), "--limit", "1")[0].stdout


# ---------------------------------------------------------------------------------------------
# Trailing garbage, and damage that is not at the end.

@pytest.mark.parametrize("garbage", [b"\x00", b"\xc1", b"abc", b"\x07" + bytes(range(256))],
                         ids=["a zero byte", "a byte msgpack never uses", "three letters", "257 bytes"])
@pytest.mark.parametrize("keep_index", [False, True], ids=["scan", "index"])
def test_trailing_garbage_is_read_like_a_truncation(real_log, tmp_path, garbage: bytes, keep_index: bool):
    path = tmp_path / "run.log"
    path.write_bytes(real_log["data"] + garbage)
    if keep_index:
        Path(str(path) + ".idx").write_bytes(real_log["index"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LogTruncatedWarning)
        with LogReader(path) as log:
            assert log.check() == len(real_log["frames"])
            assert [r.data for r in log.records(ALL)] == [r["body"] for r in real_log["frames"]]
            assert log.truncated_at == len(real_log["data"])
            assert log.end["status"] == "completed"
    assert [str(w.message) for w in caught if issubclass(w.category, LogTruncatedWarning)] == [
        f"{path}: the log ends with {len(garbage)} bytes at byte {len(real_log['data'])} that are not a record "
        "(bytes appended after its last record, or a damaged last record); read up to tick 9"]


def test_replay_verifies_a_log_with_trailing_garbage_as_a_truncated_one(real_log, tmp_path):
    garbage, truncated = tmp_path / "garbage.log", tmp_path / "truncated.log"
    garbage.write_bytes(real_log["data"] + b"\x00\x01\x02")
    truncated.write_bytes(real_log["data"] + pack({"a": 1})[:-1])  # a record cut short
    for path in (garbage, truncated):
        result, _ = ribbed_command("replay", str(path), "--verify")
        assert result.returncode == 0, result.stderr
        assert "verified: 10 ticks and 2 snapshots" in result.stdout
        assert "warning:" in result.stderr and "Traceback" not in result.stderr


def test_damage_before_the_last_record_is_an_error_not_a_truncation(real_log, tmp_path):
    """Bytes that are not a record, with a record after them, are a damaged log."""
    data = bytearray(real_log["data"])
    offsets = chained(real_log["frames"])[1]
    position = next(i for i, r in enumerate(real_log["frames"]) if (r["type"], r["tick"]) == ("tick", 4))
    data[offsets[position]] = 0x00  # the record's map header: now an integer, then stray bytes
    path = tmp_path / "run.log"
    path.write_bytes(bytes(data))
    with pytest.raises(LogFormatError) as caught:
        LogReader(path)
    assert caught.value.offset == offsets[position]


# ---------------------------------------------------------------------------------------------
# The index is a cache: damaged, it is rebuilt.

def _index_damages(index: bytes) -> dict[str, bytes]:
    document = msgpack.unpackb(index, raw=False)
    digests = bytearray(document["digests"])
    digests[32 * 5] ^= 0xFF  # the sixth record's digest
    offsets = np.frombuffer(document["offsets"]["data"], dtype="<i8").copy()
    offsets[4] += 3
    ticks = np.frombuffer(document["ticks"]["data"], dtype="<i8").copy()
    ticks[6] = 99
    middle = bytearray(index)
    middle[len(index) // 2] ^= 0x55
    return {"a digest changed": pack({**document, "digests": bytes(digests)}),
            "an offset moved": pack({**document, "offsets": {**document["offsets"], "data": offsets.tobytes()}}),
            "a tick changed": pack({**document, "ticks": {**document["ticks"], "data": ticks.tobytes()}}),
            "a byte changed": bytes(middle), "cut short": index[:len(index) // 2], "empty": b""}


def test_a_damaged_index_is_rebuilt_not_reported(real_log, tmp_path):
    path = tmp_path / "run.log"
    path.write_bytes(real_log["data"])
    index = Path(str(path) + ".idx")
    from ribbed.log import verify

    for n, (name, damaged) in enumerate(_index_damages(real_log["index"]).items()):
        index.write_bytes(damaged)
        with LogReader(path) as log:
            assert log.tick(5).tick == 5, name
            assert log.check() == len(real_log["frames"]), name
            assert [r.data for r in log.records(ALL)] == [r["body"] for r in real_log["frames"]], name
            assert len(log.messages(ticks=(0, 10))) == 10 * 30, name
        index.write_bytes(damaged)
        if n == 0:  # the command once (a new process: its import alone takes seconds), the function for all
            result, _ = ribbed_command("replay", str(path), "--verify")
            assert result.returncode == 0 and "verified" in result.stdout, (name, result.stderr)
            index.write_bytes(damaged)
        assert verify(path).ok, name


def test_a_damaged_log_with_a_damaged_index_is_still_an_error_at_its_tick(real_log, tmp_path):
    from ribbed.errors import LogCorruptError

    path = tmp_path / "run.log"
    data = bytearray(real_log["data"])
    offsets = chained(real_log["frames"])[1]
    position = next(i for i, r in enumerate(real_log["frames"]) if (r["type"], r["tick"]) == ("tick", 6))
    data[offsets[position + 1] - 20] ^= 0xFF  # inside tick 6's body
    path.write_bytes(bytes(data))
    Path(str(path) + ".idx").write_bytes(_index_damages(real_log["index"])["a digest changed"])
    with LogReader(path) as log:
        assert log.tick(2).tick == 2
        with pytest.raises(LogCorruptError) as caught:
            log.check()
    assert (caught.value.tick, caught.value.offset) == (6, offsets[position])


def test_the_index_is_replaced_whole(tmp_path, monkeypatch):
    """Written through a temporary file and a rename: a failed write leaves the old index as it
    was, and no temporary file."""
    from ribbed.log import writer

    path = tmp_path / "run.log"
    writer.write_index(path, [(0, -1, 0, bytes(32))], 100)
    before = Path(str(path) + ".idx").read_bytes()

    def full_disk(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer.os, "replace", full_disk)
    with pytest.raises(OSError):
        writer.write_index(path, [(0, -1, 0, bytes(32)), (2, 0, 100, bytes(32))], 200)
    assert Path(str(path) + ".idx").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.log.idx"]


# ---------------------------------------------------------------------------------------------
# Messages a log's level does not hold, and messages in bounded blocks.

def test_asking_for_messages_the_level_does_not_hold_is_an_error(tmp_path):
    ribbed.run(ribbed.load_scenario(xor("summary", ticks=5)), out=tmp_path / "run")
    path = tmp_path / "run" / "run.log"
    with LogReader(path) as log:
        assert len(log.messages()) == 5 * 2  # the readout activations
        with pytest.raises(LogError) as caught:
            log.messages(kind="error")
        assert "level 'summary' holds no error messages" in str(caught.value)
        assert "log: {level: messages}" in str(caught.value)
        with pytest.raises(LogError, match="holds no forward messages"):
            log.messages(stage="forward")
        assert len(log.messages(kind=["activation", "error"])) == 10  # some of what is asked is there
    result, _ = ribbed_command("log", "show", str(path), "--kind", "error")
    assert result.returncode == 2 and "level 'summary'" in result.stderr and "Traceback" not in result.stderr


def test_kinds_that_are_never_expanded_are_an_error_at_any_level(real_log, tmp_path):
    path = tmp_path / "run.log"
    path.write_bytes(real_log["data"])
    with LogReader(path) as log:
        with pytest.raises(LogError, match="only their number per tick is logged"):
            log.messages(kind="reward")
        with pytest.raises(LogError, match="holds no guide messages"):
            log.messages(stage="guide")


def test_messages_come_in_blocks_of_bounded_size(real_log, tmp_path):
    from ribbed.log.messages import iter_messages

    path = tmp_path / "run.log"
    path.write_bytes(real_log["data"])
    with LogReader(path) as log:
        whole = list(iter_messages(log))
        small = list(iter_messages(log, block_bytes=2000))
    assert len(whole) == 1 and len(small) >= 10
    per_message = 26 + 8 * 8  # columns, and 8 payload values of 8 bytes
    assert max(len(block) for block in small) * per_message <= 2 * 2000
    for column in ("tick", "stage", "kind", "src", "dst", "payload"):
        assert np.array_equal(np.concatenate([b[column] for b in small]), whole[0][column])
