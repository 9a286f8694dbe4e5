"""The writer process of :mod:`ribbed.log.shared_writer`: ``python -m ribbed.log.writer_process SETTINGS``.

It reads commands from its stdin (the run's pipe; a keyed log's key comes first), builds tick
records from the shared ring, frames, checksums and appends every record to the log, keeps the
index, and reports progress on its stdout.  It imports only the log format (numpy and msgpack),
so it starts in a fraction of a second.  At the end of its input (the run closed the log, or died) it writes what it was
told about, the index, and removes the ring's file.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import sys
import zlib

from ribbed.log.chain import DIGEST_SEED, PLAIN, DigestChain
from ribbed.log.format import RECORD_TYPES, frame_prefix, pack
from ribbed.log.keys import LogKey
from ribbed.log.ring import ACK, CLOSE, FLUSH, KEY, RECORD, SCALARS, TICKS, slot_layout
from ribbed.log.writer import append_records, read_index, write_index

#: The most buffers one ``os.writev`` takes (Linux's IOV_MAX).
_IOV_MAX = 1024
#: Tick records framed and written with one system call (as many as the run tells of at once).
_BATCH = 64


def _read(stream, size: int) -> bytearray | None:
    """Exactly ``size`` bytes, or None at the end of the input."""
    data = bytearray(size)
    view, done = memoryview(data), 0
    while done < size:
        count = stream.readinto(view[done:])
        if not count:
            return None
        done += count
    return data


class _Writer:
    def __init__(self, settings: dict, chain: DigestChain):
        self.path = settings["path"]
        self.chain = chain
        self.slots, self.n_slots = slot_layout(settings["layout"]), settings["slots"]
        with open(settings["ring"], "r+b") as ring:
            self.map = mmap.mmap(ring.fileno(), self.n_slots * self.slots.size)
        os.unlink(settings["ring"])  # the mapping stays; the name goes (nothing left behind on a crash)
        #: Each slot's body after its scalars, in the ring (see ribbed.log.ring).
        self.rests = [memoryview(self.map)[start:start + len(self.slots.rest)]
                      for start in range(self.slots.rest_offset, self.n_slots * self.slots.size, self.slots.size)]
        if settings["resume"]:
            self.entries, self.offset = read_index(self.path)
            self.file = open(self.path, "r+b", buffering=0)
            self.file.truncate(self.offset)
            self.file.seek(self.offset)
            self.digest = self.entries[-1][3] if self.entries else DIGEST_SEED
        else:
            self.file = open(self.path, "xb", buffering=0)
            self.entries, self.offset, self.digest = [], 0, DIGEST_SEED
        self.done = 0

    def append(self, records: list[tuple[str, int, list]], index: bool = False) -> None:
        self.offset, self.digest = append_records(self.file, records, self.offset, self.digest, self.entries,
                                                  self.chain)
        if index:
            write_index(self.path, self.entries, self.offset)

    def ticks(self, head: int) -> None:
        """Write the tick records of the ring up to sequence number ``head``, ``_BATCH`` at a
        time: each body is its packed scalars and the rest of it as the slot holds it (the same
        bytes as ``pack_body(record_body("tick", ...))`` of the slot's values), checksummed and
        written from the ring; a batch is written with one system call."""
        lead, middle, size, rests = self.slots.lead, self.slots.middle, self.slots.size, self.rests
        rest_bytes = len(self.slots.rest)
        scalars, start, crc32, entries = SCALARS.unpack_from, self.chain.start, zlib.crc32, self.entries
        tick_type = RECORD_TYPES.index("tick")
        while self.done < head:
            end = min(head, self.done + _BATCH)
            offset, digest, buffers = self.offset, self.digest, []
            for seq in range(self.done, end):
                slot = seq % self.n_slots
                tick, loss, backward = scalars(self.map, slot * size)
                scalar_bytes = lead + pack(tick) + middle[backward] + pack(loss)
                rest = rests[slot]
                chained = start(digest)
                chained.update(scalar_bytes)
                chained.update(rest)
                digest = chained.digest()
                prefix = frame_prefix("tick", tick, crc32(rest, crc32(scalar_bytes)), digest,
                                      len(scalar_bytes) + rest_bytes)
                entries.append((tick_type, tick, offset, digest))
                offset += len(prefix) + len(scalar_bytes) + rest_bytes
                buffers += (prefix + scalar_bytes, rest)
            _write_all(self.file.fileno(), buffers)
            self.offset, self.digest, self.done = offset, digest, end

    def finish(self) -> None:
        write_index(self.path, self.entries, self.offset)
        self.file.close()


def _write_all(descriptor: int, buffers: list[bytes]) -> None:
    """Write the buffers in order with as few ``os.writev`` calls as they allow (a write may be
    cut short by a signal, or by the 2 GiB limit of one call)."""
    start = 0
    while start < len(buffers):
        written = os.writev(descriptor, buffers[start:start + _IOV_MAX])
        while start < len(buffers) and written >= len(buffers[start]):
            written -= len(buffers[start])
            start += 1
        if written:
            buffers[start] = buffers[start][written:]


def main(argv: list[str]) -> int:
    settings = json.loads(argv[1])
    try:  # yield the core to the run when they share one: the scheduler moves this process to a free core
        os.nice(10)
    except (AttributeError, OSError):
        pass
    try:
        return _serve(settings)
    except OSError as exc:  # (a full disk) the run reports the last line of stderr as the reason
        print(exc.strerror or str(exc), file=sys.stderr, flush=True)
        return 1


def _serve(settings: dict) -> int:
    commands = os.fdopen(0, "rb", buffering=0)
    chain = PLAIN
    if settings.get("keyed"):  # the key comes first, through the pipe
        op = _read(commands, 1)
        if op != KEY:
            raise ValueError(f"a keyed log's writer expected its key first, got {op!r}")
        chain = DigestChain(LogKey(bytes(_read(commands, struct.unpack("<H", _read(commands, 2))[0]))))
    writer = _Writer(settings, chain)
    acks = os.fdopen(1, "wb", buffering=0)

    def ack(what: int, value: int) -> None:
        try:
            acks.write(ACK.pack(what, value))
        except BrokenPipeError:
            pass  # the run is gone; keep writing what it sent

    while True:
        op = _read(commands, 1)
        if op is None or op == CLOSE:
            writer.finish()
            ack(2, writer.done)
            return 0
        if op == TICKS:
            fields = _read(commands, 8)
            if fields is not None:
                writer.ticks(struct.unpack("<q", fields)[0])
                ack(0, writer.done)
        elif op == RECORD:
            fields = _read(commands, 18)
            kind, tick, index, size = struct.unpack("<BqBQ", fields) if fields is not None else (0, 0, 0, 0)
            data = None if fields is None else _read(commands, size)
            if data is not None:  # (None: the run died while sending it; the loop ends at the next read)
                writer.append([(RECORD_TYPES[kind], tick, [data])], index=bool(index))
        elif op == FLUSH:
            ack(1, writer.done)
        else:
            raise ValueError(f"unknown command {op!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
