"""The keyed digest chain (a scenario's ``log.key_file``): HMAC-SHA256 under the run's key, so
that a record edited and re-chained without the key fails ``replay --verify --key-file`` at its
tick; the key is never written anywhere; a key file that cannot be used is a located error; a
resumed keyed run needs the same key."""

from __future__ import annotations

import hashlib
import hmac
import shutil
import warnings
import zlib
from pathlib import Path

import msgpack
import pytest
from typer.testing import CliRunner

import ribbed
from ribbed.cli import app
from ribbed.errors import LogError, LogIntegrityError, LogUnauthenticatedWarning, RibbedError, ScenarioError
from ribbed.log import verify
from ribbed.log.keys import LogKey, key_id, read_key_file
from ribbed.log.reader import LogReader
from ribbed.runner import resume

SEED = b"ribbed-log\x00"
KEY = bytes(range(7, 39))  # 32 bytes
OTHER = bytes(range(100, 132))
ALL = ("header", "topology", "tick", "snapshot", "end")

SCENARIO = """name: keyed
seed: 0
task: {kind: xor}
populations:
  - {name: in, size: 2, role: input}
  - {name: h, size: 4, activation: tanh}
  - {name: out, size: 2, role: output, activation: identity}
projections:
  - {pre: in, post: h}
  - {pre: h, post: out}
run: {ticks: 10, batch_size: 8, eval_every: 5}
log: {level: messages, key_file: secrets/run.key}
"""


def keyed_scenario(folder: Path, key: bytes = KEY) -> Path:
    """A scenario file whose log is keyed by ``secrets/run.key`` (relative to its folder)."""
    (folder / "secrets").mkdir(parents=True, exist_ok=True)
    (folder / "secrets" / "run.key").write_bytes(key)
    path = folder / "keyed.yaml"
    path.write_text(SCENARIO, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def keyed_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("keyed")
    ribbed.run(keyed_scenario(folder), out=folder / "run")
    return folder / "run"


def records_of(path: Path) -> list[dict]:
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(path.read_bytes())
    return list(unpacker)


def hmac_chain(key: bytes):
    return lambda previous, body: hmac.new(key, previous + body, hashlib.sha256).digest()


def sha256_chain(previous: bytes, body: bytes) -> bytes:
    return hashlib.sha256(previous + body).digest()


def rewrite(path: Path, records: list[dict], chain_of, start: int = 0) -> list[int]:
    """Write ``records`` to ``path`` with CRCs recomputed and digests from record ``start`` on
    re-chained by ``chain_of(i)`` (earlier ones kept); the records' offsets."""
    previous, parts, offsets, offset = SEED, [], [], 0
    for i, record in enumerate(records):
        if i >= start:
            record = dict(record, crc=zlib.crc32(record["body"]) & 0xFFFFFFFF)
            record["digest"] = chain_of(i)(previous, record["body"])
        previous = record["digest"]
        part = msgpack.packb(record, use_bin_type=True)
        offsets.append(offset)
        offset += len(part)
        parts.append(part)
    path.write_bytes(b"".join(parts))
    Path(str(path) + ".idx").unlink(missing_ok=True)
    return offsets


def edited(record: dict) -> dict:
    body = msgpack.unpackb(record["body"], raw=False)
    body["loss"] += 1.0
    return dict(record, body=msgpack.packb(body, use_bin_type=True))


def position_of(records: list[dict], kind: str, tick: int) -> int:
    return next(i for i, r in enumerate(records) if (r["type"], r["tick"]) == (kind, tick))


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("writer", ["process", "thread"])
def test_a_keyed_log_is_chained_with_hmac_and_records_only_the_key_id(tmp_path, monkeypatch, writer):
    monkeypatch.setenv("RIBBED_LOG_WRITER", writer)
    ribbed.run(keyed_scenario(tmp_path), out=tmp_path / "run")
    path = tmp_path / "run" / "run.log"
    records = records_of(path)
    header = msgpack.unpackb(records[0]["body"], raw=False)
    assert list(header)[-1] == "chain" and header["chain"] == {"kind": "hmac-sha256", "key_id": key_id(KEY)}
    assert key_id(KEY) == hashlib.sha256(b"ribbed-log key id\x00" + KEY).hexdigest()[:16]
    # Exactly what docs/log-format.md says is HMACed: the previous digest, then the body.
    previous = SEED
    for record in records:
        assert record["digest"] == hmac.new(KEY, previous + record["body"], hashlib.sha256).digest()
        assert record["digest"] != hashlib.sha256(previous + record["body"]).digest()
        previous = record["digest"]
    with LogReader(path, key_file=tmp_path / "secrets" / "run.key") as log:
        assert log.check() == len(records) and log.authenticated and log.key_id == key_id(KEY)
    # The key is written nowhere: not in the log, its index, summary.json or any other file.
    for written in (tmp_path / "run").iterdir():
        content = written.read_bytes()
        assert KEY not in content and KEY.hex().encode() not in content, written
    saved = (tmp_path / "run" / "scenario.yaml").read_text()
    assert f"key_file: {tmp_path / 'secrets' / 'run.key'}" in saved  # made absolute, as a data file's path


def test_replay_verify_authenticates_with_the_key_file(keyed_run):
    cli = CliRunner()
    key_file = keyed_run.parent / "secrets" / "run.key"
    verified = cli.invoke(app, ["replay", str(keyed_run / "run.log"), "--verify", "--key-file", str(key_file)])
    assert verified.exit_code == 0, verified.output
    assert "verified: 10 ticks and 2 snapshots" in verified.output and "authenticated" in verified.output
    info = cli.invoke(app, ["log", "info", str(keyed_run / "run.log"), "--key-file", str(key_file)])
    assert info.exit_code == 0 and f"HMAC-SHA256, key id {key_id(KEY)}: authenticated" in info.output
    assert verify(keyed_run / "run.log", key=LogKey(KEY)).ok


def test_without_the_key_a_keyed_log_is_read_but_not_verified(keyed_run):
    path = keyed_run / "run.log"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LogUnauthenticatedWarning)
        with LogReader(path) as log:
            assert log.check() > 0 and log.keyed and not log.authenticated
            assert len(log.messages(ticks=(0, 2))) > 0
    assert any("keyed" in str(w.message) and "--key-file" in str(w.message) for w in caught)
    cli = CliRunner()
    info = cli.invoke(app, ["log", "info", str(path)])
    assert info.exit_code == 0 and "NOT authenticated (give --key-file)" in info.output
    refused = cli.invoke(app, ["replay", str(path), "--verify"])
    assert refused.exit_code == 2, refused.output
    assert "keyed" in refused.output and "--key-file" in refused.output and "Traceback" not in refused.output
    with pytest.raises(LogError, match="verifying it needs its key"):
        verify(path)


@pytest.mark.parametrize("chain", ["plain SHA-256", "a wrong key"])
def test_a_record_edited_and_rechained_without_the_key_fails_at_its_tick(keyed_run, tmp_path, chain):
    records = records_of(keyed_run / "run.log")
    at = position_of(records, "tick", 5)
    records[at] = edited(records[at])
    path = tmp_path / "run.log"
    forged = sha256_chain if chain == "plain SHA-256" else hmac_chain(OTHER)
    offsets = rewrite(path, records, lambda i: forged, start=at)
    with pytest.raises(LogIntegrityError) as caught:
        with LogReader(path, key=LogKey(KEY)) as log:
            log.check()
    assert (caught.value.tick, caught.value.offset) == (5, offsets[at])
    assert "keyed digest chain" in str(caught.value)
    key_file = keyed_run.parent / "secrets" / "run.key"
    result = CliRunner().invoke(app, ["replay", str(path), "--verify", "--key-file", str(key_file)])
    assert result.exit_code == 1 and "differs: tick 5" in result.output and f"byte {offsets[at]}" in result.output


def test_a_log_rechained_whole_without_the_key_is_refused_at_its_header(keyed_run, tmp_path):
    """A forger can re-chain every record: dropping the header's chain (a plain log) or naming
    another key.  Neither is authenticated by the run's key; without a key the first reads as a
    plain log, which is why a keyed run is verified with --key-file."""
    records = records_of(keyed_run / "run.log")
    header = msgpack.unpackb(records[0]["body"], raw=False)
    plain, other = tmp_path / "plain.log", tmp_path / "other.log"
    rewrite(plain, [dict(records[0], body=msgpack.packb({k: v for k, v in header.items() if k != "chain"},
                                                        use_bin_type=True))] + records[1:], lambda i: sha256_chain)
    header["chain"]["key_id"] = key_id(OTHER)
    rewrite(other, [dict(records[0], body=msgpack.packb(header, use_bin_type=True))] + records[1:],
            lambda i: hmac_chain(OTHER))
    for path, message in ((plain, "is not keyed"), (other, f"has id {key_id(KEY)}")):
        with pytest.raises(LogIntegrityError, match=message) as caught:
            LogReader(path, key=LogKey(KEY))
        assert (caught.value.tick, caught.value.offset) == (-1, 0)
        report = verify(path, key=LogKey(KEY))
        assert not report.ok and report.difference.tick == -1
    with LogReader(plain) as log:  # (the downgrade, read without a key: a plain log)
        assert log.check() == len(records) and not log.keyed
    with LogReader(other, key=LogKey(OTHER)) as log:  # the forger's key authenticates the forger's log
        assert log.check() == len(records) and log.authenticated


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"), (b"", "is empty"), (b"short", "holds 5 bytes; a key is at least 16"),
    ("folder", "is a folder"), (b"k" * 5000, "more than 4096 bytes"),
])
def test_a_key_file_that_cannot_be_used_is_a_located_error(tmp_path, content, message):
    scenario = keyed_scenario(tmp_path)
    key_file = tmp_path / "secrets" / "run.key"
    key_file.unlink()
    if content == "folder":
        key_file.mkdir()
    elif content is not None:
        key_file.write_bytes(content)
    with pytest.raises(ScenarioError) as caught:
        ribbed.run(scenario, out=tmp_path / "run")
    problem = caught.value.problems[0]
    assert problem.source == str(scenario) and problem.path == "log.key_file"
    assert str(key_file) in problem.message and message in problem.message and problem.fix
    assert not (tmp_path / "run").exists()  # refused before anything was written
    checked = CliRunner().invoke(app, ["validate", str(scenario)])
    assert checked.exit_code == 2 and "log.key_file" in checked.output and message in checked.output
    result = CliRunner().invoke(app, ["replay", "any.log", "--verify", "--key-file", str(key_file)])
    assert result.exit_code == 2 and message in result.output and "--key-file" in result.output
    assert "Traceback" not in result.output


def test_an_unreadable_key_file_is_a_located_error(tmp_path, monkeypatch):
    import ribbed.log.keys as keys

    def denied(path, mode="r"):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(keys, "open", denied, raising=False)
    with pytest.raises(RibbedError) as caught:
        read_key_file(tmp_path / "run.key", source="ribbed replay", field="--key-file")
    problem = caught.value.problems[0]
    assert "cannot be read: Permission denied" in problem.message and "chmod" in problem.fix


def test_a_key_is_not_shown_by_its_repr():
    key = LogKey(KEY, "run.key")
    assert KEY.hex() not in repr(key) and repr(KEY) not in repr(key) and key_id(KEY) in repr(key)


def test_a_resumed_keyed_run_needs_the_same_key(keyed_run, tmp_path):
    folder = tmp_path / "scenario"
    keyed_scenario(folder)
    whole = tmp_path / "whole"
    ribbed.run(folder / "keyed.yaml", out=whole)
    cut = tmp_path / "cut"
    shutil.copytree(whole, cut)
    records = records_of(whole / "run.log")
    keep = position_of(records, "snapshot", 5) + 1
    (cut / "run.log").write_bytes(b"".join(msgpack.packb(r, use_bin_type=True) for r in records[:keep]))
    (cut / "run.log.idx").unlink()
    log_before = (cut / "run.log").read_bytes()
    key_file = folder / "secrets" / "run.key"

    key_file.write_bytes(OTHER)  # another key: refused, nothing written
    with pytest.raises(LogIntegrityError, match="not the key the log was written with"):
        resume(cut)
    key_file.unlink()  # no key: a located error
    with pytest.raises(ScenarioError) as caught:
        resume(cut)
    assert caught.value.problems[0].path == "log.key_file" and "does not exist" in caught.value.problems[0].message
    assert (cut / "run.log").read_bytes() == log_before

    key_file.write_bytes(KEY)
    resume(cut)
    with LogReader(cut / "run.log", key=LogKey(KEY)) as resumed, LogReader(whole / "run.log", key=LogKey(KEY)) as log:
        assert resumed.check() == log.check() and resumed.end["status"] == "completed"
        assert ([r.data for r in resumed.records(("tick", "snapshot"))]
                == [r.data for r in log.records(("tick", "snapshot"))])
    assert verify(cut / "run.log", key=LogKey(KEY)).ok
