"""Read the arrays of an ``.npz`` data file (an ``npz`` task) in memory bounded before reading.

An ``.npz`` is a zip archive of ``.npy`` arrays, and both layers declare sizes the reader would
otherwise trust: each ``.npy`` header declares a shape and a dtype (``numpy.load`` allocates
shape x itemsize before it reads a byte, so a 585 KB file could take 1.39 GB), and the zip's
directory declares each member's uncompressed size (a compressed member may expand a
thousandfold). So, for each array asked for and before any data is read, this module checks:

- that the file is a zip archive (not an ``.npy`` array renamed, not truncated, not text);
- that the member exists, and that its ``.npy`` header is one numpy writes: a header of at most
  10,000 bytes, a shape of non-negative sizes, a dtype of plain numbers (booleans, integers,
  floats). Object arrays are refused from the header, so nothing is ever unpickled; complex
  numbers are refused rather than silently cut to their real part; strings are refused;
- that the data the header declares (shape x itemsize) fits in the member's declared size;
- that all the arrays, with the float64 copies the task makes of them, fit in
  :func:`memory_bound` (half the memory available now, or half the address-space limit).

A caller's own checks of the shapes and dtypes (an npz task's: 2-D inputs, one label per
sample...) run then too. Then each array is read with numpy's own reader (``allow_pickle=False``), which reads at most
the declared bytes. Every failure is a :class:`~ribbed.errors.ScenarioError` naming the file,
the array and the fix.
"""

from __future__ import annotations

import math
import struct
import zipfile
import zlib
from pathlib import Path
from typing import IO, Callable

import numpy as np

from ribbed.errors import Problem, ScenarioError

__all__ = ["Layout", "MAX_HEADER_BYTES", "memory_bound", "read_npz"]

#: The largest ``.npy`` header read (numpy's own default bound for files it does not trust).
MAX_HEADER_BYTES = 10_000
#: What a zip or an ``.npy`` member may raise when its bytes are damaged or crafted.
_DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError, RuntimeError,
            struct.error, OverflowError, KeyError, IndexError, TypeError, SyntaxError)
_RESAVE = "save the arrays again with numpy.savez(path, X_train=..., y_train=..., X_test=..., y_test=...)"


def memory_bound() -> int:
    """The most bytes a data file's arrays may take once loaded: half the memory a run in this
    process can reach (:func:`ribbed.resources.available_memory`: ``MemAvailable``, capped by a
    cgroup limit), or half the process's address-space limit (``ulimit -v``) when that is
    smaller, so loading leaves room for the run."""
    from ribbed.resources import available_memory

    limit = available_memory()
    available = 8 << 30 if limit is None else limit.bytes  # (no way to ask this system: a small machine)
    try:
        import resource

        address_space = resource.getrlimit(resource.RLIMIT_AS)[0]
        if address_space != resource.RLIM_INFINITY:
            available = min(available, address_space)
    except (ImportError, OSError, ValueError):
        pass
    return available // 2


#: What a caller may check before any data is read: each array's declared shape and dtype.
Layout = dict[str, tuple[tuple[int, ...], np.dtype]]


def read_npz(path: Path, names: tuple[str, ...], source: str, field: str = "task.path",
             bound: int | None = None, check: Callable[[Layout], None] | None = None) -> dict[str, np.ndarray]:
    """The arrays ``names`` of the ``.npz`` file at ``path``, each checked as the module
    docstring says before it is read; ``source`` and ``field`` say where the scenario names the
    file. ``bound``: the bytes the arrays and their float64 copies may take (default:
    :func:`memory_bound`). ``check``: called with the declared shapes and dtypes once every
    header is read and before any data is (a file whose arrays have the wrong shape is refused
    without reading them)."""

    def refuse(message: str, fix: str) -> ScenarioError:
        return ScenarioError(Problem(source, field, message, fix))

    if not path.exists():
        raise refuse(f"no such file: {path}", "give the .npz path relative to the scenario file")
    if not path.is_file():
        raise refuse(f"{path} is not a file (a folder or a device)", "give the path of an .npz file")
    try:
        with path.open("rb") as handle:
            magic = handle.read(6)
    except OSError as exc:
        raise refuse(f"cannot read {path}: {exc.strerror or exc}", "check that you may read the file") from None
    if magic == b"\x93NUMPY":
        raise refuse(f"{path} is a single .npy array, not an .npz archive of the arrays {', '.join(names)}",
                     _RESAVE)
    try:
        archive = zipfile.ZipFile(path)
    except _DAMAGED as exc:
        what = "is empty" if magic == b"" else "is not a zip archive, or is truncated (its end, the zip's " \
            "directory, is missing)"
        raise refuse(f"{path} {what}, so it is not an .npz file ({exc})", _RESAVE) from None
    with archive:
        members = _members(archive, names, path, refuse)
        headers = {name: _header(archive, members[name], name, path, refuse) for name in names}
        if check is not None:
            check({name: (shape, dtype) for name, (shape, dtype, _, _) in headers.items()})
        need = sum(nbytes + 8 * count for _, _, count, nbytes in headers.values())
        limit = memory_bound() if bound is None else bound
        if need > limit:
            raise refuse(f"the arrays of {path} would take {_size(need)} in memory (as stored, and as float64 "
                         f"copies), more than the {_size(limit)} this machine can give them (half the memory "
                         "available now, or half the process's memory limit)", "use a smaller data set, or free memory")
        return {name: _array(archive, members[name], name, path, refuse) for name in names}


def _members(archive: zipfile.ZipFile, names: tuple[str, ...], path: Path, refuse) -> dict[str, zipfile.ZipInfo]:
    """The zip member of each array (``X_train.npy``, as numpy.savez names it, or ``X_train``)."""
    try:
        infos = {info.filename: info for info in archive.infolist()}
    except _DAMAGED as exc:
        raise refuse(f"cannot read the zip directory of {path}: {exc}", _RESAVE) from None
    members, missing = {}, []
    for name in names:
        info = infos.get(f"{name}.npy") or infos.get(name)
        if info is None:
            missing.append(name)
        else:
            members[name] = info
    if missing:
        found = sorted(n[:-4] if n.endswith(".npy") else n for n in infos)
        shown = ", ".join(found[:10]) + (f" and {len(found) - 10} more" if len(found) > 10 else "")
        raise refuse(f"{path} lacks the array(s) {', '.join(missing)} (it holds: {shown or 'nothing'})",
                     "save X_train, y_train, X_test and y_test under those names: numpy.savez(path, X_train=..., "
                     "y_train=..., X_test=..., y_test=...)")
    return members


def _header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, path: Path,
            refuse) -> tuple[tuple[int, ...], np.dtype, int, int]:
    """``(shape, dtype, element count, data bytes)`` of a member, from its ``.npy`` header only."""
    where = f"{name} in {path}"
    try:
        with archive.open(info) as member:
            shape, fortran, dtype = _read_header(member)
            header_bytes = member.tell()
    except _DAMAGED as exc:
        raise refuse(f"{where} is not a readable .npy array: {exc}", _RESAVE) from None
    if not (isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)):
        raise refuse(f"{where} declares the shape {shape!r}, which no array has", _RESAVE)
    if dtype.hasobject:
        raise refuse(f"{where} holds Python objects (dtype object), which would have to be unpickled, and ribbed "
                     "never unpickles a data file", "store numeric arrays: numpy.asarray(x, dtype=float)")
    if dtype.kind == "c":
        raise refuse(f"{where} holds complex numbers ({dtype}); a network's inputs and targets are real",
                     "store the real part (x.real), or the real and imaginary parts as separate columns")
    if dtype.kind not in "biuf" or dtype.subdtype is not None or dtype.names is not None:
        raise refuse(f"{where} holds {dtype} values, not numbers", "store numeric arrays (booleans, integers "
                     "or floats): numpy.asarray(x, dtype=float)")
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    if header_bytes + nbytes > info.file_size:
        raise refuse(f"{where} declares the shape {shape} of {dtype} ({_size(nbytes)}), but its zip entry holds "
                     f"{_size(max(0, info.file_size - header_bytes))} of data: the file is damaged or was not "
                     "written by numpy", _RESAVE)
    return shape, dtype, count, nbytes


def _read_header(member: IO[bytes]) -> tuple:
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(member, max_header_size=MAX_HEADER_BYTES)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(member, max_header_size=MAX_HEADER_BYTES)
    raise ValueError(f".npy format version {version[0]}.{version[1]}, which only structured arrays use")


def _array(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, path: Path, refuse) -> np.ndarray:
    try:
        with archive.open(info) as member:
            return np.lib.format.read_array(member, allow_pickle=False, max_header_size=MAX_HEADER_BYTES)
    except _DAMAGED as exc:
        raise refuse(f"{name} in {path} is damaged: {exc}", _RESAVE) from None
    except MemoryError:
        raise refuse(f"{name} in {path} does not fit in the memory left", "use a smaller data set, or free "
                     "memory") from None


def _size(nbytes: int) -> str:
    if nbytes >= 1 << 50:
        return f"{nbytes:.2e} bytes"
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} bytes"
