"""Reading a message log: records checked against their CRC and digest chain, found through
the sidecar index (rebuilt by scanning when it is missing or stale), with bounded buffers.

Every problem is one of the documented errors of :mod:`ribbed.errors`: ``LogFormatError``
(not a log, an unknown version, a record that breaks the format), ``LogCorruptError`` (a CRC
mismatch) and ``LogIntegrityError`` (a broken digest chain), each naming the tick and byte
offset.  A log that ends inside a record (a crashed run) is read up to its last whole record,
with a ``LogTruncatedWarning``.  Nothing is unpickled or imported from a log.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import msgpack
import numpy as np

from ribbed.errors import LogCorruptError, LogError, LogFormatError, LogIntegrityError, LogTruncatedWarning, Problem
from ribbed.log.format import (
    DIGEST_SEED, FORMAT, OLDEST_VERSION, RECORD_KEYS, RECORD_TYPES, VERSION, FormatViolation, body_digest, crc, decode_array,
    unpack_body,
)
from ribbed.log.writer import INDEX_FORMAT, INDEX_SUFFIX

__all__ = ["DEFAULT_MAX_RECORD_BYTES", "LogReader", "Record", "RecordRef"]

#: The largest record a reader accepts by default (a snapshot of a large network is the largest).
DEFAULT_MAX_RECORD_BYTES = 8 << 30
_SCAN_CHUNK = 1 << 20
_FIX_CORRUPT = "the file was changed after it was written; use a copy of the original log, or re-run the scenario"


class RecordRef(NamedTuple):
    """Where one record is: its type, tick, byte offset and size, and its digest."""

    type: str
    tick: int
    offset: int
    size: int
    digest: bytes


class Record(NamedTuple):
    """One record, read and checked: its body map with arrays still encoded (see :meth:`array`),
    and the body's bytes."""

    type: str
    tick: int
    offset: int
    body: dict
    data: bytes

    def array(self, key: str) -> np.ndarray | None:
        """The array stored under ``key`` (None where the body has none)."""
        value = self.body.get(key)
        return None if value is None else _decode(value, self)

    def decode(self, value: Any) -> np.ndarray:
        """An encoded array found in this record's body, decoded (errors name this record)."""
        return _decode(value, self)


def _decode(value: Any, record: Record) -> np.ndarray:
    try:
        return decode_array(value)
    except FormatViolation as exc:
        raise LogFormatError(Problem("", f"tick {record.tick}", f"record at byte {record.offset}: {exc}",
                                     _FIX_CORRUPT), record.tick, record.offset) from None


class LogReader:
    """A message log opened for reading (see the module docstring).

    >>> log = LogReader("runs/digits/run.log")      # doctest: +SKIP
    >>> log.header["scenario"]["name"], log.ticks[-1]  # doctest: +SKIP
    """

    def __init__(self, path: str | Path, *, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES):
        self.path = Path(path)
        self.max_record_bytes = max_record_bytes
        self.truncated_at: int | None = None  # byte offset of an incomplete last record
        try:
            self._file = open(self.path, "rb")
        except OSError as exc:
            raise LogError(Problem(str(self.path), "", f"cannot open the log: {exc.strerror or exc}",
                                   "give the path of a run's run.log (ribbed run writes one in its run folder)")) from None
        self.size = os.fstat(self._file.fileno()).st_size
        self.refs = self._load_index()
        if not self.refs or self.refs[0].type != "header":
            raise self._format_error(0, None, "the file does not start with a ribbed log header",
                                     "give the path of a log written by ribbed run")
        self.header = self.read(self.refs[0]).body
        if self.header.get("format") != FORMAT or not isinstance(self.header.get("version"), int):
            raise self._format_error(0, None, "the header does not name the ribbed-log format",
                                     "give the path of a log written by ribbed run")
        if self.header["version"] > VERSION:
            raise self._format_error(0, None, f"log format version {self.header['version']} is newer than "
                                     f"this reader's ({VERSION})", "upgrade ribbed to read it")
        if self.header["version"] < OLDEST_VERSION:
            raise self._format_error(0, None, f"log format version {self.header['version']} is not one this "
                                     f"reader knows (it reads versions {OLDEST_VERSION} to {VERSION})",
                                     "give the path of a log written by ribbed run")
        self._by_tick = {ref.tick: ref for ref in self.refs if ref.type == "tick"}
        #: What other modules derive from this log once per reader (e.g. the message layout).
        self.cache: dict = {}

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> LogReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ what is in it

    @property
    def ticks(self) -> np.ndarray:
        """The ticks recorded, in order."""
        return np.array([ref.tick for ref in self.refs if ref.type == "tick"], dtype=np.int64)

    @property
    def snapshot_ticks(self) -> np.ndarray:
        return np.array([ref.tick for ref in self.refs if ref.type == "snapshot"], dtype=np.int64)

    @property
    def end(self) -> dict | None:
        """The end record's body (status, final tick), or None for a run that did not close its log."""
        last = self.refs[-1]
        return self.read(last).body if last.type == "end" else None

    def tick(self, tick: int) -> Record:
        if tick not in self._by_tick:
            raise LogError(Problem(str(self.path), "", f"tick {tick} is not in this log (it has ticks "
                                   f"{_ranges(self.ticks)})", "ask for a tick the log recorded"))
        return self.read(self._by_tick[tick])

    def topology(self) -> Record | None:
        ref = next((r for r in self.refs if r.type == "topology"), None)
        return None if ref is None else self.read(ref)

    @property
    def version(self) -> int:
        """The log's format version (its header's ``version``)."""
        return self.header["version"]

    def dfa_matrices(self) -> dict[str, np.ndarray] | None:
        """Each direct-feedback-alignment population's fixed matrix D (size x n_outputs), by
        population name, from the topology record; None where the log does not hold them (a
        log without a topology record, level ``summary``, or of format version 1)."""
        topology = self.topology()
        if topology is None or "dfa" not in topology.body:
            return None
        matrices = topology.body["dfa"]
        if not isinstance(matrices, dict):
            raise self._format_error(topology.offset, topology.tick, "the topology record's dfa is not a map",
                                     _FIX_CORRUPT)
        return {name: topology.decode(value) for name, value in matrices.items()}

    def snapshot(self, at_or_before: int) -> Record | None:
        """The last snapshot at or before a tick, or None."""
        refs = [r for r in self.refs if r.type == "snapshot" and r.tick <= at_or_before]
        return self.read(refs[-1]) if refs else None

    def records(self, types: tuple[str, ...] = ("tick",), ticks: range | None = None) -> Iterator[Record]:
        """The records of the given types, in file order; only those in ``ticks`` if given (read
        through the index: the rest of the file is not read)."""
        for ref in self.refs:
            if ref.type in types and (ticks is None or ref.tick in ticks):
                yield self.read(ref)

    def messages(self, *, ticks=None, agent: int | None = None, kind=None, stage=None):
        """The logged messages as a pandas DataFrame, filtered by tick (a tick, or a ``(start,
        stop)`` pair), agent (as sender or receiver; -1 is the task), kind and stage; only the
        records of those ticks are read (see :mod:`ribbed.log.messages`)."""
        from ribbed.log.messages import messages

        return messages(self, ticks=ticks, agent=agent, kind=kind, stage=stage)

    def check(self) -> int:
        """Read every record, checking CRCs and the whole digest chain; the number of records."""
        for ref in self.refs:
            self.read(ref)
        return len(self.refs)

    # ------------------------------------------------------------------ one record

    def read(self, ref: RecordRef) -> Record:
        """Read a record and check its CRC, its digest (chained to its predecessor's) and its body."""
        self._file.seek(ref.offset)
        data = self._file.read(ref.size)
        if len(data) != ref.size:
            raise self._format_error(ref.offset, ref.tick, "the file is shorter than its index says",
                                     f"delete {self.path}{INDEX_SUFFIX} so that it is rebuilt")
        record = self._unpack_record(data, ref.offset)
        position = self._position(ref)
        previous = DIGEST_SEED if position == 0 else self.refs[position - 1].digest
        body = self._check(record, ref.offset, previous)
        tick = record["tick"]
        if record["digest"] != ref.digest:  # the chain goes on from the digest the index (or scan) holds
            raise LogIntegrityError(Problem(str(self.path), f"tick {tick}", f"the {record['type']} record at byte "
                                            f"{ref.offset} breaks the digest chain (it, or a record before it, "
                                            "was edited)", _FIX_CORRUPT), tick, ref.offset)
        if (record["type"], tick) != (ref.type, ref.tick):
            raise self._format_error(ref.offset, tick, f"the record is a {record['type']} record of tick {tick}, "
                                     f"its index says a {ref.type} record of tick {ref.tick}",
                                     f"delete {self.path}{INDEX_SUFFIX} so that it is rebuilt")
        return Record(record["type"], tick, ref.offset, body, record["body"])

    def _position(self, ref: RecordRef) -> int:
        if not hasattr(self, "_positions"):
            self._positions = {r.offset: i for i, r in enumerate(self.refs)}
        return self._positions[ref.offset]

    def _unpack_record(self, data: bytes, offset: int) -> dict:
        try:
            record = msgpack.unpackb(data, raw=False, max_bin_len=len(data), max_str_len=64, max_array_len=0,
                                     max_map_len=len(RECORD_KEYS), max_ext_len=0)
        except (ValueError, TypeError, msgpack.exceptions.UnpackException) as exc:
            raise self._format_error(offset, None, f"not a msgpack record ({exc})", _FIX_CORRUPT) from None
        self._check_frame(record, offset)
        return record

    def _check_frame(self, record: Any, offset: int) -> None:
        if not isinstance(record, dict) or tuple(record) != RECORD_KEYS:
            raise self._format_error(offset, None, f"a record must be a map with the keys {list(RECORD_KEYS)}",
                                     _FIX_CORRUPT)
        kind, tick, check, digest, body = (record[k] for k in RECORD_KEYS)
        if (kind not in RECORD_TYPES or not isinstance(tick, int) or isinstance(tick, bool)
                or not isinstance(check, int) or not isinstance(digest, bytes) or len(digest) != 32
                or not isinstance(body, bytes)):
            raise self._format_error(offset, tick if isinstance(tick, int) else None,
                                     "a record field has the wrong type", _FIX_CORRUPT)

    def _check(self, record: dict, offset: int, previous: bytes) -> dict:
        tick, body = record["tick"], record["body"]
        if crc(body) != record["crc"]:
            raise LogCorruptError(Problem(str(self.path), f"tick {tick}", f"the {record['type']} record at byte "
                                          f"{offset} does not match its CRC", _FIX_CORRUPT), tick, offset)
        if body_digest(previous, body) != record["digest"]:
            raise LogIntegrityError(Problem(str(self.path), f"tick {tick}", f"the {record['type']} record at "
                                            f"byte {offset} breaks the digest chain (it, or a record before it, "
                                            "was edited)", _FIX_CORRUPT), tick, offset)
        try:
            decoded = unpack_body(body)
        except (ValueError, TypeError, FormatViolation, msgpack.exceptions.UnpackException) as exc:
            raise self._format_error(offset, tick, f"the record's body is not a msgpack map ({exc})",
                                     _FIX_CORRUPT) from None
        if decoded.get("tick") != tick or decoded.get("type") != record["type"]:
            raise self._format_error(offset, tick, "the record's type or tick differs from its body's", _FIX_CORRUPT)
        return decoded

    def _format_error(self, offset: int, tick: int | None, message: str, fix: str) -> LogFormatError:
        where = f"tick {tick}" if tick is not None else ""
        return LogFormatError(Problem(str(self.path), where, f"{message} (byte {offset})", fix), tick, offset)

    # ------------------------------------------------------------------ the index

    def _load_index(self) -> list[RecordRef]:
        """The records' places from the sidecar index when it matches the file, else by scanning
        (from where the index ends when the file has grown since it was written)."""
        refs = self._read_index()
        if refs is None:
            return self._scan(0, DIGEST_SEED, [])
        indexed_size = refs[-1].offset + refs[-1].size if refs else 0
        if indexed_size == self.size:
            return refs
        return self._scan(indexed_size, refs[-1].digest if refs else DIGEST_SEED, refs)

    def _read_index(self) -> list[RecordRef] | None:
        try:
            data = Path(str(self.path) + INDEX_SUFFIX).read_bytes()
            # (max_array_len=1: each index array's shape is a one-element list)
            index = msgpack.unpackb(data, raw=False, max_bin_len=len(data), max_str_len=64, max_array_len=1,
                                    max_map_len=16, max_ext_len=0)
            if index.get("format") != INDEX_FORMAT or index.get("version") != 1:
                return None
            types, ticks, offsets = (decode_array(index[k]) for k in ("types", "ticks", "offsets"))
            digests, size = index["digests"], index["log_size"]
            n = len(offsets)
            if (len(types) != n or len(ticks) != n or len(digests) != 32 * n or not isinstance(size, int)
                    or size > self.size or (n and (offsets[0] != 0 or np.any(np.diff(offsets) <= 0)
                                                   or offsets[-1] >= size or types.max() >= len(RECORD_TYPES)))):
                return None
        except (OSError, ValueError, TypeError, KeyError, AttributeError, FormatViolation,
                msgpack.exceptions.UnpackException):
            return None
        ends = np.append(offsets[1:], size)
        return [RecordRef(RECORD_TYPES[t], int(k), int(o), int(e - o), digests[32 * i:32 * i + 32])
                for i, (t, k, o, e) in enumerate(zip(types.tolist(), ticks.tolist(), offsets.tolist(), ends.tolist()))]

    def _scan(self, start: int, previous: bytes, refs: list[RecordRef]) -> list[RecordRef]:
        """Walk the records from byte ``start``, checking each one's CRC and digest chain."""
        refs = list(refs)
        self._file.seek(start)
        unpacker = msgpack.Unpacker(self._file, raw=False, read_size=_SCAN_CHUNK,
                                    max_buffer_size=self.max_record_bytes, max_bin_len=self.max_record_bytes,
                                    max_str_len=64, max_array_len=0, max_map_len=len(RECORD_KEYS), max_ext_len=0)
        offset = start
        while True:
            try:
                record = unpacker.unpack()
            except msgpack.OutOfData:
                break
            except msgpack.exceptions.BufferFull:
                raise self._format_error(offset, None, f"a record is larger than the reader's limit of "
                                         f"{self.max_record_bytes} bytes", "pass a larger max_record_bytes to "
                                         "LogReader (a snapshot of a large network can be GiBs)") from None
            except (ValueError, TypeError, msgpack.exceptions.UnpackException) as exc:
                raise self._format_error(offset, None, f"not a msgpack record ({exc})", _FIX_CORRUPT) from None
            end = start + unpacker.tell()  # tell() counts from where the unpacker began
            self._check_frame(record, offset)
            body = self._check(record, offset, previous)
            previous = record["digest"]
            if not refs and body.get("format") != FORMAT:
                raise self._format_error(0, None, "the file does not start with a ribbed log header",
                                         "give the path of a log written by ribbed run")
            refs.append(RecordRef(record["type"], record["tick"], offset, end - offset, previous))
            offset = end
        if offset < self.size:
            self.truncated_at = offset
            last = next((r.tick for r in reversed(refs) if r.type == "tick"), None)
            warnings.warn(f"{self.path}: the log ends inside a record at byte {offset} (a run that stopped "
                          f"while writing); read up to {'tick ' + str(last) if last is not None else 'its header'}",
                          LogTruncatedWarning, stacklevel=3)
        return refs


def _ranges(ticks: np.ndarray) -> str:
    if len(ticks) == 0:
        return "none"
    return f"{ticks[0]}..{ticks[-1]}" if len(ticks) == ticks[-1] - ticks[0] + 1 else f"{len(ticks)} ticks"
