"""docs/log-format.md is enough to read a log: a decoder written from the page alone (msgpack,
zlib, hashlib and numpy; nothing from ribbed.log) checks every CRC and the digest chain and
expands the same messages as ribbed's reader.  And a damaged log never gets past the reader as
anything but one of the documented LogErrors."""

from __future__ import annotations

import hashlib
import signal
import struct
import tempfile
import warnings
import zlib
from contextlib import contextmanager
from pathlib import Path

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import ribbed
import ribbed.log  # (only to compare with: the decoding below uses the page alone)
from ribbed.errors import LogCorruptError, LogError, LogFormatError, LogIntegrityError, LogTruncatedWarning

# ---------------------------------------------------------------------------------------------
# A decoder written from docs/log-format.md alone.

SEED = b"ribbed-log\x00"
KEYS = ["type", "tick", "crc", "digest", "body"]
TYPES = {"header", "topology", "tick", "snapshot", "end"}
DTYPES = {"<f4", "<f8", "<i1", "<i2", "<i4", "<i8", "<u1", "<u2", "<u4", "<u8", "|b1", "|i1", "|u1"}
TASK = -1


def decode_value(value):
    """Encoded arrays ({dtype, shape, data}) as numpy arrays, everywhere in a body."""
    if isinstance(value, dict) and set(value) == {"dtype", "shape", "data"}:
        dtype, shape, data = value["dtype"], value["shape"], value["data"]
        assert dtype in DTYPES and isinstance(data, bytes) and len(shape) <= 8
        dtype = np.dtype(dtype)
        assert len(data) == int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        return np.frombuffer(data, dtype=dtype).reshape(shape)
    if isinstance(value, dict):
        return {key: decode_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [decode_value(item) for item in value]
    return value


def decode_log(data: bytes) -> list[dict]:
    """Every record of a log, checked (frame, CRC, chain), bodies decoded."""
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data)
    previous, records, offset = SEED, [], 0
    for record in unpacker:
        assert isinstance(record, dict) and list(record) == KEYS, offset
        assert record["type"] in TYPES
        body = record["body"]
        assert isinstance(body, bytes) and isinstance(record["digest"], bytes) and len(record["digest"]) == 32
        assert zlib.crc32(body) & 0xFFFFFFFF == record["crc"], f"CRC of the record at byte {offset}"
        assert hashlib.sha256(previous + body).digest() == record["digest"], f"chain at byte {offset}"
        previous = record["digest"]
        decoded = decode_value(msgpack.unpackb(body, raw=False, strict_map_key=False))
        assert isinstance(decoded, dict) and decoded["tick"] == record["tick"]
        records.append({"type": record["type"], "tick": record["tick"], "offset": offset, "body": decoded,
                        "raw": body})
        offset = unpacker.tell()
    assert offset == len(data), "the log ends inside a record"
    return records


def expand(header: dict, topology: dict | None, body: dict) -> list[tuple]:
    """The messages of one tick record, (stage, kind, src, dst, payload), by the page's table."""
    populations = {p["name"]: p for p in header["populations"]}
    role = {p["role"]: p for p in header["populations"]}

    def ids(population):
        return range(population["start"], population["start"] + population["size"])

    synapses = []
    if topology is not None:
        for spec, table in zip(header["projections"], topology["projections"]):
            src = populations[spec["pre"]]["start"] + table["pre"].astype(np.int64)
            dst = populations[spec["post"]]["start"] + table["post"].astype(np.int64)
            synapses.append((spec, src, dst, table["feedback"]))
    messages = []
    if "activation" in body:
        a = body["activation"]
        messages += [("sense", "activation", TASK, i, a[:, i]) for i in ids(role["input"])]
        for _, src, dst, _ in synapses:
            messages += [("forward", "activation", s, d, a[:, s]) for s, d in zip(src.tolist(), dst.tolist())]
    outputs = body["outputs"]
    messages += [("readout", "activation", o, TASK, outputs[:, m]) for m, o in enumerate(ids(role["output"]))]
    if "answer" in body:
        answer = body["answer"]
        messages += [("readout", "error", TASK, o, answer[:, m]) for m, o in enumerate(ids(role["output"]))]
        if body["backward"]:
            delta = body["delta"]
            for spec, src, dst, feedback in reversed(synapses):
                if not spec["sends_error"]:
                    continue
                w = feedback if spec["feedback"] else body["weights"][spec["name"]]
                messages += [("backward", "error", d, s, w[k] * delta[:, d])
                             for k, (s, d) in enumerate(zip(src.tolist(), dst.tolist()))]
            messages += [("backward", "error", o, b, delta[:, o]) for o in ids(role["output"])
                         for b in header["broadcast"]]
    return messages


def frame_rows(frame) -> list[tuple]:
    """ribbed's messages DataFrame as (tick, stage, kind, src, dst, payload) rows."""
    payload = frame[[c for c in frame.columns if c.startswith("payload_")]].to_numpy()
    return list(zip(frame["tick"].tolist(), frame["stage"].astype(str).tolist(), frame["kind"].astype(str).tolist(),
                    frame["src"].tolist(), frame["dst"].tolist(), payload))


def assert_same_messages(expected: list[tuple], frame) -> None:
    got = frame_rows(frame)
    assert [m[:5] for m in got] == [m[:5] for m in expected]
    # (values compared exactly; the frame has one payload dtype for all its messages)
    for mine, theirs in zip(expected, got):
        assert np.array_equal(mine[5], theirs[5], equal_nan=True), mine[:5]


# ---------------------------------------------------------------------------------------------
# Logs of small runs.

def small_scenario(name: str, ticks: int, eval_every: int, **changes) -> dict:
    scenario = ribbed.load_scenario(name).model_dump()
    scenario["run"].update(ticks=ticks, eval_every=eval_every)
    scenario["log"] = {"level": "messages"}
    for population in scenario["populations"]:
        if population["role"] == "hidden":
            population["size"] = min(population["size"], 12)
    for key, value in changes.items():
        scenario[key] = value
    return scenario


RUNS = {
    # reference executor, backprop: weights in the tick records
    "xor": lambda: small_scenario("xor", 6, 3),
    # batched executor, feedback alignment (feedback weights in the topology), every other tick without error
    "digits-fa": lambda: small_scenario("digits-fa", 6, 3, schedule={"mode": "staged", "backward_every": 2}),
    # batched executor, direct feedback alignment: the output's delta broadcast
    "digits-dfa": lambda: small_scenario("digits-dfa", 4, 2),
}


@pytest.fixture(scope="module", params=sorted(RUNS))
def logged_run(request, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp(request.param) / "run"
    ribbed.run(RUNS[request.param](), out=out)
    return out / "run.log"


def test_a_decoder_from_the_page_reads_the_log_and_its_messages(logged_run):
    records = decode_log(logged_run.read_bytes())
    types = [r["type"] for r in records]
    header = records[0]["body"]
    assert types[:2] == ["header", "topology"] and types[-1] == "end"
    assert header["format"] == "ribbed-log" and header["version"] == 2 and header["level"] == "messages"
    assert [r["tick"] for r in records if r["type"] == "tick"] == list(range(header["ticks"]))
    eval_every = header["scenario"]["run"]["eval_every"]
    assert [r["tick"] for r in records if r["type"] == "snapshot"] == list(range(eval_every, header["ticks"] + 1,
                                                                                 eval_every))
    assert records[-1]["body"]["status"] == "completed" and records[-1]["tick"] == header["ticks"]
    topology = records[1]["body"]
    ticks = {r["tick"]: r["body"] for r in records if r["type"] == "tick"}

    # Counts: at the messages level every activation and error message is expanded.
    for tick, body in ticks.items():
        messages = expand(header, topology, body)
        for code, kind in ((0, "activation"), (1, "error")):
            assert header["kinds"][code] == kind
            assert sum(m[1] == kind for m in messages) == body["counts"][code], (tick, kind)

    # The messages of a few ticks, in order, as ribbed's reader gives them.
    expected = [(t, *m) for t in (1, 2, 3) for m in expand(header, topology, ticks[t])]
    assert {m[2] for m in expected} == {"activation", "error"}
    assert {m[1] for m in expected} == {"sense", "forward", "readout", "backward"}
    with ribbed.log.open_log(logged_run) as log:
        assert_same_messages(expected, log.messages(ticks=(1, 4)))
        # Filtered by agent: the same messages, in the same order.
        hidden = next(p for p in header["populations"] if p["role"] == "hidden")
        for agent in (hidden["start"] + 1, TASK):
            assert_same_messages([m for m in expected if agent in (m[3], m[4])],
                                 log.messages(ticks=(1, 4), agent=agent))
        assert_same_messages([m for m in expected if m[2] == "error"], log.messages(ticks=(1, 4), kind="error"))


def test_the_index_file_is_as_the_page_describes(logged_run):
    records = decode_log(logged_run.read_bytes())
    index = msgpack.unpackb(Path(str(logged_run) + ".idx").read_bytes(), raw=False)
    assert list(index) == ["format", "version", "log_size", "types", "ticks", "offsets", "digests"]
    assert index["format"] == "ribbed-log-index" and index["version"] == 1
    assert index["log_size"] == logged_run.stat().st_size
    codes = {"header": 0, "topology": 1, "tick": 2, "snapshot": 3, "end": 4}
    assert decode_value(index["types"]).tolist() == [codes[r["type"]] for r in records]
    assert decode_value(index["ticks"]).tolist() == [r["tick"] for r in records]
    assert decode_value(index["offsets"]).tolist() == [r["offset"] for r in records]
    previous, digests = SEED, []
    for record in records:
        previous = hashlib.sha256(previous + record["raw"]).digest()
        digests.append(previous)
    assert index["digests"] == b"".join(digests)


# ---------------------------------------------------------------------------------------------
# Damaged logs: only LogErrors, never anything else, never a hang.

@pytest.fixture(scope="module")
def small_log(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("fuzz") / "run"
    ribbed.run(small_scenario("xor", 4, 2), out=out)
    data = (out / "run.log").read_bytes()
    records = decode_log(data)
    ends = [r["offset"] for r in records[1:]] + [len(data)]
    return {"data": data, "index": (out / "run.log.idx").read_bytes(), "records": records,
            "starts": [r["offset"] for r in records], "ends": ends}


@contextmanager
def time_limit(seconds: int):
    """Turn a hang into a failure (where the platform has SIGALRM)."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def hung(*_):
        raise TimeoutError(f"reading the log took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def read_everything(data: bytes, index: bytes | None) -> tuple[list[tuple] | None, bool]:
    """Write a log (and its index) to a fresh folder and read all of it: the records read (None
    when a LogError stopped it) and whether a LogTruncatedWarning was given."""
    from ribbed.log.reader import LogReader

    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LogTruncatedWarning)
        path = Path(folder) / "run.log"
        path.write_bytes(data)
        if index is not None:
            Path(folder, "run.log.idx").write_bytes(index)
        try:
            with time_limit(60), LogReader(path) as log:
                count = log.check()
                read = [(r.type, r.tick, r.data) for r in log.records(("header", "topology", "tick", "snapshot",
                                                                          "end"))]
                assert len(read) == count
                for _ in log.records(("tick", "snapshot")):
                    pass
                log.messages()
                log.messages(agent=3, kind="error")
                log.end  # noqa: B018
        except LogError as exc:
            event(type(exc).__name__)
            read = None
        warned = any(issubclass(w.category, LogTruncatedWarning) for w in caught)
        if read is not None:
            event("read" + (" (truncated)" if warned else ""))
    return read, warned


def original(small_log, count: int | None = None) -> list[tuple]:
    return [(r["type"], r["tick"], r["raw"]) for r in small_log["records"][:count]]


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), keep_index=st.booleans())
def test_a_truncated_log_is_read_up_to_its_last_whole_record(small_log, data, keep_index):
    size = len(small_log["data"])
    length = data.draw(st.one_of(st.integers(0, size),
                                 st.sampled_from(small_log["ends"]),
                                 st.sampled_from(small_log["starts"]).map(lambda s: min(size, s + 40))))
    read, warned = read_everything(small_log["data"][:length], small_log["index"] if keep_index else None)
    whole = sum(end <= length for end in small_log["ends"])
    assert warned == (length not in (0, *small_log["ends"]))
    if whole == 0:
        assert read is None  # no header: not a log
    else:
        assert read == original(small_log, whole)


@settings(max_examples=140, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), keep_index=st.booleans())
def test_a_log_with_changed_bytes_is_refused_or_read_unchanged(small_log, data, keep_index):
    size = len(small_log["data"])
    anywhere = st.integers(0, size - 1)
    # the frames (type, tick, crc, digest, the body's length) of the records are small: aim at them too
    in_a_frame = st.builds(lambda start, at: min(size - 1, start + at), st.sampled_from(small_log["starts"]),
                           st.integers(0, 60))
    changes = data.draw(st.lists(st.tuples(st.one_of(anywhere, in_a_frame), st.integers(0, 255)),
                                 min_size=1, max_size=8))
    damaged = bytearray(small_log["data"])
    for position, value in changes:
        damaged[position] = value
    read, warned = read_everything(bytes(damaged), small_log["index"] if keep_index else None)
    if read is not None:  # a change that got through changed nothing that was read
        assert read == original(small_log, len(read))
        # A record length changed to reach past the end of the file looks like a truncated log
        # (without an index to say otherwise): it is read up to that record, with the warning.
        assert warned or len(read) == len(small_log["records"])
        if warned:
            event("read up to a damaged record length, as truncated")


# ---------------------------------------------------------------------------------------------
# Where the reader says the damage is.

def copy_log(small_log, folder: Path, *, keep_index: bool) -> Path:
    path = folder / "run.log"
    path.write_bytes(small_log["data"])
    if keep_index:
        Path(str(path) + ".idx").write_bytes(small_log["index"])
    return path


def tick_record(small_log, tick: int) -> dict:
    return next(r for r in small_log["records"] if r["type"] == "tick" and r["tick"] == tick)


def record_bytes(kind: str, tick: int, crc: int, digest: bytes, body: bytes) -> bytes:
    """A record as the page frames it (the CRC always as a msgpack uint32, so that the record
    keeps its size whatever the CRC's value)."""
    pack = msgpack.Packer(use_bin_type=True).pack
    return b"".join([b"\x85", pack("type"), pack(kind), pack("tick"), pack(tick), pack("crc"),
                     b"\xce" + struct.pack(">I", crc), pack("digest"), pack(digest), pack("body"), pack(body)])


def replace_record(path: Path, record: dict, new: bytes, size: int) -> None:
    data = bytearray(path.read_bytes())
    data[record["offset"]:record["offset"] + size] = new
    path.write_bytes(bytes(data))


def edited_body(record: dict) -> bytes:
    """The record's body with a different loss (same length: a float64 for a float64)."""
    body = msgpack.unpackb(record["raw"], raw=False, strict_map_key=False)
    body["loss"] = body["loss"] + 1.0
    new = msgpack.packb(body, use_bin_type=True)
    assert len(new) == len(record["raw"]) and new != record["raw"]
    return new


@pytest.mark.parametrize("keep_index", [True, False])
def test_a_crc_mismatch_names_the_tick_and_offset(small_log, tmp_path, keep_index):
    from ribbed.log.reader import LogReader

    path = copy_log(small_log, tmp_path, keep_index=keep_index)
    with LogReader(path) as log:
        ref = next(r for r in log.refs if r.type == "tick" and r.tick == 2)
        body_length = len(log.read(ref).data)
    assert ref.offset == tick_record(small_log, 2)["offset"]
    data = bytearray(path.read_bytes())
    data[ref.offset + ref.size - body_length // 2] ^= 0xFF  # inside the body
    path.write_bytes(bytes(data))
    if keep_index:  # through the index, the header opens, and the damage shows when tick 2 is read
        with LogReader(path) as log:
            with pytest.raises(LogCorruptError) as caught:
                log.tick(2)
            with pytest.raises(LogCorruptError):
                log.check()
    else:  # a scan checks every record when the log is opened
        with pytest.raises(LogCorruptError) as caught:
            LogReader(path)
    assert (caught.value.tick, caught.value.offset) == (2, ref.offset)


@pytest.mark.parametrize("keep_index", [True, False])
def test_an_edited_body_with_its_crc_recomputed_breaks_the_chain_at_its_tick(small_log, tmp_path, keep_index):
    from ribbed.log.reader import LogReader

    record = tick_record(small_log, 2)
    path = _with_edited_body(small_log, record, _digest_of(small_log, record), tmp_path, keep_index)
    with pytest.raises(LogIntegrityError) as caught:
        with LogReader(path) as log:
            log.check()
    assert (caught.value.tick, caught.value.offset) == (2, record["offset"])


def _with_edited_body(small_log, record: dict, digest: bytes, tmp_path, keep_index: bool):
    """A copy of the log with ``record``'s body edited and its CRC recomputed, its digest set to
    ``digest``; the record keeps its length (the log is drawn from a fixed seed, and the edited
    CRC is written as a uint32 like the original's)."""
    size = small_log["ends"][small_log["starts"].index(record["offset"])] - record["offset"]
    body = edited_body(record)
    new = record_bytes("tick", 2, zlib.crc32(body) & 0xFFFFFFFF, digest, body)
    assert len(new) == size, "the edited record changed length: pick another tick"
    path = copy_log(small_log, tmp_path, keep_index=keep_index)
    replace_record(path, record, new, size)
    return path


def _digest_of(small_log, record: dict) -> bytes:
    """The digest the record had (kept as it was: only body and CRC are changed)."""
    previous = SEED
    for r in small_log["records"]:
        previous = hashlib.sha256(previous + r["raw"]).digest()
        if r is record:
            return previous
    raise AssertionError("not a record of the log")


@pytest.mark.parametrize("keep_index", [True, False])
def test_an_edited_body_with_crc_and_digest_recomputed_still_breaks_the_chain(small_log, tmp_path, keep_index):
    from ribbed.log.reader import LogReader

    records = small_log["records"]
    record = tick_record(small_log, 2)
    position = records.index(record)
    previous = _digest_of(small_log, records[position - 1])
    digest = hashlib.sha256(previous + edited_body(record)).digest()
    path = _with_edited_body(small_log, record, digest, tmp_path, keep_index)
    with pytest.raises(LogIntegrityError) as caught:
        with LogReader(path) as log:
            log.check()
    # The index holds the digest the record had; without it, the next record no longer follows.
    following = records[position + 1]
    expected = (2, record["offset"]) if keep_index else (following["tick"], following["offset"])
    assert (caught.value.tick, caught.value.offset) == expected


def test_a_newer_version_is_refused(small_log, tmp_path):
    from ribbed.log.reader import LogReader

    header = msgpack.unpackb(small_log["records"][0]["raw"], raw=False, strict_map_key=False)
    header["version"] = 3
    body = msgpack.packb(header, use_bin_type=True)
    path = tmp_path / "run.log"
    path.write_bytes(record_bytes("header", -1, zlib.crc32(body) & 0xFFFFFFFF,
                                  hashlib.sha256(SEED + body).digest(), body))
    with pytest.raises(LogFormatError, match="version 3 is newer"):
        LogReader(path)


def index_bytes(records: list[dict], log_size: int) -> bytes:
    """An index of the first records of a log, written from the page."""
    codes = {"header": 0, "topology": 1, "tick": 2, "snapshot": 3, "end": 4}

    def array(values, dtype):
        values = np.asarray(values, dtype=dtype)
        return {"dtype": values.dtype.str, "shape": list(values.shape), "data": values.tobytes()}

    previous, digests = SEED, []
    for record in records:
        previous = hashlib.sha256(previous + record["raw"]).digest()
        digests.append(previous)
    return msgpack.packb({"format": "ribbed-log-index", "version": 1, "log_size": log_size,
                          "types": array([codes[r["type"]] for r in records], np.uint8),
                          "ticks": array([r["tick"] for r in records], np.int64),
                          "offsets": array([r["offset"] for r in records], np.int64),
                          "digests": b"".join(digests)}, use_bin_type=True)


def test_the_index_is_a_cache(small_log, tmp_path):
    """A missing index, or one that does not match the log (or lists other digests than its
    records'), is rebuilt by scanning; an index of the log's beginning (a log still being
    written) is used, and the rest scanned; the records read are the same."""
    from ribbed.log.reader import LogReader

    expected = original(small_log)
    records, ends = small_log["records"], small_log["ends"]
    path = copy_log(small_log, tmp_path, keep_index=True)
    index = Path(str(path) + ".idx")
    contents = [None, b"not msgpack", small_log["index"][:-5], index_bytes(records, ends[-1]),
                index_bytes(records[:4], ends[3]),  # the log has grown since
                index_bytes(records, ends[-1] + 10)]  # the log was cut since
    for content in contents:
        if content is None:
            index.unlink(missing_ok=True)
        else:
            index.write_bytes(content)
        with LogReader(path) as log:
            assert [(r.type, r.tick, r.data) for r in log.records(("header", "topology", "tick", "snapshot",
                                                                      "end"))] == expected
    # An index that lists other digests than the log's (a damaged cache) is dropped when a record
    # does not match it: the log is scanned, and read as it is, neither an error nor other data.
    other = [dict(r, raw=r["raw"] + b"x") if r["type"] == "snapshot" else r for r in records]
    index.write_bytes(index_bytes(other, ends[-1]))
    with LogReader(path) as log:
        assert log.check() == len(records)
        assert [(r.type, r.tick, r.data) for r in log.records(("header", "topology", "tick", "snapshot",
                                                                  "end"))] == expected
