"""The key of a keyed log: read from a key file, named by a key id, never written anywhere.

A key file's bytes, exactly as they are (a trailing newline included), are the HMAC key of the
log's digest chain (:mod:`ribbed.log.chain`).  The log's header records only the key's id, a
short hash that tells which key a log needs without revealing it; the key itself is held in
memory by a :class:`LogKey`, whose ``repr`` does not show it, and is handed to a writer
process through a pipe, never on a command line or in the environment.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from ribbed.errors import Problem, RibbedError, ScenarioError

if TYPE_CHECKING:
    from ribbed.scenarios.schema import Scenario

__all__ = ["MAX_KEY_BYTES", "MIN_KEY_BYTES", "LogKey", "key_id", "read_key_file", "scenario_key"]

#: A key shorter than this is refused: a keyed chain is only as strong as its key is hard to guess.
MIN_KEY_BYTES = 16
#: A key file larger than this is not a key file (and is not read whole).
MAX_KEY_BYTES = 4096
#: What the key id hashes before the key (so that the id is not the plain SHA-256 of the key).
_ID_PREFIX = b"ribbed-log key id\x00"
_MAKE_ONE = "make one with: head -c 32 /dev/urandom > {path} (and keep it where only you can read it)"


def key_id(secret: bytes) -> str:
    """The id a log's header records for its key: the first 16 hex digits of
    SHA-256(``b"ribbed-log key id\\x00"`` ‖ key)."""
    return hashlib.sha256(_ID_PREFIX + secret).hexdigest()[:16]


class LogKey:
    """A log's key (``secret``), its id, and where it came from (for messages)."""

    __slots__ = ("secret", "key_id", "source")

    def __init__(self, secret: bytes, source: str = "a key given in Python"):
        if not isinstance(secret, (bytes, bytearray)) or not MIN_KEY_BYTES <= len(secret) <= MAX_KEY_BYTES:
            size = len(secret) if isinstance(secret, (bytes, bytearray)) else type(secret).__name__
            raise RibbedError(Problem(source, "", f"a log key must be {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes, "
                                      f"got {size}", _MAKE_ONE.format(path="run.key")))
        self.secret = bytes(secret)
        self.key_id = key_id(self.secret)
        self.source = source

    def __repr__(self) -> str:
        return f"LogKey(key_id={self.key_id!r}, source={self.source!r})"


def read_key_file(path: str | Path, *, source: str, field: str) -> LogKey:
    """The key in the file at ``path``; an error naming ``source`` (the scenario file, or the
    command), ``field`` (``log.key_file``, ``--key-file``), the file and the fix when it is
    missing, unreadable, empty, too short or too large."""
    path = Path(path)

    def problem(message: str, fix: str) -> RibbedError:
        return RibbedError(Problem(source, field, f"the key file {path} {message}", fix))

    try:
        with open(path, "rb") as stream:
            secret = stream.read(MAX_KEY_BYTES + 1)
    except FileNotFoundError:
        raise problem("does not exist", "give the path of the run's key file (a relative log.key_file resolves "
                      "from the scenario's folder), or " + _MAKE_ONE.format(path=path)) from None
    except IsADirectoryError:
        raise problem("is a folder", "give the path of a key file, not of a folder") from None
    except OSError as exc:
        raise problem(f"cannot be read: {exc.strerror or exc}",
                      "make it readable by this user (chmod u+r), or give another key file") from None
    if not secret:
        raise problem("is empty", _MAKE_ONE.format(path=path))
    if len(secret) < MIN_KEY_BYTES:
        raise problem(f"holds {len(secret)} bytes; a key is at least {MIN_KEY_BYTES}", _MAKE_ONE.format(path=path))
    if len(secret) > MAX_KEY_BYTES:
        raise problem(f"holds more than {MAX_KEY_BYTES} bytes: it is not a key file",
                      "give the path of the key file itself; " + _MAKE_ONE.format(path=path))
    return LogKey(secret, str(path))


def scenario_key(scenario: Scenario) -> LogKey | None:
    """The key a scenario's ``log.key_file`` names (relative to the scenario's folder), or None
    when it names none; a :class:`~ribbed.errors.ScenarioError` when the file cannot be used."""
    name = scenario.log.key_file
    if name is None:
        return None
    path = Path(name).expanduser()
    if not path.is_absolute() and scenario.folder is not None:
        path = scenario.folder / path
    try:
        return read_key_file(path, source=scenario.source, field="log.key_file")
    except RibbedError as exc:
        raise ScenarioError(exc.problems) from None
