"""Writing a message log from a thread of the run: records framed, checksummed and chained,
written as the run goes.  Runs on the CPU with a core to spare use a writer process instead
(:mod:`ribbed.log.shared_writer`), which frees the run's thread of this work; this writer serves
runs on a GPU (whose values are copied off the device on the writer's thread), processes with a
single core, and systems where no writer process can be started (:mod:`ribbed.log.run_log`
chooses).

Records are encoded and written by a background thread, so that hashing and writing (which
release the GIL) overlap the next tick; the queue between the run and the thread is bounded.
Every record is written with one unbuffered ``write`` per part: a run killed at any moment
leaves whole records in the file, and at most one incomplete record at its end.  An index of
record offsets is kept in a sidecar file (``RUN.log.idx``), rewritten at every snapshot and
when the log is closed.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from pathlib import Path
from typing import Any, Callable

import msgpack
import numpy as np

from ribbed.errors import Problem, RibbedError
from ribbed.log.chain import DIGEST_SEED, PLAIN, DigestChain
from ribbed.log.format import RECORD_TYPES, encode_array, frame, pack_parts, record_body

__all__ = ["INDEX_SUFFIX", "LogWriter", "append_records", "read_index", "write_failure", "write_index"]

INDEX_SUFFIX = ".idx"
INDEX_FORMAT = "ribbed-log-index"


def write_failure(path: str | Path, reason: str) -> RibbedError:
    """The error of a log that could not be written (``reason``: the system's words, such as
    "No space left on device"), with what to do about it."""
    return RibbedError(Problem(str(path), "", f"cannot write the log: {reason}",
                               "free space on the disk that holds the run folder (or make it writable), then "
                               "continue the run from its last snapshot with ribbed run --resume RUN_DIR; or set "
                               "log.level: off to run without a log"))


def write_index(path: Path, entries: list[tuple[int, int, int, bytes]], size: int) -> None:
    """Write the sidecar index of ``path`` (type, tick, offset, digest per record) atomically:
    through a temporary file and a rename, so a reader finds the old index or the new one, whole
    (a reader rebuilds a damaged one all the same: it is a cache)."""
    types, ticks, offsets, digests = zip(*entries) if entries else ((), (), (), ())
    document = {"format": INDEX_FORMAT, "version": 1, "log_size": size,
                "types": encode_array(np.array(types, dtype=np.uint8)),
                "ticks": encode_array(np.array(ticks, dtype=np.int64)),
                "offsets": encode_array(np.array(offsets, dtype=np.int64)),
                "digests": b"".join(digests)}
    target = Path(str(path) + INDEX_SUFFIX)
    temporary = target.with_name(target.name + ".tmp")
    try:
        temporary.write_bytes(msgpack.packb(document, use_bin_type=True))
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def read_index(path: Path) -> tuple[list[tuple[int, int, int, bytes]], int]:
    """The entries and log size of the sidecar index of ``path`` (as :func:`write_index` wrote it)."""
    from ribbed.log.format import decode_array

    document = msgpack.unpackb(Path(str(path) + INDEX_SUFFIX).read_bytes(), raw=False)
    types, ticks, offsets = (decode_array(document[key]).tolist() for key in ("types", "ticks", "offsets"))
    digests = document["digests"]
    entries = [(t, k, o, digests[32 * i:32 * i + 32]) for i, (t, k, o) in enumerate(zip(types, ticks, offsets))]
    return entries, document["log_size"]


class LogWriter:
    """Appends records to a log file (see the module docstring).

    ``resume`` continues an existing log: ``(offset, digest, entries)`` of its last record to
    keep; the file is cut after it.  ``chain``: how digests are chained (keyed for a scenario
    with ``log.key_file``; :mod:`ribbed.log.chain`).  Records are handed to the writer thread in batches: it
    wakes every ``interval`` seconds (or when a snapshot, a flush or a full queue asks for it)
    and writes everything queued with one ``write``, so a run with short ticks does not trade
    its interpreter lock with the thread at every tick.  A record is in the file at most about
    ``interval`` seconds after its tick.
    """

    #: What kind of writer this is, as a run's header and summary.json record it.
    kind = "thread"

    def __init__(self, path: str | Path, header: dict | None, *, resume: tuple[int, bytes, list] | None = None,
                 max_pending: int = 64, max_pending_bytes: int = 1 << 29, interval: float = 0.02,
                 chain: DigestChain = PLAIN):
        self.path = Path(path)
        self._chain = chain
        if resume is None:
            self._file = open(self.path, "xb", buffering=0)
            self._digest, self._offset, self.entries = DIGEST_SEED, 0, []
        else:
            offset, digest, entries = resume
            self._file = open(self.path, "r+b", buffering=0)
            self._file.truncate(offset)
            self._file.seek(offset)
            self._digest, self._offset, self.entries = digest, offset, list(entries)
            write_index(self.path, self.entries, self._offset)  # the old index lists the records cut off
        self._pending: deque = deque()
        self._max_pending, self._max_pending_bytes, self._interval = max_pending, max_pending_bytes, interval
        self._wake_at, self._wake_at_bytes = min(64, max_pending), min(1 << 24, max_pending_bytes)
        self._queued_bytes = self._done_bytes = 0  # each written by one thread only
        self._wake = threading.Event()
        self._progress = threading.Condition()
        self._queued = self._done = 0
        self._stopping = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="ribbed-log-writer", daemon=True)
        self._thread.start()
        self.closed = False
        if header is not None:
            self.write("header", -1, lambda: header)

    # ------------------------------------------------------------------ the run's side

    def write(self, kind: str, tick: int, body: Callable[[], dict], *, index: bool = False, size: int = 0) -> None:
        """Queue a record; ``body`` is called on the writer thread and returns the body map.
        ``index`` rewrites the sidecar index once the record is written; ``size`` is about how
        many bytes the record holds on to until then (queued records are bounded by count and
        by bytes: the run waits for the thread when either is exceeded)."""
        self._raise()
        pending, held = self._queued - self._done, self._queued_bytes - self._done_bytes
        if pending >= self._max_pending or held >= self._max_pending_bytes:
            self._wait(self._queued - pending // 2)
        self._pending.append((kind, tick, body, index, size))
        self._queued += 1
        self._queued_bytes += size
        if index or pending >= self._wake_at or held + size >= self._wake_at_bytes:
            self._wake.set()

    def flush(self) -> None:
        """Wait until every queued record is in the file."""
        self._wait(self._queued)
        self._raise()

    def _wait(self, count: int) -> None:
        self._wake.set()
        with self._progress:
            while self._done < count and self._error is None and self._thread.is_alive():
                self._progress.wait(0.1)

    def close(self, status: str | None = None, tick: int = 0, **fields: Any) -> None:
        """Write the end record (when ``status`` is given), the index, and close the file."""
        if self.closed:
            return
        try:
            if status is not None and self._error is None:
                self.write("end", tick, lambda: {"status": status, "tick": tick, **fields})
            self._stopping = True
            self._wake.set()
            self._thread.join()
        finally:
            self.closed = True
            self._file.close()
        if self._error is None:
            try:
                write_index(self.path, self.entries, self._offset)
            except OSError as exc:
                raise write_failure(Path(str(self.path) + INDEX_SUFFIX), exc.strerror or str(exc)) from None
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    # ------------------------------------------------------------------ the thread

    def _work(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            stopping = self._stopping  # read before draining: nothing is queued after it is set
            batch = []
            while self._pending:
                batch.append(self._pending.popleft())
            try:
                if self._error is None and batch:
                    self._append(batch)
            except OSError as exc:  # (a full disk) handed to the run at its next write or close
                self._error = write_failure(self.path, exc.strerror or str(exc))
            except BaseException as exc:
                self._error = exc
            with self._progress:
                self._done_bytes += sum(item[4] for item in batch)
                self._done += len(batch)
                self._progress.notify_all()
            if stopping and not self._pending:
                return

    def _append(self, batch: list) -> None:
        records = [(kind, tick, pack_parts(record_body(kind, tick, body()))) for kind, tick, body, _, _ in batch]
        self._offset, self._digest = append_records(self._file, records, self._offset, self._digest, self.entries,
                                                    self._chain)
        if any(item[3] for item in batch):
            write_index(self.path, self.entries, self._offset)


def append_records(file, records: list[tuple[str, int, list]], offset: int, digest: bytes,
                   entries: list, chain: DigestChain = PLAIN) -> tuple[int, bytes]:
    """Frame ``(kind, tick, body pieces)`` records after the record whose digest is ``digest``
    (chained by ``chain``), write them at ``offset`` of ``file`` (small ones joined into one
    write, large pieces from their own memory), add them to ``entries``; the new offset and digest."""
    small: list = []
    for kind, tick, pieces in records:
        prefix, digest = frame(kind, tick, pieces, digest, chain)
        entries.append((RECORD_TYPES.index(kind), tick, offset, digest))
        offset += len(prefix) + sum(len(piece) for piece in pieces)
        for part in (prefix, *pieces):
            if len(part) < 1 << 16:
                small.append(part)
                continue
            if small:
                _write_all(file, b"".join(small))
                small = []
            _write_all(file, part)
    if small:
        _write_all(file, b"".join(small))
    return offset, digest


def _write_all(file, data: bytes) -> None:
    """An unbuffered write may write less than asked (a signal, or more than 2 GiB at once)."""
    view = memoryview(data)
    while view:
        view = view[file.write(view):]
