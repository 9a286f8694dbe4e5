"""Writing a message log: records framed, checksummed and chained, written as the run goes.

Records are encoded and written by a background thread, so that hashing and writing (which
release the GIL) overlap the next tick; the queue between the run and the thread is bounded.
Every record is written with one unbuffered ``write`` per part: a run killed at any moment
leaves whole records in the file, and at most one incomplete record at its end.  An index of
record offsets is kept in a sidecar file (``RUN.log.idx``), rewritten at every snapshot and
when the log is closed.
"""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path
from typing import Any, Callable

import msgpack
import numpy as np

from ribbed.log.format import DIGEST_SEED, RECORD_TYPES, encode_array, frame, pack_body

__all__ = ["INDEX_SUFFIX", "LogWriter", "write_index"]

INDEX_SUFFIX = ".idx"
INDEX_FORMAT = "ribbed-log-index"


def write_index(path: Path, entries: list[tuple[int, int, int, bytes]], size: int) -> None:
    """Write the sidecar index of ``path`` (type, tick, offset, digest per record) atomically."""
    types, ticks, offsets, digests = zip(*entries) if entries else ((), (), (), ())
    document = {"format": INDEX_FORMAT, "version": 1, "log_size": size,
                "types": encode_array(np.array(types, dtype=np.uint8)),
                "ticks": encode_array(np.array(ticks, dtype=np.int64)),
                "offsets": encode_array(np.array(offsets, dtype=np.int64)),
                "digests": b"".join(digests)}
    target = Path(str(path) + INDEX_SUFFIX)
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_bytes(msgpack.packb(document, use_bin_type=True))
    os.replace(temporary, target)


class LogWriter:
    """Appends records to a log file (see the module docstring).

    ``resume`` continues an existing log: ``(offset, digest, entries)`` of its last record to
    keep; the file is cut after it.
    """

    def __init__(self, path: str | Path, header: dict | None, *, resume: tuple[int, bytes, list] | None = None,
                 queue_size: int = 32):
        self.path = Path(path)
        if resume is None:
            self._file = open(self.path, "xb", buffering=0)
            self._digest, self._offset, self.entries = DIGEST_SEED, 0, []
        else:
            offset, digest, entries = resume
            self._file = open(self.path, "r+b", buffering=0)
            self._file.truncate(offset)
            self._file.seek(offset)
            self._digest, self._offset, self.entries = digest, offset, list(entries)
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="ribbed-log-writer", daemon=True)
        self._thread.start()
        self.closed = False
        if header is not None:
            self.write("header", -1, lambda: header)

    # ------------------------------------------------------------------ the run's side

    def write(self, kind: str, tick: int, body: Callable[[], dict], *, index: bool = False) -> None:
        """Queue a record; ``body`` is called on the writer thread and returns the body map.
        ``index`` rewrites the sidecar index once the record is written."""
        self._raise()
        self._queue.put((kind, tick, body, index))

    def flush(self) -> None:
        """Wait until every queued record is in the file."""
        self._queue.join()
        self._raise()

    def close(self, status: str | None = None, tick: int = 0, **fields: Any) -> None:
        """Write the end record (when ``status`` is given), the index, and close the file."""
        if self.closed:
            return
        try:
            if status is not None and self._error is None:
                self.write("end", tick, lambda: {"status": status, "tick": tick, **fields})
            self._queue.put(None)
            self._thread.join()
        finally:
            self.closed = True
            self._file.close()
        if self._error is None:
            write_index(self.path, self.entries, self._offset)
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    # ------------------------------------------------------------------ the thread

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None:
                    self._append(*item)
            except BaseException as exc:  # handed to the run at its next write or close
                self._error = exc
            finally:
                self._queue.task_done()

    def _append(self, kind: str, tick: int, body: Callable[[], dict], index: bool) -> None:
        data = pack_body(body())
        prefix, digest = frame(kind, tick, data, self._digest)
        offset = self._offset
        _write_all(self._file, prefix)
        _write_all(self._file, data)
        self._offset += len(prefix) + len(data)
        self._digest = digest
        self.entries.append((RECORD_TYPES.index(kind), tick, offset, digest))
        if index:
            write_index(self.path, self.entries, self._offset)


def _write_all(file, data: bytes) -> None:
    """An unbuffered write may write less than asked (a signal, or more than 2 GiB at once)."""
    view = memoryview(data)
    while view:
        view = view[file.write(view):]
