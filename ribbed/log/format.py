"""The message log's byte format, version 1 (docs/log-format.md is its specification).

A log is a plain stream of msgpack maps, one per record::

    {"type": str, "tick": int, "crc": uint32, "digest": bin(32), "body": bin}

``body`` is itself a msgpack map (what the record holds); ``crc`` is the CRC-32 of the body's
bytes and ``digest`` the SHA-256 of the previous record's digest followed by the body (the
header's digest hashes ``DIGEST_SEED`` and its body), so changing any past record breaks every
later digest.  Arrays are maps ``{"dtype", "shape", "data"}`` with little-endian numpy dtype
strings and the raw bytes as msgpack bin.  Nothing is ever pickled: a reader needs msgpack,
and numpy to view the bytes.
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Any

import msgpack
import numpy as np

__all__ = [
    "DIGEST_SEED", "FORMAT", "RECORD_KEYS", "RECORD_TYPES", "VERSION",
    "body_digest", "crc", "decode_array", "encode_array", "frame", "pack_body", "unpack_body",
]

FORMAT = "ribbed-log"
VERSION = 1
#: What the header's digest is chained to.
DIGEST_SEED = b"ribbed-log\x00"
RECORD_TYPES = ("header", "topology", "tick", "snapshot", "end")
RECORD_KEYS = ("type", "tick", "crc", "digest", "body")
#: The numpy dtypes an array may have (no object, no structured dtypes: nothing to unpickle).
DTYPES = frozenset({"<f4", "<f8", "<i1", "<i2", "<i4", "<i8", "<u1", "<u2", "<u4", "<u8", "|b1", "|i1", "|u1"})


class FormatViolation(ValueError):
    """Bytes that do not follow the format (the reader turns it into a LogFormatError)."""


def encode_array(values: np.ndarray) -> dict:
    """An array as a msgpack-ready map; the data is a view of the array's bytes where it can be."""
    values = np.asarray(values)
    if values.dtype.byteorder == ">" or values.dtype.kind not in "fiub":
        values = values.astype(values.dtype.newbyteorder("<") if values.dtype.kind in "fiu" else np.float64)
    if not values.flags.c_contiguous:  # (not np.ascontiguousarray: it turns 0-d arrays into 1-d)
        values = values.copy(order="C")
    return {"dtype": values.dtype.str, "shape": list(values.shape), "data": memoryview(values).cast("B")}


def decode_array(value: Any) -> np.ndarray:
    """The array an encoded map describes, read-only, checked against its dtype and shape."""
    if not isinstance(value, dict) or set(value) != {"dtype", "shape", "data"}:
        raise FormatViolation("an array must be a map with exactly dtype, shape and data")
    dtype, shape, data = value["dtype"], value["shape"], value["data"]
    if dtype not in DTYPES:
        raise FormatViolation(f"array dtype {dtype!r} is not one of the format's dtypes")
    if (not isinstance(shape, list) or len(shape) > 8
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)):
        raise FormatViolation(f"array shape {shape!r} is not a list of at most 8 non-negative integers")
    if not isinstance(data, (bytes, bytearray)):
        raise FormatViolation("array data must be msgpack bin")
    dtype = np.dtype(dtype)
    count = 1
    for n in shape:
        count *= n
    if count * dtype.itemsize != len(data):
        raise FormatViolation(f"array of shape {shape} and dtype {dtype.str} needs {count * dtype.itemsize} bytes, "
                              f"has {len(data)}")
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def _default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return encode_array(value)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write a {type(value).__name__} to a log")


def pack_body(body: dict) -> bytes:
    """A record body's bytes: deterministic for the same values (maps keep their key order)."""
    return msgpack.packb(body, default=_default, use_bin_type=True, datetime=False)


def unpack_body(data: bytes) -> dict:
    """A body map, arrays left encoded (see :func:`decode_arrays`); bounded by the body's size."""
    body = msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True,
                           max_bin_len=len(data), max_str_len=len(data), max_array_len=len(data),
                           max_map_len=len(data), max_ext_len=0)
    if not isinstance(body, dict):
        raise FormatViolation("a record body must be a map")
    return body


def crc(body: bytes) -> int:
    return zlib.crc32(body) & 0xFFFFFFFF


def body_digest(previous: bytes, body: bytes) -> bytes:
    """The chained digest of a record whose predecessor's digest is ``previous``."""
    h = hashlib.sha256(previous)
    h.update(body)
    return h.digest()


def frame(kind: str, tick: int, body: bytes, previous: bytes) -> tuple[bytes, bytes]:
    """The bytes of a record up to its body (written before the body itself, so a large body
    is not copied) and the record's digest."""
    digest = body_digest(previous, body)
    packer = msgpack.Packer(use_bin_type=True)
    prefix = b"".join([packer.pack_map_header(len(RECORD_KEYS)), packer.pack("type"), packer.pack(kind),
                       packer.pack("tick"), packer.pack(tick), packer.pack("crc"), packer.pack(crc(body)),
                       packer.pack("digest"), packer.pack(digest), packer.pack("body"),
                       _bin_header(len(body))])
    return prefix, digest


def _bin_header(size: int) -> bytes:
    """The msgpack bin header for ``size`` bytes (bin 8, 16 or 32)."""
    if size < 2**8:
        return b"\xc4" + size.to_bytes(1, "big")
    if size < 2**16:
        return b"\xc5" + size.to_bytes(2, "big")
    if size < 2**32:
        return b"\xc6" + size.to_bytes(4, "big")
    raise ValueError(f"a record body of {size} bytes is larger than msgpack's 4 GiB bin limit")
