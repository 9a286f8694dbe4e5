"""The message log's byte format, version 2 (docs/log-format.md is its specification).

A log is a plain stream of msgpack maps, one per record::

    {"type": str, "tick": int, "crc": uint32, "digest": bin(32), "body": bin}

``body`` is itself a msgpack map (what the record holds); ``crc`` is the CRC-32 of the body's
bytes and ``digest`` the SHA-256 of the previous record's digest followed by the body (the
header's digest hashes ``DIGEST_SEED`` and its body), so changing any past record breaks every
later digest; a keyed log uses HMAC-SHA256 under its key instead (:mod:`ribbed.log.chain`).
Arrays are maps ``{"dtype", "shape", "data"}`` with little-endian numpy dtype strings and the
raw bytes as msgpack bin.  Nothing is ever pickled: a reader needs msgpack,
and numpy to view the bytes.

Version 2 added the direct-feedback-alignment matrices D to the topology record (``dfa``) and
the cores and log writer a run chose to the header (``resources``); the framing, the checks and
every other record are those of version 1, so a version-1 log is read, replayed and verified
as it was written (its topology simply has no D matrices).
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Any, Callable

import msgpack
import numpy as np

from ribbed.log.chain import DIGEST_SEED, PLAIN, DigestChain
from ribbed.log.structure import container_problem

__all__ = [
    "DIGEST_SEED", "DTYPES", "FORMAT", "ITEMSIZE", "OLDEST_VERSION", "RECORD_KEYS", "RECORD_TYPES", "VERSION",
    "array_prefix", "array_problem", "body_digest", "crc", "decode_array", "encode_array", "frame", "frame_prefix",
    "map_header",
    "pack", "pack_body", "pack_parts", "pack_spikes", "record_body", "unpack_body", "unpack_spikes",
]

FORMAT = "ribbed-log"
#: The version this code writes.
VERSION = 2
#: The oldest version this code reads (every version from it to :data:`VERSION`).
OLDEST_VERSION = 1
RECORD_TYPES = ("header", "topology", "tick", "snapshot", "end")
RECORD_KEYS = ("type", "tick", "crc", "digest", "body")
#: The numpy dtypes an array may have (no object, no structured dtypes: nothing to unpickle).
DTYPES = frozenset({"<f4", "<f8", "<i1", "<i2", "<i4", "<i8", "<u1", "<u2", "<u4", "<u8", "|b1", "|i1", "|u1"})
#: Each dtype's itemsize.
ITEMSIZE = {dtype: np.dtype(dtype).itemsize for dtype in DTYPES}
#: The most dimensions an array has.
MAX_DIMENSIONS = 8
#: An array's size in bytes, counting only its non-zero dimensions, is below this (numpy's limit:
#: ``[0, 2**63]`` has no elements, but numpy cannot make it).
MAX_ARRAY_BYTES = 1 << 63
#: Arrays of up to this many items are unpacked without first walking the body's containers
#: (see :func:`unpack_body`).
_SMALL_ARRAY_LEN = 1024


class FormatViolation(ValueError):
    """Bytes that do not follow the format (the reader turns it into a LogFormatError)."""


def encode_array(values: np.ndarray) -> dict:
    """An array as a msgpack-ready map; the data is a view of the array's bytes where it can be."""
    values = np.asarray(values)
    if values.dtype.byteorder == ">":
        values = values.astype(values.dtype.newbyteorder("<"))
    if values.dtype.str not in DTYPES:
        raise TypeError(f"cannot write an array of dtype {values.dtype} to a log (allowed: {sorted(DTYPES)})")
    if not values.flags.c_contiguous:  # (not np.ascontiguousarray: it turns 0-d arrays into 1-d)
        values = values.copy(order="C")
    return {"dtype": values.dtype.str, "shape": list(values.shape), "data": memoryview(values).cast("B")}


def array_problem(value: Any) -> str | None:
    """None when ``value`` is an encoded array that follows the array rules (a dtype of
    :data:`DTYPES`, at most 8 non-negative dimensions whose non-zero ones make less than
    :data:`MAX_ARRAY_BYTES`, and exactly the bytes they need), else what is wrong.  Nothing is
    allocated: a declared shape is checked against the bytes that are there."""
    if type(value) is not dict or value.keys() != {"dtype", "shape", "data"}:
        return "an array must be a map with exactly the keys dtype, shape and data"
    dtype, shape, data = value["dtype"], value["shape"], value["data"]
    if type(dtype) is not str or dtype not in DTYPES:
        return f"array dtype {_short(dtype)} is not one of the format's dtypes ({', '.join(sorted(DTYPES))})"
    if (type(shape) is not list or len(shape) > MAX_DIMENSIONS
            or not all(type(n) is int and n >= 0 for n in shape)):
        return f"array shape {_short(shape)} is not a list of at most {MAX_DIMENSIONS} non-negative integers"
    if type(data) is not bytes:
        return "array data must be msgpack bin"
    itemsize = ITEMSIZE[dtype]
    count = nonzero = 1
    for n in shape:
        count *= n
        nonzero *= n or 1
    if nonzero * itemsize >= MAX_ARRAY_BYTES:
        return f"array shape {shape} is larger than any array can be"
    if count * itemsize != len(data):
        return f"array of shape {shape} and dtype {dtype} needs {count * itemsize} bytes, has {len(data)}"
    return None


def decode_array(value: Any) -> np.ndarray:
    """The array an encoded map describes, read-only, checked against its dtype and shape
    (:func:`array_problem`) before it is made."""
    problem = array_problem(value)
    if problem is not None:
        raise FormatViolation(problem)
    return np.frombuffer(value["data"], dtype=value["dtype"]).reshape(value["shape"])


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_PACK = msgpack.Packer(use_bin_type=True, autoreset=True).pack
#: The msgpack bytes of a value (shortest encodings, str as str, bytes as bin), as in bodies.
pack: Callable[[Any], bytes] = _PACK
#: The msgpack bytes before an array's data, by (dtype, shape): records repeat the same arrays.
_ARRAY_PREFIX: dict[tuple[str, tuple[int, ...]], bytes] = {}


def array_prefix(dtype: str, shape: tuple[int, ...], size: int) -> bytes:
    """The msgpack bytes of an encoded array up to its data (``size`` bytes): the map header,
    ``dtype``, ``shape`` and the ``data`` key with its bin header."""
    key = (dtype, shape)
    prefix = _ARRAY_PREFIX.get(key)
    if prefix is None:
        prefix = (b"\x83" + _PACK("dtype") + _PACK(dtype) + _PACK("shape") + _PACK(list(shape)) + _PACK("data")
                  + _bin_header(size))
        if len(_ARRAY_PREFIX) < 4096:
            _ARRAY_PREFIX[key] = prefix
    return prefix


def _pack_into(value: Any, parts: list) -> None:
    """Append the msgpack encoding of ``value`` to ``parts``: maps, lists, scalars, strings, bytes
    and numpy arrays (as array maps, their data not copied)."""
    if isinstance(value, np.ndarray):
        if value.dtype.str not in DTYPES:
            raise TypeError(f"cannot write an array of dtype {value.dtype} to a log (allowed: {sorted(DTYPES)})")
        if not value.flags.c_contiguous:
            value = value.copy(order="C")
        parts.append(array_prefix(value.dtype.str, value.shape, value.nbytes))
        parts.append(memoryview(value).cast("B") if value.ndim else value.tobytes())
    elif isinstance(value, dict):
        parts.append(map_header(len(value)))
        for key, item in value.items():
            parts.append(_PACK(key))
            _pack_into(item, parts)
    elif isinstance(value, (list, tuple)):
        parts.append(_array_header(len(value)))
        for item in value:
            _pack_into(item, parts)
    elif isinstance(value, np.generic):
        parts.append(_PACK(value.item()))
    elif isinstance(value, (memoryview, bytearray)):
        parts.append(_bin_header(len(value)) + bytes(value))
    else:
        parts.append(_PACK(value))


def map_header(n: int) -> bytes:
    """The msgpack header of a map of ``n`` entries."""
    return bytes([0x80 | n]) if n < 16 else (b"\xde" + n.to_bytes(2, "big") if n < 2**16 else b"\xdf" + n.to_bytes(4, "big"))


def _array_header(n: int) -> bytes:
    return bytes([0x90 | n]) if n < 16 else (b"\xdc" + n.to_bytes(2, "big") if n < 2**16 else b"\xdd" + n.to_bytes(4, "big"))


def pack_parts(body: dict) -> list:
    """A record body's bytes as a list of pieces (array data as views of the arrays' memory, so
    a body of MBs is checksummed and written without being copied); see :func:`pack_body`."""
    parts: list = []
    _pack_into(body, parts)
    return parts


def pack_body(body: dict) -> bytes:
    """A record body's bytes: standard msgpack (floats as float 64, integers in their smallest
    form), deterministic for the same values (maps keep their key order)."""
    return b"".join(pack_parts(body))


def record_body(kind: str, tick: int, body: dict) -> dict:
    """A body as written: its record's type and tick first (so that the CRC and the digest cover
    them), then the fields."""
    return {"type": kind, "tick": tick, **{k: v for k, v in body.items() if k not in ("type", "tick")}}


def unpack_body(data: bytes) -> dict:
    """A body map, arrays left encoded (see :func:`decode_array`), in memory bounded by the
    body's size.

    msgpack allocates an array's list at the length its header declares (a map's dict grows as
    its entries come).  Bodies whose arrays are all short (every tick record of a usual network)
    are unpacked at once: msgpack nests at most 1024 containers, so the lists declared but not
    filled stay under 8 MiB.  A body with a longer array is first walked
    (:func:`~ribbed.log.structure.container_problem`): its containers must not declare more items
    than it has bytes, nor nest more than 32 deep."""
    size = len(data)
    try:
        body = _unpack(data, min(size, _SMALL_ARRAY_LEN))
    except msgpack.exceptions.StackError:
        raise FormatViolation("its containers nest deeper than msgpack unpacks (1024 levels)") from None
    except ValueError as exc:
        if "exceeds max_array_len" not in str(exc):
            raise
        problem = container_problem(data)
        if problem is not None:
            raise FormatViolation(problem) from None
        body = _unpack(data, size)
    if not isinstance(body, dict):
        raise FormatViolation("it must be a msgpack map")
    return body


def _unpack(data: bytes, max_array_len: int) -> Any:
    size = len(data)
    return msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True, max_bin_len=size, max_str_len=size,
                           max_array_len=max_array_len, max_map_len=size, max_ext_len=0)


def crc(body: bytes) -> int:
    return zlib.crc32(body) & 0xFFFFFFFF


def body_digest(previous: bytes, body: bytes) -> bytes:
    """The chained digest of a record of a plain (unkeyed) log whose predecessor's digest is
    ``previous`` (a keyed log's: :meth:`ribbed.log.chain.DigestChain.digest`)."""
    h = hashlib.sha256(previous)
    h.update(body)
    return h.digest()


def frame(kind: str, tick: int, body: bytes | list, previous: bytes,
          chain: DigestChain = PLAIN) -> tuple[bytes, bytes]:
    """The bytes of a record up to its body (written before the body itself, so a large body
    is not copied) and the record's digest in ``chain``; ``body`` may be given as pieces
    (:func:`pack_parts`)."""
    parts = [body] if isinstance(body, (bytes, bytearray, memoryview)) else body
    digest, check, size = chain.start(previous), 0, 0
    for part in parts:
        digest.update(part)
        check = zlib.crc32(part, check)
        size += len(part) if not isinstance(part, memoryview) else part.nbytes
    digest = digest.digest()
    return frame_prefix(kind, tick, check & 0xFFFFFFFF, digest, size), digest


#: A record's first bytes up to its tick's value, by record type: the map header, ``type`` and
#: its value, the ``tick`` key.
_FRAME_HEAD = {kind: b"\x85" + _PACK("type") + _PACK(kind) + _PACK("tick") for kind in RECORD_TYPES}
_CRC_KEY = _PACK("crc")
_DIGEST_KEY = _PACK("digest") + b"\xc4\x20"  # and the digest's bin 8 header (32 bytes)
_BODY_KEY = _PACK("body")


def frame_prefix(kind: str, tick: int, check: int, digest: bytes, size: int) -> bytes:
    """The bytes of a record before its body of ``size`` bytes, given the body's CRC and the
    record's digest (the writer process frames tick records with it from precomputed bodies)."""
    return b"".join((_FRAME_HEAD[kind], _PACK(tick), _CRC_KEY, _PACK(check), _DIGEST_KEY, digest, _BODY_KEY,
                     _bin_header(size)))


def _bin_header(size: int) -> bytes:
    """The msgpack bin header for ``size`` bytes (bin 8, 16 or 32)."""
    if size < 2**8:
        return b"\xc4" + size.to_bytes(1, "big")
    if size < 2**16:
        return b"\xc5" + size.to_bytes(2, "big")
    if size < 2**32:
        return b"\xc6" + size.to_bytes(4, "big")
    raise ValueError(f"a record body of {size} bytes is larger than msgpack's 4 GiB bin limit")


def pack_spikes(spikes: np.ndarray) -> np.ndarray:
    """0/1 spikes (..., size) as bits, 8 neurons a byte along the last axis (little bit order:
    neuron i is bit i % 8 of byte i // 8), uint8 (..., ceil(size / 8))."""
    return np.packbits(np.asarray(spikes) != 0, axis=-1, bitorder="little")


def unpack_spikes(packed: np.ndarray, size: int, dtype=np.float64) -> np.ndarray:
    """The spikes :func:`pack_spikes` packed, (..., size) in ``dtype``."""
    return np.unpackbits(np.asarray(packed), axis=-1, count=size, bitorder="little").astype(dtype)
