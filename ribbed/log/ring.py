"""The shared ring between a run and its log writer process (:mod:`ribbed.log.shared_writer`):
the pipe's commands, and where each tick field lies in a slot.  numpy only: the writer
process imports it."""

from __future__ import annotations

import struct

import numpy as np

__all__ = ["ACK", "CLOSE", "FLUSH", "RECORD", "RING_BYTES", "SCALARS", "TICKS", "slot_layout", "slot_views"]

#: Commands on the pipe (one byte each, then their fields, little-endian).
TICKS, RECORD, FLUSH, CLOSE = b"T", b"R", b"F", b"C"
ACK = struct.Struct("<qq")  # (what, value): 0 ticks written so far, 1 flushed, 2 closed
RING_BYTES = 4 << 20  # small enough to stay in cache; at least 4 slots, whatever their size
#: A slot's first bytes: tick, loss, backward.
SCALARS = struct.Struct("<qd?")


def slot_layout(fields: list[dict]) -> tuple[list[tuple[str, str | None, np.dtype, tuple, int]], int]:
    """Each array's (name, map name, dtype, shape, byte offset) in a slot, and the slot's size.
    The leading scalars (tick, loss, backward) share the slot's first 64 bytes, packed as
    ``SCALARS`` (one write per tick); arrays follow, each aligned to 64 bytes."""
    placed, offset = [], 64
    scalars = {"tick": 0, "loss": 8, "backward": 16}
    for field in fields:
        for item, parent in ([(f, field["name"]) for f in field["fields"]] if field["as"] == "map"
                             else [(field, None)]):
            dtype, shape = np.dtype(item["dtype"]), tuple(item["shape"])
            if parent is None and item["name"] in scalars and not shape:
                placed.append((item["name"], None, dtype, shape, scalars[item["name"]]))
                continue
            placed.append((item["name"], parent, dtype, shape, offset))
            offset += -(-int(np.prod(shape, dtype=np.int64)) * dtype.itemsize // 64) * 64
    return placed, offset


def slot_views(buffer, placed: list, slot_bytes: int, n_slots: int) -> list[dict]:
    """Per slot, the numpy views of its arrays (keys ``name`` or ``map/name``)."""
    views = []
    for slot in range(n_slots):
        base = slot * slot_bytes
        views.append({(name if parent is None else f"{parent}/{name}"): np.ndarray(
            shape, dtype=dtype, buffer=buffer, offset=base + offset) for name, parent, dtype, shape, offset in placed})
    return views


