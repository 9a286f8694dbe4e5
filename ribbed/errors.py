"""The errors ribbed raises for bad input, each naming the file, the field and the fix."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LogCorruptError", "LogError", "LogFormatError", "LogIntegrityError", "LogTruncatedWarning",
           "LogUnauthenticatedWarning", "Problem", "RibbedError", "RibbedWarning", "ScenarioError"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: where (file, line, field path), what, and how to fix it."""

    source: str
    path: str
    message: str
    fix: str = ""
    line: int | None = None

    def __str__(self) -> str:
        where = self.source + (f":{self.line}" if self.line else "")
        text = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        return text + (f"\n  fix: {self.fix}" if self.fix else "")


class RibbedError(Exception):
    """Base of ribbed's errors about its input: each carries the problems it found, and the
    CLI prints them without a traceback, with exit code 2."""

    def __init__(self, problems: list[Problem] | Problem):
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


class ScenarioError(RibbedError, ValueError):
    """A scenario that cannot be loaded or run as written."""


class RibbedWarning(UserWarning):
    """Something valid that is probably not what was meant (a layer no credit can reach...)."""


class LogError(RibbedError):
    """A message log that cannot be read as the format describes (docs/log-format.md).

    ``tick`` and ``offset`` say where (the record's tick, and its byte offset in the file), when
    the problem is in one record."""

    def __init__(self, problems: list[Problem] | Problem, tick: int | None = None, offset: int | None = None):
        self.tick, self.offset = tick, offset
        super().__init__(problems)


class LogFormatError(LogError):
    """Bytes that are not a ribbed log of a version this reader knows, or a record that breaks
    the format's rules."""


class LogCorruptError(LogError):
    """A record whose body does not match its CRC (the bytes changed after they were written)."""


class LogIntegrityError(LogError):
    """A record whose digest does not follow from its predecessor's and its body (an edited
    record, or a record moved from another log)."""


class LogTruncatedWarning(RibbedWarning):
    """A log that ends inside a record (a crashed run), or with bytes after its last record that
    are not a record (appended garbage): it is read up to its last whole record."""


class LogUnauthenticatedWarning(RibbedWarning):
    """A keyed log read without its key: its CRCs and records were checked, but not its digest
    chain, so nothing says who wrote it (docs/log-format.md, "Keyed chain")."""
