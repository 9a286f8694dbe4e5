"""Hostile and unlucky input files get a located error, quickly, in bounded memory (issue 14).

Two tables of cases: scenario files (alias bombs, deep nesting, encodings, tags, documents,
things that are not files) and ``.npz`` data files (not zips, truncated, renamed, complex,
object and string arrays, declared shapes and zip sizes that lie). Every case is loaded through
the Python API in one worker process with its address space capped (a regression cannot take
the machine down) and each case timed and measured there; and through ``ribbed validate``, all
the files of a table in one run of the console script, under the same cap. Each must give a
:class:`~ribbed.ScenarioError` naming the file, the line or the array, and the fix; no
traceback; under 5 s; and at most a few MiB of peak memory growth.

Then the bounds themselves (exactly 100,000 nodes of aliases pass and one more does not;
nesting 64 deep passes and 65 does not), the peak memory of reading files that declare
gigabytes, the help of the command line's flags, and the warning for a network in which
nothing learns from the targets.
"""

from __future__ import annotations

import codecs
import io
import json
import os
import re
import resource
import struct
import subprocess
import sys
import textwrap
import time
import warnings
import zipfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import ribbed
from ribbed.cli import app
from ribbed.scenarios import yaml_reader
from ribbed.scenarios.yaml_reader import MAX_ALIAS_NODES, MAX_DEPTH, read_yaml

#: The address-space cap of every process that reads a hostile file (ribbed validate needs ~1 GiB).
MEMORY_CAP = 2 << 30
#: The most one case may take, and the most its peak memory may grow (KiB, as ru_maxrss counts).
SECONDS = 5.0
#: The bound for the largest file read: a guard against a hang or a quadratic read, not a speed
#: claim (the pure-Python parser takes 2.5-4.5 s alone on one core, more on a loaded machine; a
#: quadratic read of its 17,000 entries would take minutes).
LARGEST_FILE_SECONDS = 30.0
GROWTH_KIB = 48 << 10

from test_bad_input import BASE_YAML  # noqa: E402  (12 lines: what a case appends starts on line 13)


def alias_bomb(levels: int, duplicate: bool = True) -> str:
    """Issue 14's 420-byte file: ``a0: &a0 [x x10]``, ``a1: &a1 [*a0 x10]``... and a key written twice."""
    lines = ["a0: &a0 [" + ", ".join(["x"] * 10) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return "\n".join(lines + (["a0: 1"] if duplicate else [])) + "\n"


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def npy_header(shape: tuple, descr: str = "<f8") -> bytes:
    """An ``.npy`` version 1.0 header declaring ``shape`` and ``descr``, as numpy writes one."""
    text = ("{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (descr, tuple(shape))).encode("latin1")
    text += b" " * (64 - (10 + len(text) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


def zip_declaring(members: dict[str, bytes], declared: dict[str, int]) -> bytes:
    """A stored zip of ``members`` in which each entry named in ``declared`` claims that many
    uncompressed bytes (a zip64 size) instead of its true length, as a crafted file or a zip
    bomb does."""
    body, directory = bytearray(), bytearray()
    for name, data in members.items():
        filename, crc, offset = name.encode(), zlib.crc32(data), len(body)
        size = declared.get(name, len(data))
        extra = struct.pack("<HHQQ", 1, 16, size, size)
        body += struct.pack("<4s5H3I2H", b"PK\x03\x04", 45, 0, 0, 0, 0, crc, 0xFFFFFFFF, 0xFFFFFFFF,
                            len(filename), len(extra)) + filename + extra + data
        directory += struct.pack("<4s6H3I5HII", b"PK\x01\x02", 45, 45, 0, 0, 0, 0, crc, 0xFFFFFFFF, 0xFFFFFFFF,
                                 len(filename), len(extra), 0, 0, 0, 0, offset) + filename + extra
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, len(members), len(members), len(directory), len(body), 0)
    return bytes(body + directory + end)


def good_arrays(**overrides: Optional[np.ndarray]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {"X_train": rng.standard_normal((40, 2)), "y_train": np.arange(40) % 2,
              "X_test": rng.standard_normal((10, 2)), "y_test": np.arange(10) % 2, **overrides}
    return {k: v for k, v in arrays.items() if v is not None}


class Unpickled:
    """An object whose unpickling writes a file: if it exists afterwards, a pickle was run."""

    marker = ""

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "unpickled"))


# --------------------------------------------------------------------------- the cases


Content = Union[str, bytes, Callable[[Path], Path]]


@dataclass(frozen=True)
class Case:
    """A hostile file. ``content`` is the file's text or bytes, or makes the file in a folder and
    returns its path. ``words`` must all be in the message; ``line`` (if given) is the line the
    error names; ``field`` the field path it names."""

    content: Content
    words: tuple[str, ...]
    line: Optional[int] = None
    field: str = ""


def _nested_blocks(depth: int) -> str:
    return "".join(f"{' ' * i}k{i}:\n" for i in range(depth)) + f"{' ' * depth}1\n"


def _folder(folder: Path) -> Path:
    path = folder / "scenario.yaml"
    path.mkdir()
    return path


YAML_CASES: dict[str, Case] = {
    # ---- aliases: issue 14's bomb took 0.44 s, 6.8 s, then more than 150 s as levels grew
    "alias bomb, 6 levels, duplicate key": Case(alias_bomb(6), ("aliases expand to more than 100,000 nodes", "*a3",
                                                                "fewer and smaller aliases"), line=5),
    "alias bomb, 7 levels, duplicate key": Case(alias_bomb(7), ("more than 100,000 nodes",), line=5),
    "alias bomb, 8 levels, duplicate key": Case(alias_bomb(8), ("more than 100,000 nodes",), line=5),
    "alias bomb, 8 levels, in a field": Case(BASE_YAML.replace("projections:\n  - {pre: in, post: hidden}\n  - "
                                                               "{pre: hidden, post: out}\n", "")
                                             + alias_bomb(8, duplicate=False).replace("a7: &a7", "projections:"),
                                             ("more than 100,000 nodes",), line=14),
    "a key written twice behind 11,110 aliased nodes": Case(alias_bomb(4), ("written twice", "first on line 1",
                                                                            "keep only one"), line=5, field="a0"),
    "an alias inside the node it names": Case(BASE_YAML + "extra: &a [1, *a]\n", ("*a", "contains itself"), line=13),
    "a mapping that contains itself": Case(BASE_YAML + "extra: &m {self: *m}\n", ("contains itself",), line=13),
    "an undefined alias": Case(BASE_YAML + "extra: *nowhere\n", ("undefined alias 'nowhere'",), line=13),
    "an alias that nests too deeply": Case(BASE_YAML + "deep: &d " + "[" * 60 + "]" * 60 + "\nmore: [[[[[*d]]]]]\n",
                                           ("nested too deeply", "*d", "64 levels"), line=14),
    # ---- nesting
    "flow lists 10,000 deep": Case("name: " + "[" * 10_000 + "]" * 10_000 + "\n", ("nested too deeply",), line=1),
    "flow mappings 10,000 deep": Case("name: " + "{a: " * 10_000 + "1" + "}" * 10_000 + "\n",
                                      ("nested too deeply",), line=1),
    "block mappings 100 deep": Case(_nested_blocks(100), ("nested too deeply",), line=65),  # the 65th mapping
    # ---- encodings
    "UTF-16 with a byte-order mark": Case(BASE_YAML.encode("utf-16"), ("UTF-16 text", "save the file as UTF-8"), 1),
    "UTF-16 big-endian": Case(codecs.BOM_UTF16_BE + BASE_YAML.encode("utf-16-be"), ("UTF-16 text",), 1),
    "UTF-32": Case(BASE_YAML.encode("utf-32"), ("UTF-32 text",), 1),
    "UTF-16 without a byte-order mark": Case(BASE_YAML.encode("utf-16-le"), ("UTF-16 text without a byte-order",), 1),
    "Latin-1, not UTF-8": Case(BASE_YAML.replace("hidden, size", "hïdden, size").encode("latin-1"),
                               ("not UTF-8 text", "byte 0xef at column 13", "save the file as UTF-8"), line=5),
    "a NUL byte": Case(BASE_YAML.encode().replace(b"populations", b"popu\x00lations"),
                       ("NUL byte", "column 5", "binary file"), line=3),
    "a binary file": Case(bytes(range(256)) * 16, ("NUL byte", "binary file"), line=1),
    "an .npz named .yaml": Case(zip_declaring({"X_train.npy": npy_bytes(np.zeros(3))}, {}),
                                ("zip archive", ".npz"), line=1),
    "an .npy named .yaml": Case(npy_bytes(np.zeros(3)), ("NumPy .npy array",), line=1),
    # ---- sizes
    "a 2 MiB single line": Case("name: " + "x" * (2 << 20) + "\n", ("a scenario file may be at most 262,144 "
                                                                     "bytes", "networkx")),
    "a 250 KB value": Case("name: " + "x" * 250_000 + "\n" + BASE_YAML[BASE_YAML.index("task"):],
                           ("at most 64 characters", "(a string of 250,000 characters)"), line=1, field="name"),
    "a plain key of 5,000 characters": Case(BASE_YAML + "k" * 5000 + ": 1\n",
                                            ("invalid YAML", "could not find expected ':'"), line=13),
    "an explicit key of 100,000 characters": Case(BASE_YAML + "? " + "k" * 100_000 + "\n: 1\n",
                                                  ("unknown key", "(100,000 characters)", "remove it"), line=13,
                                                  field="k" * 60 + "... (100,000 characters)"),
    # ---- tags: nothing but plain values is built
    "!!python/object": Case(BASE_YAML + "x: !!python/object:os.system {}\n",
                            ("tag '!!python/object:os.system' is not allowed", "remove the tag"), line=13),
    "!!python/object/apply": Case(BASE_YAML + "x: !!python/object/apply:os.system ['echo pwned']\n",
                                  ("!!python/object/apply:os.system", "never builds Python objects"), line=13),
    "!!python/name": Case(BASE_YAML + "x: !!python/name:os.system\n", ("!!python/name:os.system",), line=13),
    "a tag of one's own": Case(BASE_YAML.replace("task: xor", "task: !mine xor"), ("tag '!mine'",), line=2),
    "!!timestamp on a word": Case(BASE_YAML + "when: !!timestamp soon\n", ("tag '!!timestamp'",), line=13),
    "!!int on a word": Case(BASE_YAML.replace("ticks: 5", "ticks: !!int five"),
                            ("'five' does not read as the tag '!!int'", "remove the tag"), line=11),
    "!!set": Case(BASE_YAML + "s: !!set {a, b}\n", ("tag '!!set'",), line=13),
    # ---- merge keys and documents
    "a merge key of a number": Case(BASE_YAML.replace("run:\n", "run:\n  <<: 5\n"),
                                    ("'<<' takes a mapping",), line=11),
    "a merge key written twice": Case(BASE_YAML.replace("name: base\n", "name: base\nseed: 0\n")
                                      .replace("run:\n", "defaults: &d {ticks: 5}\nrun:\n  <<: *d\n  <<: *d\n"),
                                      ("written twice", "<<: [*a, *b]"), line=14, field="run.<<"),
    "two documents": Case(BASE_YAML + "---\n" + BASE_YAML, ("second YAML document", "one document"), line=13),
    "an empty file": Case("", ("got an empty file", "name: ..."), line=1),
    "comments only": Case("# a scenario, some day\n", ("got an empty file",), line=1),
    # ---- not a file
    "a folder": Case(_folder, ("is a folder, not a scenario file",)),
    "a device": Case(lambda folder: Path(os.devnull), ("not a regular file",)),
}


def _npz_with(path_name: str, make: Callable[[Path], None]) -> Callable[[Path], Path]:
    """A case that writes its data file with ``make`` and a scenario whose npz task names it."""

    def build(folder: Path) -> Path:
        make(folder / path_name)
        scenario = folder / "scenario.yaml"
        scenario.write_text(textwrap.dedent(f"""\
            name: data
            task: {{kind: npz, path: {path_name}, problem: classification, loss: cross_entropy}}
            populations:
              - {{name: in, size: 2, role: input}}
              - {{name: out, size: 2, role: output, activation: identity}}
            projections:
              - {{pre: in, post: out}}
            """), encoding="utf-8")
        return scenario

    return build


def _write(data: Union[bytes, Callable[[], bytes]]) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data() if callable(data) else data)


def _savez(**overrides: Optional[np.ndarray]) -> Callable[[Path], None]:
    return lambda path: np.savez(path, **good_arrays(**overrides))


def _members(**overrides: bytes) -> Callable[[], bytes]:
    """A stored zip of the good arrays, with some members' bytes replaced."""
    return lambda: zip_declaring({f"{k}.npy": overrides.get(k, npy_bytes(v)) for k, v in good_arrays().items()}, {})


def _savez_bytes(**overrides: Optional[np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **good_arrays(**overrides))
    return buffer.getvalue()


def _npy_as_npz(path: Path) -> None:
    with path.open("wb") as handle:
        np.save(handle, np.zeros((40, 2)))


def _bad_crc(path: Path) -> None:
    raw = bytearray(_savez_bytes())
    at = raw.index(b"\x93NUMPY") + 200  # inside X_train's data (stored, not compressed)
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))


def _deflate_bomb(path: Path) -> None:
    """A real zip bomb, consistent in every declared size: 40 Mi samples of two float64 zeros
    (640 MiB) and as many int8 labels, deflated to about 3 MB (as issue 14's 585 KB file that
    took 1.39 GB). Under the workers' 2 GiB address space the bound is 1 GiB, and the arrays with
    their float64 copies need 1.6 GiB."""
    rows = 40 << 20
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, header in (("X_train", npy_header((rows, 2))), ("y_train", npy_header((rows,), "|i1"))):
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                member.write(header)
                zeros = bytes(8 << 20)
                for _ in range(rows * (16 if name == "X_train" else 1) // len(zeros)):
                    member.write(zeros)
        for name, array in good_arrays(X_train=None, y_train=None).items():
            archive.writestr(f"{name}.npy", npy_bytes(array))


def _object_array(path: Path) -> None:
    marker = path.with_name("unpickled.txt")
    Unpickled.marker = str(marker)
    array = np.empty((40, 2), dtype=object)
    array[:] = Unpickled()
    path.write_bytes(zip_declaring({"X_train.npy": npy_bytes(array),
                                    **{f"{k}.npy": npy_bytes(v) for k, v in good_arrays(X_train=None).items()}}, {}))


NPZ_CASES: dict[str, Case] = {
    "not a zip": Case(_npz_with("data.npz", _write(b"X_train,y_train\n1,0\n" * 20)),
                      ("data.npz is not a zip archive", "numpy.savez(path, X_train=")),
    "an empty file": Case(_npz_with("data.npz", _write(b"")), ("data.npz is empty",)),
    "a truncated zip": Case(_npz_with("data.npz", _write(lambda: _savez_bytes()[:700])), ("truncated",)),
    "an .npy renamed .npz": Case(_npz_with("data.npz", _npy_as_npz), ("single .npy array, not an .npz archive",)),
    "a folder named .npz": Case(_npz_with("data.npz", lambda path: path.mkdir()), ("is not a file",)),
    "complex inputs": Case(_npz_with("data.npz", _savez(X_train=np.ones((40, 2)) + 1j)),
                           ("X_train in", "complex numbers (complex128)", "x.real")),
    "object arrays": Case(_npz_with("data.npz", _object_array),
                          ("X_train in", "Python objects", "never unpickles", "numeric arrays")),
    "text inputs": Case(_npz_with("data.npz", _savez(X_test=np.array([["a", "b"]] * 10))),
                        ("X_test in", "<U1 values, not numbers")),
    "a huge declared shape": Case(_npz_with("data.npz", _write(_members(X_train=npy_header((10**8, 2)) + bytes(640)))),
                                  ("X_train in", "declares the shape (100000000, 2) of float64 (1.5 GiB)",
                                   "holds 640 bytes of data", "not written by numpy")),
    "a shape whose size overflows int64": Case(
        _npz_with("data.npz", _write(_members(X_train=npy_header((2**40, 2**40)) + bytes(64)))),
        ("X_train in", "declares the shape (1099511627776, 1099511627776)")),
    "a negative shape": Case(_npz_with("data.npz", _write(_members(y_train=npy_header((-40,), "<i8") + bytes(64)))),
                             ("y_train in", "declares the shape (-40,), which no array has")),
    "a zip bomb: a member that declares 1 TiB": Case(
        _npz_with("data.npz", _write(lambda: zip_declaring(
            {"X_train.npy": npy_header((2**36, 2)) + bytes(4096), "y_train.npy": npy_header((2**36,), "|u1"),
             **{f"{k}.npy": npy_bytes(v) for k, v in good_arrays(X_train=None, y_train=None).items()}},
            {"X_train.npy": len(npy_header((2**36, 2))) + 2**40, "y_train.npy": len(npy_header((2**36,))) + 2**36}))),
        ("would take", "TiB in memory", "half the memory available", "smaller data set")),
    "a zip bomb: 3 MB that inflate to 680 MiB": Case(_npz_with("data.npz", _deflate_bomb),
                                                     ("would take 1.6 GiB in memory", "more than the 1.0 GiB")),
    "a header of 20,000 bytes": Case(
        _npz_with("data.npz", _write(_members(X_train=b"\x93NUMPY\x02\x00" + struct.pack("<I", 20_000)
                                              + b"{" + b" " * 19_998 + b"\n"))),
        ("X_train in", "not a readable .npy array", "Header info length")),
    "a member that is not an array": Case(_npz_with("data.npz", _write(_members(y_test=b"just text\n"))),
                                          ("y_test in", "not a readable .npy array")),
    "a damaged member (bad CRC)": Case(_npz_with("data.npz", _bad_crc), ("X_train in", "Bad CRC-32")),
    "a missing array": Case(_npz_with("data.npz", _savez(y_test=None)),
                            ("lacks the array(s) y_test", "it holds: X_test, X_train, y_train")),
    "3-D inputs": Case(_npz_with("data.npz", _savez(X_train=np.zeros((40, 2, 1)))),
                       ("X_train in", "shape (40, 2, 1)", "2-D", "X.reshape(len(X), -1)")),
    "NaN inputs": Case(_npz_with("data.npz", _savez(X_test=np.full((10, 2), np.nan))),
                       ("X_test in", "infinite or NaN", "finite numbers")),
    "infinite float16 inputs": Case(_npz_with("data.npz", _savez(X_train=np.full((40, 2), np.inf, np.float16))),
                                    ("X_train in", "infinite or NaN")),
    "float labels": Case(_npz_with("data.npz", _savez(y_train=np.arange(40) / 2)),
                         ("y_train in", "integer labels", "it holds float64 values")),
    "labels beyond 2**31": Case(_npz_with("data.npz", _savez(y_test=np.full(10, 2**40))),
                                ("y_test in", "integer labels 0..C-1", "the label 1099511627776")),
    "fewer labels than samples": Case(_npz_with("data.npz", _savez(y_train=np.arange(39) % 2)),
                                      ("X_train in", "has 40 rows and y_train 39", "one target per sample")),
}


def make_cases(cases: dict[str, Case], root: Path) -> dict[str, Path]:
    """Each case's file, in a folder of its own."""
    paths = {}
    for index, (name, case) in enumerate(cases.items()):
        folder = root / f"case{index:02d}"
        folder.mkdir()
        if callable(case.content):
            paths[name] = case.content(folder)
        else:
            path = folder / "scenario.yaml"
            path.write_bytes(case.content.encode("utf-8") if isinstance(case.content, str) else case.content)
            paths[name] = path
    return paths


# --------------------------------------------------------------------------- one capped worker per table

WORKER = """
import dataclasses, json, resource, signal, sys, time, traceback
resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
import ribbed
from ribbed.environment.tasks import load_task
from ribbed.scenarios import yaml_reader

if sys.argv[1:] == ["pure"]:
    yaml_reader.LOADER = yaml_reader._PureLoader

def late(*_):
    raise TimeoutError("the case ran 30 s")

signal.signal(signal.SIGALRM, late)
load_task(ribbed.load_scenario("xor"))  # every lazy import done before the first case is measured
results = {{}}
for name, path in json.load(sys.stdin):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    signal.alarm(30)
    try:
        load_task(ribbed.load_scenario(path))
        outcome = {{"error": None}}
    except ribbed.RibbedError as exc:
        outcome = {{"error": type(exc).__name__, "text": str(exc),
                    "problems": [dataclasses.asdict(p) for p in exc.problems]}}
    except BaseException as exc:
        outcome = {{"error": "unexpected " + type(exc).__name__, "text": traceback.format_exc()[-3000:]}}
    finally:
        signal.alarm(0)
    outcome["seconds"] = time.perf_counter() - start
    outcome["growth_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    results[name] = outcome
json.dump(results, sys.stdout)
"""


def capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def ribbed_command() -> list[str]:
    script = Path(sys.executable).with_name("ribbed")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "ribbed.cli"]


def load_in_worker(paths: dict[str, Path], parser: str = "default", cap: int = MEMORY_CAP) -> dict[str, dict]:
    result = subprocess.run([sys.executable, "-c", WORKER.format(cap=cap), parser],
                            input=json.dumps([[name, str(path)] for name, path in paths.items()]),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def validate_in_script(paths: dict[str, Path]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")}
    return subprocess.run([*ribbed_command(), "validate", *map(str, paths.values())], capture_output=True,
                          text=True, timeout=600, env=env, preexec_fn=capped)


@pytest.fixture(scope="module")
def yaml_files(tmp_path_factory) -> dict[str, Path]:
    return make_cases(YAML_CASES, tmp_path_factory.mktemp("yaml"))


@pytest.fixture(scope="module")
def npz_files(tmp_path_factory) -> dict[str, Path]:
    return make_cases(NPZ_CASES, tmp_path_factory.mktemp("npz"))


@pytest.fixture(scope="module", params=["default", "pure"])
def yaml_loaded(request, yaml_files) -> dict[str, dict]:
    """Each case loaded by the default parser (libyaml's, where PyYAML has it) and by PyYAML's own."""
    return load_in_worker(yaml_files, request.param)


@pytest.fixture(params=["default", "pure"])
def parser(request, monkeypatch) -> str:
    """The bounds hold with either parser feeding the composer."""
    if request.param == "pure":
        monkeypatch.setattr(yaml_reader, "LOADER", yaml_reader._PureLoader)
    return request.param


@pytest.fixture(scope="module")
def npz_loaded(npz_files) -> dict[str, dict]:
    return load_in_worker(npz_files)


@pytest.fixture(scope="module")
def yaml_validated(yaml_files) -> subprocess.CompletedProcess:
    return validate_in_script(yaml_files)


@pytest.fixture(scope="module")
def npz_validated(npz_files) -> subprocess.CompletedProcess:
    return validate_in_script(npz_files)


def assert_refused(outcome: dict, case: Case, path: Path, field: str) -> None:
    assert outcome["error"] == "ScenarioError", outcome.get("text")
    assert len(outcome["problems"]) == 1, outcome["text"]
    problem = outcome["problems"][0]
    assert problem["source"] == str(path)
    assert problem["path"] == field
    assert problem["fix"], "every problem says how to fix it"
    for word in case.words:
        assert word in outcome["text"], f"{word!r} missing from:\n{outcome['text'][:2000]}"
    if case.line is not None:
        assert problem["line"] == case.line, outcome["text"][:2000]
    assert len(outcome["text"]) < 1200, "a message quotes at most a short part of what the file wrote"
    assert outcome["seconds"] < SECONDS, f"{outcome['seconds']:.2f} s"
    assert outcome["growth_kib"] < GROWTH_KIB, f"peak memory grew {outcome['growth_kib'] >> 10} MiB"


def blocks_of(stderr: str) -> list[str]:
    """The messages of a ``ribbed validate`` run, one per ``error:``/``warning:`` block."""
    return [block for block in re.split(r"\n(?=error: |warning: )", stderr) if block.strip()]


def assert_reported(run: subprocess.CompletedProcess, case: Case, path: Path) -> None:
    assert "Traceback" not in run.stderr + run.stdout
    mine = [b for b in blocks_of(run.stderr) if b.startswith(f"error: {path}:") or b.startswith(f"error: {path}\n")]
    assert len(mine) == 1, f"no single error for {path} in:\n{run.stderr[-3000:]}"
    for word in case.words:
        assert word in mine[0], f"{word!r} missing from:\n{mine[0][:2000]}"
    assert "\n  fix: " in mine[0]


@pytest.mark.parametrize("name", YAML_CASES)
def test_a_hostile_scenario_is_a_located_error(name: str, yaml_files, yaml_loaded) -> None:
    case = YAML_CASES[name]
    assert_refused(yaml_loaded[name], case, yaml_files[name], case.field)


@pytest.mark.parametrize("name", YAML_CASES)
def test_validate_reports_a_hostile_scenario(name: str, yaml_files, yaml_validated) -> None:
    assert yaml_validated.returncode == 2
    assert yaml_validated.stdout == "", "no file of the table is valid"
    assert_reported(yaml_validated, YAML_CASES[name], yaml_files[name])


@pytest.mark.parametrize("name", NPZ_CASES)
def test_a_hostile_data_file_is_a_located_error(name: str, npz_files, npz_loaded) -> None:
    assert_refused(npz_loaded[name], NPZ_CASES[name], npz_files[name], "task.path")


#: Cases that ``ribbed validate`` refuses earlier than the reader does: the run's size estimate
#: (scenarios/size.py) reads the arrays' declared shapes and finds the data alone too big.
REFUSED_BY_THE_ESTIMATE = {
    "a zip bomb: a member that declares 1 TiB": ("task.path: the run would need about", "TiB of memory", "--max-memory"),
}


@pytest.mark.parametrize("name", NPZ_CASES)
def test_validate_reports_a_hostile_data_file(name: str, npz_files, npz_validated) -> None:
    assert npz_validated.returncode == 2
    assert npz_validated.stdout == ""
    case = NPZ_CASES[name]
    if name in REFUSED_BY_THE_ESTIMATE:
        case = replace(case, words=REFUSED_BY_THE_ESTIMATE[name])
    assert_reported(npz_validated, case, npz_files[name])


def test_no_pickle_ran(npz_files, npz_loaded, npz_validated) -> None:
    """The object-array case's pickle would write a file next to the data if anything unpickled it."""
    folder = npz_files["object arrays"].parent
    assert (folder / "data.npz").is_file()
    assert not (folder / "unpickled.txt").exists()


# --------------------------------------------------------------------------- the bounds themselves


def aliases_adding(nodes: int) -> str:
    """A document whose aliases add exactly ``nodes`` nodes: a list of 999 scalars (1,000 nodes
    with the list itself), aliased ``nodes // 1000`` times."""
    assert nodes % 1000 == 0
    return "a: &a [" + ", ".join(["0"] * 999) + "]\nb: [" + ", ".join(["*a"] * (nodes // 1000)) + "]\n"


def test_aliases_may_add_exactly_the_bound(parser: str) -> None:
    data, _ = read_yaml(aliases_adding(MAX_ALIAS_NODES), "x.yaml")
    assert len(data["b"]) == MAX_ALIAS_NODES // 1000 and data["b"][0] is data["a"]
    with pytest.raises(ribbed.ScenarioError, match="more than 100,000 nodes") as caught:
        read_yaml(aliases_adding(MAX_ALIAS_NODES + 1000), "x.yaml")
    assert caught.value.problems[0].line == 2


def test_nesting_may_reach_exactly_the_bound(parser: str) -> None:
    inner = MAX_DEPTH - 1  # the top-level mapping is the first level
    data, _ = read_yaml("x: " + "[" * inner + "]" * inner + "\n", "x.yaml")
    depth, value = 0, data["x"]
    while isinstance(value, list):
        depth, value = depth + 1, (value[0] if value else None)
    assert depth == inner
    with pytest.raises(ribbed.ScenarioError, match="nested too deeply"):
        read_yaml("x: " + "[" * (inner + 1) + "]" * (inner + 1) + "\n", "x.yaml")


MERGED = """\
name: base
task: xor
populations:
  - &layer {name: in, size: 2, role: input}
  - {<<: *layer, name: hidden, size: 4, role: hidden}
  - {name: out, size: 2, role: output, activation: identity}
projections:
  - {pre: in, post: hidden}
  - {pre: hidden, post: out}
run: {<<: [&short {ticks: 5, eval_every: 5}, &long {ticks: 50, batch_size: 8}], batch_size: 4}
learning: {<<: &fast {lr: 0.3, optimizer: momentum}, optimizer: adam}
"""


def test_merge_keys_read_as_yaml_defines_them(tmp_path: Path, parser: str) -> None:
    """The mapping's own keys win over merged ones, and the first merged mapping over later ones."""
    path = tmp_path / "merge.yaml"
    path.write_text(MERGED, encoding="utf-8")
    scenario = ribbed.load_scenario(path)
    assert [(p.name, p.size, p.role) for p in scenario.populations] == [("in", 2, "input"), ("hidden", 4, "hidden"),
                                                                         ("out", 2, "output")]
    assert (scenario.run.ticks, scenario.run.eval_every, scenario.run.batch_size) == (5, 5, 4)
    assert (scenario.learning.lr, scenario.learning.optimizer) == (0.3, "adam")


def test_a_merged_mapping_keeps_its_own_keys(parser: str) -> None:
    """A mapping with a merge key, merged again elsewhere, reads the same everywhere (PyYAML's
    own merge rewrites the node it merges, so a later read of it saw its keys twice)."""
    data, _ = read_yaml("a: {b: {m: &m {<<: {x: 1}, x: 2, y: 3}}}\nc: {<<: *m}\nd: {<<: *m, x: 9}\n", "x.yaml")
    assert data["a"]["b"]["m"] == data["c"] == {"x": 2, "y": 3}
    assert data["d"] == {"x": 9, "y": 3}


def test_the_largest_file_read_is_read_quickly_and_its_problems_are_few(tmp_path: Path, parser: str) -> None:
    """A file just under the size bound, repeating one mistake 17,000 times: read within the time
    of a case, and reported as its first 50 problems and a count of the rest."""
    from ribbed.scenarios.source_text import MAX_SCENARIO_BYTES

    head = BASE_YAML.replace("projections:\n  - {pre: in, post: hidden}\n  - {pre: hidden, post: out}\n", "") + (
        "projections:\n  - {pre: hidden, post: out}\n  - pre: in\n    post: hidden\n    connectivity:\n"
        "      rule: edges\n      edges:\n")
    path = tmp_path / "edges.yaml"
    path.write_text(head + "      - [0, 0]\n" * ((MAX_SCENARIO_BYTES - len(head)) // 15), encoding="utf-8")
    assert MAX_SCENARIO_BYTES - 15 < path.stat().st_size <= MAX_SCENARIO_BYTES
    start = time.perf_counter()
    with pytest.raises(ribbed.ScenarioError) as caught:
        ribbed.load_scenario(path)
    assert time.perf_counter() - start < LARGEST_FILE_SECONDS
    problems = caught.value.problems
    assert len(problems) == 51 and problems[0].path == "projections[1].connectivity.edges[1]"
    assert "listed twice" in problems[0].message and problems[0].line == 18
    assert re.fullmatch(r"\.\.\. and 17,\d{3} more problems", problems[-1].message)


def test_the_default_parser_is_libyamls_where_pyyaml_has_it() -> None:
    assert (yaml_reader.LOADER.__name__ == "_FastLoader") == yaml.__with_libyaml__


def test_a_utf8_byte_order_mark_is_read(tmp_path: Path, parser: str) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(codecs.BOM_UTF8 + BASE_YAML.encode("utf-8"))
    assert ribbed.load_scenario(path) == ribbed.load_scenario(yaml.safe_load(BASE_YAML))


def test_plain_explicit_tags_are_read(tmp_path: Path, parser: str) -> None:
    path = tmp_path / "tags.yaml"
    path.write_text(BASE_YAML.replace("name: base", "name: !!str base").replace("ticks: 5", "ticks: !!int 5")
                    + "learning: !!map {lr: !!float 1}\n", encoding="utf-8")
    scenario = ribbed.load_scenario(path)
    assert (scenario.name, scenario.run.ticks, scenario.learning.lr) == ("base", 5, 1.0)


def test_a_name_the_file_system_refuses_is_a_located_error() -> None:
    with pytest.raises(ribbed.ScenarioError, match="not a usable file name") as caught:
        ribbed.load_scenario("x" * 5000 + ".yaml")
    assert len(str(caught.value)) < 400


# --------------------------------------------------------------------------- memory of data files that lie

RSS_WORKER = """
import json, resource, sys
from pathlib import Path
resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
from ribbed.environment.npz import read_npz
from ribbed.errors import ScenarioError
growth = {{}}
for path in sys.argv[1:]:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        read_npz(Path(path), ("X_train", "y_train", "X_test", "y_test"), "s.yaml")
        growth[path] = None
    except ScenarioError:
        growth[path] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
json.dump(growth, sys.stdout)
"""


def test_files_that_declare_gigabytes_are_refused_in_a_few_mib(npz_files) -> None:
    """The declared shape and zip size are checked before numpy allocates: the peak memory
    grows by a small multiple of the file's size, not by what the file declares."""
    names = ["a huge declared shape", "a shape whose size overflows int64", "a zip bomb: a member that declares 1 TiB",
             "a zip bomb: 3 MB that inflate to 680 MiB"]
    paths = [npz_files[name].with_name("data.npz") for name in names]
    result = subprocess.run([sys.executable, "-c", RSS_WORKER.format(cap=MEMORY_CAP), *map(str, paths)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    growth = json.loads(result.stdout)
    for path in paths:
        assert growth[str(path)] is not None, f"{path} was read"
        assert growth[str(path)] * 1024 < 8 * (1 << 20) + 4 * path.stat().st_size, (path, growth[str(path)])


def test_a_wrong_shape_is_refused_before_the_data_is_read(tmp_path: Path) -> None:
    """640 MiB of 1-D inputs, deflated to 3 MB and within the memory bound: refused from the
    header (inputs are 2-D) without reading them; issue 14's code read them first (+721 MiB)."""

    def flat_inputs(path: Path) -> None:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            with archive.open("X_train.npy", "w", force_zip64=True) as member:
                member.write(npy_header((80 << 20,)))
                for _ in range(80):
                    member.write(bytes(8 << 20))
            for name, array in good_arrays(X_train=None).items():
                archive.writestr(f"{name}.npy", npy_bytes(array))

    scenario = _npz_with("data.npz", flat_inputs)(tmp_path)
    outcome = load_in_worker({"flat": scenario}, cap=8 << 30)["flat"]
    assert outcome["error"] == "ScenarioError", outcome.get("text")
    assert "X_train in" in outcome["text"] and "has shape (83886080,)" in outcome["text"] and "2-D" in outcome["text"]
    assert outcome["growth_kib"] * 1024 < 8 * (1 << 20) + 4 * (tmp_path / "data.npz").stat().st_size


def test_memory_bound_follows_the_address_space_limit() -> None:
    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30)); "
            "from ribbed.environment.npz import memory_bound; print(memory_bound())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert 0 < int(result.stdout) <= (3 << 30) // 2


def test_well_formed_data_files_of_every_numeric_kind_load(tmp_path: Path) -> None:
    """Fortran order, big-endian, booleans, small integers and float16 are read as stored."""
    from ribbed.environment.npz import read_npz

    arrays = {"X_train": np.asfortranarray(np.arange(80.0).reshape(40, 2)), "y_train": np.arange(40, dtype=">i4") % 2,
              "X_test": np.arange(20, dtype=np.int8).reshape(10, 2) > 5, "y_test": np.ones(10, dtype=np.float16)}
    np.savez_compressed(tmp_path / "d.npz", **arrays)
    read = read_npz(tmp_path / "d.npz", tuple(arrays), "s.yaml")
    for name, array in arrays.items():
        assert read[name].dtype == array.dtype and np.array_equal(read[name], array)
    assert read["X_train"].flags.f_contiguous


# --------------------------------------------------------------------------- the command line's flags


def all_help(runner: CliRunner) -> dict[str, str]:
    commands = [[], ["run"], ["validate"], ["schema"], ["scenarios"], ["replay"], ["log"], ["log", "info"],
                ["log", "show"], ["log", "export"]]
    return {" ".join(c) or "ribbed": runner.invoke(app, [*c, "--help"]).stdout for c in commands}


def test_flags_read_as_flags_in_help() -> None:
    pages = all_help(CliRunner())
    for command, page in pages.items():
        assert "--help" in page, command
        assert "<bool>" not in page, f"{command} --help shows a flag as taking a value:\n{page}"
    verify = next(line for line in pages["replay"].splitlines() if line.startswith("│") and line.lstrip("│ ").startswith("--verify "))
    assert re.search(r"--verify\s{4,}Re-run the scenario", verify), verify
    assert re.search(r"--version\s{4,}Print the version", pages["ribbed"])


def test_verify_is_a_flag(tmp_path: Path) -> None:
    """``--verify`` takes no value (the norm for a flag): with one, the value is an extra
    argument and the command says so; without, the log is opened (here: a missing one)."""
    runner = CliRunner()
    missing = tmp_path / "run.log"
    result = runner.invoke(app, ["replay", str(missing), "--verify"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert str(missing) in result.stderr and "Usage" not in result.output
    result = runner.invoke(app, ["replay", str(missing), "--verify", "true"])
    assert result.exit_code == 2 and "unexpected extra argument" in result.output and "(true)" in result.output


# --------------------------------------------------------------------------- nothing learns from the targets


def hebbian_xor(**changes) -> dict:
    data = {"name": "xor-hebbian", "task": "xor", "learning": {"rule": "hebbian"},
            "populations": [{"name": "in", "size": 2, "role": "input"},
                            {"name": "hidden", "size": 8, "activation": "tanh"},
                            {"name": "out", "size": 2, "role": "output", "activation": "identity"}],
            "projections": [{"pre": "in", "post": "hidden"}, {"pre": "hidden", "post": "out"}],
            "run": {"ticks": 20, "eval_every": 10}}
    for key, value in changes.items():
        data[key] = value
    return data


@pytest.mark.parametrize("data, field, fix", [
    (hebbian_xor(), "learning.rule", "set 'rule: backprop'"),
    (hebbian_xor(learning={"rule": "backprop"},
                 projections=[{"pre": "in", "post": "hidden"},
                              {"pre": "hidden", "post": "out", "learning": {"rule": "hebbian"}}]),
     "projections[1].learning.rule", "set 'rule: backprop'"),
    (hebbian_xor(learning={"rule": "backprop"},
                 populations=[{"name": "in", "size": 2, "role": "input"},
                              {"name": "hidden", "size": 8, "activation": "tanh"},
                              {"name": "out", "size": 2, "role": "output", "bias": False,
                               "learning": {"rule": "hebbian"}}]),
     "populations[2].learning.rule", "set 'rule: backprop'"),
    (hebbian_xor(learning={"rule": "backprop"},
                 populations=[{"name": "in", "size": 2, "role": "input"},
                              {"name": "hidden", "size": 8, "activation": "tanh", "bias": False},
                              {"name": "out", "size": 2, "role": "output", "bias": False}],
                 projections=[{"pre": "in", "post": "hidden", "frozen": True},
                              {"pre": "hidden", "post": "out", "frozen": True}]),
     "projections[1].frozen", "remove 'frozen: true'"),
], ids=["all hebbian", "hebbian readout projection", "hebbian output population", "frozen readout"])
def test_a_network_that_never_sees_the_targets_is_warned_about(data: dict, field: str, fix: str,
                                                               tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    runner = CliRunner()
    for args in (["validate", str(path)], ["run", str(path), "--out", str(tmp_path / "run")]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        warning = [b for b in blocks_of(result.stderr) if "learns from the task's targets" in b]
        assert len(warning) == 1, result.stderr
        assert f"{path}: no synapse in this network learns from the task's targets" in warning[0]
        assert "population 'out'" in warning[0] and f"set at {field}" in warning[0] and fix in warning[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ribbed.RibbedWarning)
        ribbed.NetworkModel(ribbed.load_scenario(path))
    targets = [w for w in caught if "learns from the task's targets" in str(w.message)]
    assert len(targets) == 1 and targets[0].category is ribbed.RibbedWarning
    assert f"set at {field}" in str(targets[0].message)


def test_an_unsupervised_hidden_layer_under_a_supervised_readout_is_not_warned_about(recwarn) -> None:
    data = hebbian_xor(projections=[{"pre": "in", "post": "hidden"},
                                    {"pre": "hidden", "post": "out", "learning": {"rule": "backprop"}}])
    ribbed.NetworkModel(ribbed.load_scenario(data))
    assert not [w for w in recwarn if "targets" in str(w.message)]
    ribbed.NetworkModel(ribbed.load_scenario("digits-hebbian"))
    assert not [w for w in recwarn if "targets" in str(w.message)]
