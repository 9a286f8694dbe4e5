"""The shared ring between a run and its log writer process (:mod:`ribbed.log.shared_writer`):
the pipe's commands, and how a tick record lies in a slot.  The log format and numpy only: the
writer process imports it.

A slot holds its tick's record body almost as it is written.  A tick body's keys, array
headers (dtype, shape) and bin lengths are the same at every tick of a run; only three scalars
(``tick``, ``backward``, ``loss``, which come first) and the arrays' bytes change.  So a slot
is the scalars (``SCALARS``, in its first 64 bytes), then the encoded rest of the body: its
constant bytes are put in every slot once, and the run copies each tick's arrays straight into
their places among them.  The writer then packs the scalars (``SlotLayout.lead`` and ``middle``
around them) and checksums and writes the rest from the ring, without encoding or copying it.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import numpy as np

from ribbed.log.format import DTYPES, array_prefix, map_header, pack

__all__ = ["ACK", "CLOSE", "FLUSH", "KEY", "RECORD", "RING_BYTES", "SCALARS", "SCALAR_FIELDS", "SlotLayout", "TICKS",
           "slot_layout", "slot_views"]

#: Commands on the pipe (one byte each, then their fields, little-endian).  ``KEY`` (the key's
#: length as a uint16, then its bytes) comes first, and only for a keyed log: the key never
#: travels on the writer's command line.
TICKS, RECORD, FLUSH, CLOSE, KEY = b"T", b"R", b"F", b"C", b"K"
ACK = struct.Struct("<qq")  # (what, value): 0 ticks written so far, 1 flushed, 2 closed
RING_BYTES = 4 << 20  # small enough to stay in cache; at least 4 slots, whatever their size
#: A slot's first bytes: tick, loss, backward.
SCALARS = struct.Struct("<qd?")
#: The fields a slot holds in ``SCALARS``: a tick layout's first three, in this order.
SCALAR_FIELDS = ("tick", "backward", "loss")
#: Where the rest of the body may start in a slot: after ``SCALARS``, at the first of these
#: bytes that puts the first array's data (the counts, which the run writes with a numpy ufunc,
#: slower on unaligned memory) on an 8-byte boundary.
_REST = 64


class SlotLayout(NamedTuple):
    """Where a tick record's body lies in a slot of the ring (see the module docstring)."""

    #: A slot's size in bytes (a multiple of 64).
    size: int
    #: The body up to the tick's value: its map header, ``type``: ``tick``, and the ``tick`` key.
    lead: bytes
    #: The body between the tick's value and the loss's: ``backward`` and its value, and the
    #: ``loss`` key; by ``backward`` (False, True).
    middle: tuple[bytes, bytes]
    #: The body after the loss's value, its arrays' data zero: bytes ``rest_offset`` and on of
    #: every slot.
    rest: bytes
    rest_offset: int
    #: Each array's key (``name``, or ``map/name`` for a map's entry), dtype, shape and byte
    #: offset in a slot.
    arrays: dict[str, tuple[np.dtype, tuple[int, ...], int]]


def slot_layout(fields: list[dict]) -> SlotLayout:
    """The slot layout of tick records with these fields (``shared_writer.tick_layout``: body
    order, ``tick``, ``backward`` and ``loss`` first, then arrays and maps of arrays)."""
    scalars, others = fields[:len(SCALAR_FIELDS)], fields[len(SCALAR_FIELDS):]
    if tuple(field["name"] for field in scalars) != SCALAR_FIELDS or any(field["as"] not in ("array", "map")
                                                                          for field in others):
        raise ValueError(f"a tick layout starts with {SCALAR_FIELDS}, then holds arrays and maps of arrays")
    rest, arrays = bytearray(), {}

    def add_array(key: str, item: dict) -> None:
        dtype, shape = np.dtype(item["dtype"]), tuple(item["shape"])
        if dtype.str not in DTYPES:
            raise TypeError(f"cannot write an array of dtype {dtype} to a log (allowed: {sorted(DTYPES)})")
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        rest.extend(array_prefix(dtype.str, shape, size))
        arrays[key] = (dtype, shape, len(rest))  # from the rest's start, for now
        rest.extend(bytes(size))

    for field in others:
        rest.extend(pack(field["name"]))
        if field["as"] == "map":
            rest.extend(map_header(len(field["fields"])))
            for item in field["fields"]:
                rest.extend(pack(item["name"]))
                add_array(f"{field['name']}/{item['name']}", item)
        else:
            add_array(field["name"], field)
    # record_body's order: type and tick first, then the other fields.
    lead = map_header(1 + len(fields)) + pack("type") + pack("tick") + pack("tick")
    middle = tuple(pack("backward") + pack(backward) + pack("loss") for backward in (False, True))
    first = min((offset for _, _, offset in arrays.values()), default=0)
    start = _REST + -(_REST + first) % 8
    arrays = {key: (dtype, shape, start + offset) for key, (dtype, shape, offset) in arrays.items()}
    size = -(-(start + len(rest)) // 64) * 64
    return SlotLayout(size, lead, middle, bytes(rest), start, arrays)


def slot_views(buffer, layout: SlotLayout, n_slots: int) -> list[dict[str, np.ndarray]]:
    """Per slot, the numpy views of its arrays (keys as in ``SlotLayout.arrays``)."""
    return [{key: np.ndarray(shape, dtype=dtype, buffer=buffer, offset=slot * layout.size + offset)
             for key, (dtype, shape, offset) in layout.arrays.items()} for slot in range(n_slots)]
