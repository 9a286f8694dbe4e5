"""Reading a message log: records checked against their CRC, their digest chain (keyed or
not) and the format page, found through the sidecar index (a cache: rebuilt by scanning when it
is missing, stale or damaged), in memory bounded by the file's size.

Every problem is one of the documented errors of :mod:`ribbed.errors`: ``LogFormatError``
(not a log, an unknown version, a record that breaks the format), ``LogCorruptError`` (a CRC
mismatch) and ``LogIntegrityError`` (a broken digest chain, or a keyed log that the key given
does not authenticate), each naming the tick and byte offset.  A log that ends inside a record
(a crashed run), or with bytes after its last record that are not a record, is read up to its
last whole record, with a ``LogTruncatedWarning``.  Nothing is unpickled or imported from a
log, and nothing is allocated from a size a record declares before the bytes are there.
"""

from __future__ import annotations

import bisect
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

import msgpack
import numpy as np

from ribbed.errors import (
    LogCorruptError, LogError, LogFormatError, LogIntegrityError, LogTruncatedWarning, LogUnauthenticatedWarning,
    Problem,
)
from ribbed.log.bodies import BodyRules, check_header, order_problem
from ribbed.log.chain import DIGEST_SEED, PLAIN, DigestChain
from ribbed.log.format import (
    FORMAT, OLDEST_VERSION, RECORD_KEYS, RECORD_TYPES, VERSION, FormatViolation, crc, decode_array, unpack_body,
    unpack_spikes,
)
from ribbed.log.keys import LogKey, read_key_file
from ribbed.log.lineage import decode_generations, evolving_populations, generations_at
from ribbed.log.writer import INDEX_FORMAT, INDEX_SUFFIX

__all__ = ["DEFAULT_MAX_RECORD_BYTES", "LogReader", "Record", "RecordRef"]

#: The largest record a reader accepts by default (a snapshot of a large network is the largest).
DEFAULT_MAX_RECORD_BYTES = 8 << 30
_SCAN_CHUNK = 1 << 20
_FIX_CORRUPT = "the file was changed after it was written; use a copy of the original log, or re-run the scenario"
_FIX_KEY = "give the key file the run was written with (its scenario's log.key_file): --key-file, or key_file="
#: How the writer begins every record (a map of five, the key "type"): a scan that meets bytes
#: that are not a record looks for these after them, to tell trailing garbage from damage.
_RECORD_START = b"\x85\xa4type"


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


class _Stop(NamedTuple):
    """Where a scan stopped before the end of the file, and why."""

    offset: int
    garbage: bool  # bytes that are not a record (else: an incomplete record)


class LogReader:
    """A message log opened for reading (see the module docstring).

    ``key`` (a :class:`~ribbed.log.keys.LogKey` or its bytes) or ``key_file`` authenticates a
    keyed log's chain; a keyed log read without its key is read with a
    ``LogUnauthenticatedWarning`` (CRCs and records checked, the chain not), and a log that is
    not keyed is refused when a key is given (``LogIntegrityError``: its chain may have been
    rebuilt without the key).

    >>> log = LogReader("runs/digits/run.log")      # doctest: +SKIP
    >>> log.header["scenario"]["name"], log.ticks[-1]  # doctest: +SKIP
    """

    def __init__(self, path: str | Path, *, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
                 key: LogKey | bytes | None = None, key_file: str | Path | None = None):
        self.path = Path(path)
        self.max_record_bytes = max_record_bytes
        self.key = _key(key, key_file)
        self.truncated_at: int | None = None  # byte offset of an incomplete last record, or of trailing garbage
        #: What other modules derive from this log once per reader (e.g. the message layout).
        self.cache: dict = {}
        self.header: dict = {}
        self.rules: BodyRules | None = None
        self._chain: DigestChain | None = None  # None: a keyed log read without its key
        self._index_used = False
        self._log_damaged = False  # a scan found the log itself damaged: errors through the index stand
        self._generation = 0
        self._positions: dict[int, int] = {}
        try:
            self._file = open(self.path, "rb")
        except OSError as exc:
            raise LogError(Problem(str(self.path), "", f"cannot open the log: {exc.strerror or exc}",
                                   "give the path of a run's run.log (ribbed run writes one in its run folder)")) from None
        try:
            self.size = os.fstat(self._file.fileno()).st_size
            self._open()
        except BaseException:
            self._file.close()
            raise
        if self.keyed and self.key is None:
            warnings.warn(f"{self.path}: the log's digest chain is keyed (HMAC-SHA256, key id {self.key_id}); "
                          "without its key, its CRCs and records were checked but not who wrote it: give --key-file "
                          "(LogReader(..., key_file=...)) to authenticate it", LogUnauthenticatedWarning, stacklevel=2)

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

    @property
    def keyed(self) -> bool:
        """Whether the log's digest chain is keyed (HMAC-SHA256; its header's ``chain``)."""
        return "chain" in self.header

    @property
    def key_id(self) -> str | None:
        """The id of the key a keyed log was written with (never the key), or None."""
        return self.header["chain"]["key_id"] if self.keyed else None

    @property
    def authenticated(self) -> bool:
        """Whether the records read were checked against a keyed chain with its key (a plain
        chain detects changes, it does not say who made them)."""
        return self.keyed and self._chain is not None

    def tick(self, tick: int) -> Record:
        if tick not in self._by_tick:
            raise LogError(Problem(str(self.path), "", f"tick {tick} is not in this log (it has ticks "
                                   f"{_ranges(self.ticks)})", "ask for a tick the log recorded"))
        return self.read(self._by_tick[tick])

    def step_activity(self, tick: int) -> dict[str, np.ndarray] | None:
        """Per population, what each neuron emitted at every step of a timed tick, (batch, steps,
        size) in float64 (spikes unpacked from their bits); None where the log holds none (an
        untimed run, level ``summary``, or a log written before per-step activity was recorded)."""
        record = self.tick(tick)
        time = self.header.get("time")
        if time is None or "step_activity" not in record.body:
            return None
        spiking = set(time["spiking"])
        sizes = {p["name"]: p["size"] for p in self.header["populations"]}
        return {name: unpack_spikes(record.decode(value), sizes[name]) if name in spiking
                else np.asarray(record.decode(value), dtype=np.float64)
                for name, value in record.body["step_activity"].items()}

    def step_delta(self, tick: int) -> np.ndarray | None:
        """A timed tick's deltas at every step, (batch, steps, neurons) (NaN for neurons without
        credit); None where the log holds none (below level ``messages``, or untimed)."""
        return self.tick(tick).array("step_delta")

    def generations(self, population: str | None = None) -> list[dict]:
        """The generation events of evolving guides (docs/log-format.md, tick field
        ``generations``), in tick order: per generation, ``tick``, ``population``, ``generation``
        and, per candidate born (guide, then slot order), ``guides``, ``slots``, ``ids``,
        ``parents`` (-1: none), ``kinds`` (index in the population's ``evolution.kinds``),
        ``lrs`` and ``masks`` (bool, (born, features)).  Only the records of generation ticks are
        read.  ``population``: only that population's; empty for a run without evolution."""
        evolving = evolving_populations(self.header.get("scenario") or {})
        if population is not None:
            evolving = {name: value for name, value in evolving.items() if name == population}
        wanted = {int(t) for t in self.ticks if generations_at(evolving, int(t))}
        events = []
        for record in self._walk(lambda ref: ref.type == "tick" and ref.tick in wanted):
            decoded = decode_generations(record.body.get("generations") or {}, record.decode)
            events.extend({"tick": record.tick, "population": name, **entry} for name, entry in decoded.items()
                          if name in evolving)
        return events

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
        return {name: topology.decode(value) for name, value in topology.body["dfa"].items()}

    def snapshot(self, at_or_before: int) -> Record | None:
        """The last snapshot at or before a tick, or None."""
        refs = [r for r in self.refs if r.type == "snapshot" and r.tick <= at_or_before]
        return self.read(refs[-1]) if refs else None

    def records(self, types: tuple[str, ...] = ("tick",), ticks: range | None = None) -> Iterator[Record]:
        """The records of the given types, in file order; only those in ``ticks`` if given (read
        through the index: the rest of the file is not read)."""
        return self._walk(lambda ref: ref.type in types and (ticks is None or ref.tick in ticks))

    def messages(self, *, ticks=None, agent: int | None = None, kind=None, stage=None):
        """The logged messages as a pandas DataFrame, filtered by tick (a tick, or a ``(start,
        stop)`` pair), agent (as sender or receiver; -1 is the task), kind and stage; only the
        records of those ticks are read (see :mod:`ribbed.log.messages`)."""
        from ribbed.log.messages import messages

        return messages(self, ticks=ticks, agent=agent, kind=kind, stage=stage)

    def weights(self, tick: int, *, dense: bool = True, max_dense: int | None = None) -> dict:
        """Every projection's weights after ``tick`` ticks, by projection name: dense
        ``(post.size, pre.size)`` float64 matrices (0 where there is no synapse), or with
        ``dense=False`` the per-synapse ``(pre, post, weights)`` arrays; decoded from the
        snapshot of that tick, else replayed from the one before it (see
        :mod:`ribbed.log.weights`, which also bounds the size of a dense answer)."""
        from ribbed.log.weights import DEFAULT_MAX_DENSE, weights_at

        return weights_at(self, tick, dense=dense, max_dense=DEFAULT_MAX_DENSE if max_dense is None else max_dense)

    def check(self) -> int:
        """Read every record, checking CRCs, the whole digest chain and every body; the number
        of records."""
        for _ in self._walk(lambda ref: True):
            pass
        return len(self.refs)

    # ------------------------------------------------------------------ one record

    def read(self, ref: RecordRef) -> Record:
        """Read a record and check its CRC, its digest (chained to its predecessor's) and its body.
        A record that does not match what the index says of it drops the index: the log is
        scanned, and the record read from where the scan found it (a damaged log gives the
        scan's error, a damaged index none)."""
        record = self._read_or_none(ref)
        if record is None:
            raise LogError(Problem(str(self.path), f"tick {ref.tick}", f"the log holds no {ref.type} record of "
                                   f"tick {ref.tick} (its index listed one)", "ask for a record the log holds"))
        return record

    def _read_or_none(self, ref: RecordRef) -> Record | None:
        """:meth:`read`; None when, with the index dropped, the log turns out not to hold the record."""
        current = self._current(ref)
        if current is not None:
            try:
                return self._read(current)
            except LogError as through_index:
                if not self._index_used or self._log_damaged:
                    raise
                try:
                    self._rescan()  # the index does not match the log: scan it
                except LogError as scanned:
                    # The log itself is damaged.  A record edited and re-chained (its own digest
                    # recomputed) breaks a scan's chain only at the record after it, but itself through
                    # the index, which holds the digest it had: then the record itself is named.
                    if (isinstance(through_index, LogIntegrityError) and isinstance(scanned, LogIntegrityError)
                            and scanned.offset == current.offset + current.size):
                        raise through_index from None
                    raise
                if self.truncated_at is not None and self.truncated_at <= current.offset:
                    # The scan ends inside a record the index lists whole, with the file going on
                    # after it: not a log cut short, a record whose length was damaged.
                    raise through_index from None
            current = self._current(ref)
        return None if current is None else self._read(current)

    def _current(self, ref: RecordRef) -> RecordRef | None:
        """``ref`` as the record list now has it (a ref from before a rescan is looked up by type
        and tick), or None."""
        position = self._positions.get(ref.offset)
        if position is not None and self.refs[position] == ref:
            return ref
        return next((r for r in self.refs if (r.type, r.tick) == (ref.type, ref.tick)), None)

    def _read(self, ref: RecordRef) -> Record:
        if ref.size > self.max_record_bytes:
            raise self._format_error(ref.offset, ref.tick, f"a record of {ref.size} bytes is larger than the "
                                     f"reader's limit of {self.max_record_bytes} bytes", "pass a larger "
                                     "max_record_bytes to LogReader (a snapshot of a large network can be GiBs)")
        self._file.seek(ref.offset)
        data = self._file.read(ref.size)
        if len(data) != ref.size:
            raise self._format_error(ref.offset, ref.tick, "the file is shorter than its index says",
                                     f"delete {self.path}{INDEX_SUFFIX} so that it is rebuilt")
        record = self._unpack_record(data, ref.offset)
        position = self._positions[ref.offset]
        previous = DIGEST_SEED if position == 0 else self.refs[position - 1].digest
        body = self._check(record, ref.offset, previous, position)
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

    def _walk(self, wanted: Callable[[RecordRef], bool]) -> Iterator[Record]:
        """The records ``wanted`` chooses, in file order, read and checked; when a record drops the
        index (see :meth:`read`), the walk goes on in the scanned list after the last record given."""
        position, generation, last = 0, self._generation, -1
        while True:
            if generation != self._generation:
                generation = self._generation
                position = bisect.bisect_right([r.offset for r in self.refs], last)
            if position >= len(self.refs):
                return
            ref = self.refs[position]
            position += 1
            if not wanted(ref):
                continue
            record = self._read_or_none(ref)
            if record is None:  # (the scan found the log shorter than its index said)
                continue
            last = record.offset
            yield record

    def _unpack_record(self, data: bytes, offset: int) -> dict:
        try:
            record = msgpack.unpackb(data, raw=False, max_bin_len=len(data), max_str_len=64, max_array_len=0,
                                     max_map_len=len(RECORD_KEYS), max_ext_len=0)
        except (ValueError, TypeError, msgpack.exceptions.UnpackException) as exc:
            raise self._format_error(offset, None, f"not a msgpack record ({exc})", _FIX_CORRUPT) from None
        if not _is_frame(record):
            raise self._format_error(offset, None, f"a record must be a map with the keys {list(RECORD_KEYS)}",
                                     _FIX_CORRUPT)
        self._check_frame(record, offset)
        return record

    def _check_frame(self, record: dict, offset: int) -> None:
        kind, tick, check, digest, body = (record[k] for k in RECORD_KEYS)
        if (kind not in RECORD_TYPES or type(tick) is not int or type(check) is not int
                or type(digest) is not bytes or len(digest) != 32 or type(body) is not bytes):
            raise self._format_error(offset, tick if type(tick) is int else None,
                                     "a record field has the wrong type, or the record type is unknown "
                                     f"({_short(kind)})", _FIX_CORRUPT)

    def _check(self, record: dict, offset: int, previous: bytes, position: int) -> dict:
        """The record's body, after its CRC, its digest and its fields are checked (the header's
        body is read before its digest is checked: it says how the chain is made)."""
        kind, tick, body = record["type"], record["tick"], record["body"]
        if crc(body) != record["crc"]:
            raise LogCorruptError(Problem(str(self.path), f"tick {tick}", f"the {kind} record at byte "
                                          f"{offset} does not match its CRC", _FIX_CORRUPT), tick, offset)
        if position == 0:
            if kind != "header":
                raise self._format_error(0, None, "the file does not start with a ribbed log header",
                                         "give the path of a log written by ribbed run")
            decoded = self._body(record, offset)
            self._accept_header(decoded)
            self._check_digest(record, offset, previous)
            return decoded
        self._check_digest(record, offset, previous)
        decoded = self._body(record, offset)
        try:
            self.rules.check(kind, decoded)
        except FormatViolation as exc:
            raise self._format_error(offset, tick, f"the {kind} record: {exc}", _FIX_CORRUPT) from None
        return decoded

    def _check_digest(self, record: dict, offset: int, previous: bytes) -> None:
        if self._chain is None:  # a keyed log read without its key: nothing to check it with
            return
        if self._chain.digest(previous, record["body"]) != record["digest"]:
            tick = record["tick"]
            how = " keyed" if self._chain.keyed else ""
            raise LogIntegrityError(Problem(str(self.path), f"tick {tick}", f"the {record['type']} record at byte "
                                            f"{offset} breaks the{how} digest chain (it, or a record before it, "
                                            "was edited" + (", or re-chained without the key)" if how else ")"),
                                            _FIX_CORRUPT), tick, offset)

    def _body(self, record: dict, offset: int) -> dict:
        kind, tick = record["type"], record["tick"]
        try:
            decoded = unpack_body(record["body"])
        except FormatViolation as exc:
            raise self._format_error(offset, tick, f"the record's body: {exc}", _FIX_CORRUPT) from None
        except (ValueError, TypeError, msgpack.exceptions.UnpackException) as exc:
            raise self._format_error(offset, tick, f"the record's body is not a msgpack map ({exc})",
                                     _FIX_CORRUPT) from None
        if decoded.get("tick") != tick or decoded.get("type") != kind or type(decoded.get("tick")) is not int:
            raise self._format_error(offset, tick, f"the record's type or tick ({kind}, {tick}) differs from its "
                                     f"body's ({_short(decoded.get('type'))}, {_short(decoded.get('tick'))})",
                                     _FIX_CORRUPT)
        return decoded

    def _accept_header(self, body: dict) -> None:
        """Check the header and take from it what the other records are checked against: the
        rules of their bodies, and the chain (plain, keyed with the key given, or keyed without)."""
        if body.get("format") != FORMAT or type(body.get("version")) is not int:
            raise self._format_error(0, None, "the header does not name the ribbed-log format",
                                     "give the path of a log written by ribbed run")
        version = body["version"]
        if version > VERSION:
            raise self._format_error(0, None, f"log format version {version} is newer than this reader's "
                                     f"({VERSION})", "upgrade ribbed to read it")
        if version < OLDEST_VERSION:
            raise self._format_error(0, None, f"log format version {version} is not one this reader knows (it reads "
                                     f"versions {OLDEST_VERSION} to {VERSION})",
                                     "give the path of a log written by ribbed run")
        try:
            check_header(body)
        except FormatViolation as exc:
            raise self._format_error(0, -1, f"the header record: {exc}", _FIX_CORRUPT) from None
        chain = body.get("chain")
        if chain is None:
            if self.key is not None:
                raise LogIntegrityError(Problem(str(self.path), "tick -1", "the log's digest chain is not keyed, so "
                                                f"the key given ({self.key.source}) cannot authenticate it: it was "
                                                "written without log.key_file, or its chain was rebuilt without the "
                                                "key", "verify it without a key (it is then checked for changes, "
                                                "not for who made them)"), -1, 0)
            self._chain = PLAIN
        elif self.key is None:
            self._chain = None
        elif chain["key_id"] != self.key.key_id:
            raise LogIntegrityError(Problem(str(self.path), "tick -1", f"the log's chain is keyed with key id "
                                            f"{chain['key_id']}, the key given ({self.key.source}) has id "
                                            f"{self.key.key_id}: it is not the key the log was written with (or the "
                                            "header was forged)", _FIX_KEY), -1, 0)
        else:
            self._chain = DigestChain(self.key)
        self.header = body
        self.rules = BodyRules(body)

    def _format_error(self, offset: int, tick: int | None, message: str, fix: str) -> LogFormatError:
        where = f"tick {tick}" if tick is not None else ""
        return LogFormatError(Problem(str(self.path), where, f"{message} (byte {offset})", fix), tick, offset)

    # ------------------------------------------------------------------ the index, or a scan

    def _open(self) -> None:
        """The records' places: from the sidecar index when it matches the file (and the file
        scanned from where the index ends, when it has grown since), else from a scan."""
        index = self._read_index()
        if index:
            try:
                self._set_refs(index, index_used=True)
                self._read(index[0])  # the header
                covered = index[-1].offset + index[-1].size
                stop = None
                if covered < self.size:
                    refs, stop = self._scan(covered, index[-1].digest, index)
                    if stop is not None and len(refs) == len(index):
                        # Nothing whole after the index: bytes appended to a log, or an index of another
                        # log whose end is not where a record ends here.  Its last record says which.
                        self._read(index[-1])
                    self._set_refs(refs, index_used=True)
                self._check_order()
                self._stopped(stop)
                return
            except LogError:
                pass  # the index does not match the log: a scan says what the log holds
        self._rescan()

    def _rescan(self) -> None:
        """Drop the index: scan and check the whole log.  When the scan finds the log itself
        damaged, its error is raised, and the reader keeps the index (records before the damage
        stay readable through it; the damaged one gives the same error again)."""
        kept = (self.refs, self.header, self.rules, self._chain) if self._index_used else None
        try:
            self.header, self.rules, self._chain = {}, None, None
            refs, stop = self._scan(0, DIGEST_SEED, [])
            if not refs:
                self._stopped(stop)
                raise self._format_error(0, None, "the file does not start with a ribbed log header",
                                         "give the path of a log written by ribbed run")
            self._set_refs(refs, index_used=False)
            self._check_order()
        except LogError:
            if kept is not None:
                self.header, self.rules, self._chain = kept[1:]
                self._set_refs(kept[0], index_used=True)
                self._log_damaged = True
            raise
        self._stopped(stop)

    def _set_refs(self, refs: list[RecordRef], *, index_used: bool) -> None:
        self.refs = refs
        self._index_used = index_used
        self._positions = {r.offset: i for i, r in enumerate(refs)}
        self._by_tick = {ref.tick: ref for ref in refs if ref.type == "tick"}
        self._generation += 1
        self.cache = {}

    def _stopped(self, stop: _Stop | None) -> None:
        """Warn that the log was read up to its last whole record (and where it stopped), once."""
        if stop is None or stop.offset == self.truncated_at:
            return
        self.truncated_at = stop.offset
        last = next((r.tick for r in reversed(self.refs) if r.type == "tick"), None)
        read = f"read up to {'tick ' + str(last) if last is not None else 'its header'}"
        if stop.garbage:
            message = (f"the log ends with {self.size - stop.offset} bytes at byte {stop.offset} that are not a "
                       f"record (bytes appended after its last record, or a damaged last record); {read}")
        else:
            message = f"the log ends inside a record at byte {stop.offset} (a run that stopped while writing); {read}"
        warnings.warn(f"{self.path}: {message}", LogTruncatedWarning, stacklevel=4)

    def _check_order(self) -> None:
        found = order_problem([(ref.type, ref.tick) for ref in self.refs], self.header["level"])
        if found is not None:
            ref = self.refs[found[0]]
            raise self._format_error(ref.offset, ref.tick, f"records out of order: {found[1]}", _FIX_CORRUPT)

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
            if (types.ndim != 1 or ticks.ndim != 1 or offsets.ndim != 1 or len(types) != n or len(ticks) != n
                    or type(digests) is not bytes or len(digests) != 32 * n or type(size) is not int
                    or size > self.size or (n and (offsets[0] != 0 or np.any(np.diff(offsets) <= 0)
                                                   or offsets[-1] >= size or types.max() >= len(RECORD_TYPES)))):
                return None
        except (OSError, ValueError, TypeError, KeyError, AttributeError, FormatViolation,
                msgpack.exceptions.UnpackException):
            return None
        ends = np.append(offsets[1:], size)
        return [RecordRef(RECORD_TYPES[t], int(k), int(o), int(e - o), digests[32 * i:32 * i + 32])
                for i, (t, k, o, e) in enumerate(zip(types.tolist(), ticks.tolist(), offsets.tolist(), ends.tolist()))]

    def _scan(self, start: int, previous: bytes, refs: list[RecordRef]) -> tuple[list[RecordRef], _Stop | None]:
        """Walk the records from byte ``start``, checking each one's CRC, digest chain and body;
        the records, and where the scan stopped short of the end of the file (None: it did not)."""
        refs = list(refs)
        self._set_refs(refs, index_used=self._index_used)
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
                if refs and not self._record_follows(offset):
                    return refs, _Stop(offset, garbage=True)
                raise self._format_error(offset, None, f"not a msgpack record ({exc})", _FIX_CORRUPT) from None
            end = start + unpacker.tell()  # tell() counts from where the unpacker began
            if not _is_frame(record):
                if refs and not self._record_follows(offset):
                    return refs, _Stop(offset, garbage=True)
                raise self._format_error(offset, None, f"a record must be a map with the keys {list(RECORD_KEYS)}",
                                         _FIX_CORRUPT)
            self._check_frame(record, offset)
            self._check(record, offset, previous, len(refs))
            previous = record["digest"]
            refs.append(RecordRef(record["type"], record["tick"], offset, end - offset, previous))
            self._positions[offset] = len(refs) - 1
            offset = end
        return refs, (_Stop(offset, garbage=False) if offset < self.size else None)

    def _record_follows(self, offset: int) -> bool:
        """Whether a record may begin anywhere after byte ``offset``: else the bytes from there
        on are trailing garbage, not a damaged record among others."""
        self._file.seek(offset + 1)
        tail = b""
        while True:
            chunk = self._file.read(_SCAN_CHUNK)
            if not chunk:
                return False
            if _RECORD_START in tail + chunk:
                return True
            tail = chunk[-(len(_RECORD_START) - 1):]


def _is_frame(record: Any) -> bool:
    """Whether ``record`` is a map of the five record keys, in order (what a record's bytes decode to)."""
    return type(record) is dict and tuple(record) == RECORD_KEYS


def _key(key: LogKey | bytes | None, key_file: str | Path | None) -> LogKey | None:
    if key is not None and key_file is not None:
        raise LogError(Problem("LogReader", "key", "give key or key_file, not both", "pass one of them"))
    if key_file is not None:
        return read_key_file(key_file, source="LogReader", field="key_file")
    if isinstance(key, (bytes, bytearray)):
        return LogKey(bytes(key))
    return key


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _ranges(ticks: np.ndarray) -> str:
    if len(ticks) == 0:
        return "none"
    return f"{ticks[0]}..{ticks[-1]}" if len(ticks) == ticks[-1] - ticks[0] + 1 else f"{len(ticks)} ticks"
