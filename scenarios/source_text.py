"""A scenario file's bytes, turned into text or refused with an error a person can act on.

A scenario is UTF-8 text (a UTF-8 byte-order mark is allowed, as editors on Windows write one)
of at most :data:`MAX_SCENARIO_BYTES`. Everything else is refused here, before the YAML reader
sees it, with the file, the line and column of the first offending byte where there is one, and
the fix: a folder or a device instead of a file, a file too large to be a scenario (the YAML
reader is pure Python: on a busy two-core machine it reads dense flow lists at 50 to 150 KB/s,
so the bound keeps every file it accepts within a few seconds), UTF-16 or UTF-32 text, bytes
that are not UTF-8, a NUL byte, or a binary file (an ``.npz`` archive or an ``.npy`` array
named as the scenario).
"""

from __future__ import annotations

import codecs
import stat
from pathlib import Path

from ribbed.errors import Problem, ScenarioError

__all__ = ["MAX_SCENARIO_BYTES", "decode_scenario", "read_scenario_text"]

#: The largest scenario file read (256 KiB): the built-in scenarios are 1 to 3 KB, and an explicit
#: edge list of 30,000 synapses fits; larger networks are described by a connectivity rule, or
#: built from Python (``load_scenario`` of a mapping has no such bound).
MAX_SCENARIO_BYTES = 256 << 10

_SAVE_AS_UTF8 = "save the file as UTF-8 text (in most editors: 'Save with encoding' > UTF-8)"

# Longest first: the UTF-32 LE mark begins with the UTF-16 LE one.
_WIDE_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
              (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))
_BINARY_MAGIC = ((b"PK\x03\x04", "a zip archive (an .npz data file?)"), (b"PK\x05\x06", "an empty zip archive"),
                 (b"\x93NUMPY", "a NumPy .npy array"), (b"\x1f\x8b", "a gzip archive"))


def read_scenario_text(path: Path) -> str:
    """The text of the scenario file at ``path`` (which exists); raises
    :class:`~ribbed.errors.ScenarioError` for anything that is not a UTF-8 scenario file."""
    source = str(path)
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise ScenarioError(Problem(source, "", "is a folder, not a scenario file",
                                        "name a .yaml file or a built-in scenario"))
        if not stat.S_ISREG(info.st_mode):
            raise ScenarioError(Problem(source, "", "is not a regular file (a device, a pipe or a socket)",
                                        "save the scenario to a .yaml file and name that file"))
        if info.st_size > MAX_SCENARIO_BYTES:
            raise ScenarioError(_too_large(source, info.st_size))
        with path.open("rb") as handle:
            raw = handle.read(MAX_SCENARIO_BYTES + 1)  # the file may grow after stat()
    except OSError as exc:
        raise ScenarioError(Problem(source, "", f"cannot read the file: {exc.strerror or exc}",
                                    "check that the file exists and that you may read it")) from None
    if len(raw) > MAX_SCENARIO_BYTES:
        raise ScenarioError(_too_large(source, len(raw)))
    return decode_scenario(raw, source)


def decode_scenario(raw: bytes, source: str) -> str:
    """``raw`` decoded as UTF-8 (without a leading byte-order mark), or a located
    :class:`~ribbed.errors.ScenarioError` naming the encoding problem."""
    for bom, encoding in _WIDE_BOMS:
        if raw.startswith(bom):
            raise ScenarioError(Problem(source, "", f"is {encoding} text (it starts with a {encoding} byte-order "
                                        "mark); ribbed reads scenarios as UTF-8", _SAVE_AS_UTF8, 1))
    for magic, what in _BINARY_MAGIC:
        if raw.startswith(magic):
            raise ScenarioError(Problem(source, "", f"is {what}, not a scenario (YAML text)",
                                        "name the scenario's .yaml file; a data file goes in 'task: {kind: npz, "
                                        "path: ...}'", 1))
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    nul = raw.find(b"\x00")
    if nul >= 0:
        line, column = _line_column(raw, nul)
        if _looks_wide(raw):
            raise ScenarioError(Problem(source, "", "looks like UTF-16 text without a byte-order mark (every other "
                                        "byte is 0); ribbed reads scenarios as UTF-8", _SAVE_AS_UTF8, 1))
        raise ScenarioError(Problem(source, "", f"holds a NUL byte (0x00) at column {column}: a scenario is text, "
                                    "and this looks like a binary file", "name the scenario's .yaml file, or "
                                    "delete the NUL byte", line))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _line_column(raw, exc.start)
        raise ScenarioError(Problem(source, "", f"is not UTF-8 text: byte {raw[exc.start]:#04x} at column {column} "
                                    "is not valid UTF-8 (another encoding, such as Latin-1, or a binary file)",
                                    _SAVE_AS_UTF8, line)) from None


def _too_large(source: str, size: int) -> Problem:
    return Problem(source, "", f"is {size:,} bytes; a scenario file may be at most {MAX_SCENARIO_BYTES:,} bytes "
                   "(256 KiB)", "describe large connectivity with a rule (fixed_probability, fixed_in_degree, "
                   "networkx) instead of an edge list, or build the scenario in Python: "
                   "ribbed.load_scenario(mapping) has no such bound")


def _line_column(raw: bytes, offset: int) -> tuple[int, int]:
    """The 1-based line and column (in bytes) of ``raw[offset]``."""
    return raw.count(b"\n", 0, offset) + 1, offset - (raw.rfind(b"\n", 0, offset) + 1) + 1


def _looks_wide(raw: bytes) -> bool:
    """Whether ``raw`` reads as mostly-ASCII UTF-16 (or UTF-32) without a byte-order mark: NULs in
    one of the two byte columns of its first kilobyte and hardly any in the other."""
    head = raw[:1024]
    even, odd = head[0::2].count(0), head[1::2].count(0)
    half = max(1, len(head) // 2)
    return max(even, odd) >= 0.4 * half and min(even, odd) <= 0.6 * max(even, odd) and len(head) >= 4
