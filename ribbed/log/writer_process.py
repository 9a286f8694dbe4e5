"""The writer process of :mod:`ribbed.log.shared_writer`: ``python -m ribbed.log.writer_process SETTINGS``.

It reads commands from its stdin (the run's pipe), builds tick records from the shared ring,
frames, checksums and appends every record to the log, keeps the index, and reports progress
on its stdout.  It imports only the log format (numpy and msgpack), so it starts in a fraction
of a second.  At the end of its input (the run closed the log, or died) it writes what it was
told about, the index, and removes the ring's file.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import sys

from ribbed.log.format import DIGEST_SEED, RECORD_TYPES, pack_parts, record_body
from ribbed.log.ring import ACK, CLOSE, FLUSH, RECORD, TICKS, slot_layout, slot_views
from ribbed.log.writer import append_records, read_index, write_index


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
    def __init__(self, settings: dict):
        self.path = settings["path"]
        self.layout = settings["layout"]
        n_slots, slot_bytes = settings["slots"], settings["slot_bytes"]
        with open(settings["ring"], "r+b") as ring:
            self.map = mmap.mmap(ring.fileno(), n_slots * slot_bytes)
        os.unlink(settings["ring"])  # the mapping stays; the name goes (nothing left behind on a crash)
        placed, _ = slot_layout(self.layout)
        self.views = slot_views(self.map, placed, slot_bytes, n_slots)
        self.n_slots = n_slots
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

    def body(self, slot: int) -> tuple[int, dict]:
        views, body = self.views[slot], {}
        for field in self.layout:
            name, kind = field["name"], field["as"]
            if kind == "map":
                body[name] = {item["name"]: views[f"{name}/{item['name']}"] for item in field["fields"]}
            else:
                value = views[name]
                body[name] = int(value) if kind == "int" else bool(value) if kind == "bool" else \
                    float(value) if kind == "float" else value
        return body["tick"], body

    def append(self, records: list[tuple[str, int, list]], index: bool = False) -> None:
        self.offset, self.digest = append_records(self.file, records, self.offset, self.digest, self.entries)
        if index:
            write_index(self.path, self.entries, self.offset)

    def ticks(self, head: int) -> None:
        while self.done < head:
            batch = []
            for seq in range(self.done, min(head, self.done + 256)):
                tick, body = self.body(seq % self.n_slots)
                batch.append(("tick", tick, pack_parts(record_body("tick", tick, body))))
            self.append(batch)
            self.done += len(batch)

    def finish(self) -> None:
        write_index(self.path, self.entries, self.offset)
        self.file.close()


def main(argv: list[str]) -> int:
    settings = json.loads(argv[1])
    try:  # yield the core to the run when they share one: the scheduler moves this process to a free core
        os.nice(10)
    except (AttributeError, OSError):
        pass
    writer = _Writer(settings)
    commands = os.fdopen(0, "rb", buffering=0)
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
