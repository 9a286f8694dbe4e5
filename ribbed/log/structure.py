"""The containers a msgpack value declares, checked against its bytes before it is unpacked.

msgpack's C unpacker allocates a list for an array as soon as it reads the array's header, at
the length the header declares.  One array of a million items costs 8 MB before a single item
is read, and arrays nested in arrays open at once: a crafted body of 17 KB made of nested
array headers costs 66 MB, one of 1 MB would cost GBs.  Every item takes at least one byte, so
in a valid value the items all its containers declare add up to at most its length in bytes;
:func:`container_problem` walks the headers (skipping strings and bins whole) and says when they
do not, or when containers nest deeper than a log ever does.  Then unpacking allocates at
most a small multiple of the bytes that are there.
"""

from __future__ import annotations

__all__ = ["MAX_DEPTH", "container_problem"]

#: How deep containers may nest in a record body (a header's scenario nests about 6 deep).
MAX_DEPTH = 32

#: Values of a fixed size in bytes, by first byte: nil, false, true, float 32/64, uint 8-64, int 8-64.
_FIXED = {0xc0: 1, 0xc2: 1, 0xc3: 1, 0xca: 5, 0xcb: 9, 0xcc: 2, 0xcd: 3, 0xce: 5, 0xcf: 9,
          0xd0: 2, 0xd1: 3, 0xd2: 5, 0xd3: 9}
#: bin 8/16/32 and str 8/16/32: the width of their length field.
_SIZED = {0xc4: 1, 0xc5: 2, 0xc6: 4, 0xd9: 1, 0xda: 2, 0xdb: 4}
#: array 16/32 and map 16/32: the width of their count field, and items per count (a map's
#: entry is a key and a value).
_CONTAINERS = {0xdc: (2, 1), 0xdd: (4, 1), 0xde: (2, 2), 0xdf: (4, 2)}


def container_problem(data: bytes, max_depth: int = MAX_DEPTH) -> str | None:
    """None when ``data`` is one msgpack value whose containers declare no more items than it
    has bytes and nest at most ``max_depth`` deep (and that uses no extension type); else what
    is wrong, with the byte offset in ``data``."""
    size = len(data)
    position = 0
    left = [1]  # items still to come in each open container (the outermost: the value itself)
    declared = 0
    while left:
        if not left[-1]:
            left.pop()
            continue
        left[-1] -= 1
        if position >= size:
            return f"the value ends inside a container (at byte {position})"
        first = data[position]
        if first < 0x80 or first >= 0xe0:  # fixint
            position += 1
            continue
        if first < 0xa0:  # fixmap, fixarray
            items = (first & 0x0f) * (2 if first < 0x90 else 1)
            position += 1
        elif first < 0xc0:  # fixstr
            position += 1 + (first & 0x1f)
            continue
        elif first in _FIXED:
            position += _FIXED[first]
            continue
        elif first in _SIZED:
            width = _SIZED[first]
            position += 1 + width + int.from_bytes(data[position + 1:position + 1 + width], "big")
            continue
        elif first in _CONTAINERS:
            width, per = _CONTAINERS[first]
            items = per * int.from_bytes(data[position + 1:position + 1 + width], "big")
            position += 1 + width
        else:
            return f"byte 0x{first:02x} at {position} is not a msgpack type a log uses (extension types are not used)"
        declared += items
        if declared > size:
            return (f"its containers declare {declared} items or more (at byte {position}), more than its "
                    f"{size} bytes can hold")
        if len(left) > max_depth:
            return f"its containers nest more than {max_depth} deep (at byte {position})"
        left.append(items)
    if position != size:
        return (f"{size - position} bytes follow the value" if position < size
                else "the value ends inside a string or bin")
    return None
