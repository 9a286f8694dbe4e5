"""Opening a run's log for writing: which writer writes it, its first records, and where a
resumed run cuts it and goes on.

The runner asks for a log and gets a writer; what the writer is, is decided here.  On the CPU
of a POSIX system with a core to spare, a writer process fed through shared memory
(:mod:`ribbed.log.shared_writer`) frees the run's thread of encoding and hashing; with a single
core that process would only take turns with the run, and on a GPU copying a tick's values off
the device is better waited for off the run's thread: a writer thread then
(:mod:`ribbed.log.writer`).  Both write the same bytes; ``RIBBED_LOG_WRITER=process`` or
``thread`` chooses by hand.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

from ribbed.errors import LogFormatError, Problem, RibbedError
from ribbed.log.chain import DigestChain
from ribbed.log.format import RECORD_TYPES
from ribbed.log.records import header_body, restore_snapshot, topology_body
from ribbed.resources import plan_cores

if TYPE_CHECKING:
    from ribbed.log.keys import LogKey
    from ribbed.log.reader import LogReader, Record
    from ribbed.log.shared_writer import SharedLogWriter
    from ribbed.log.writer import LogWriter
    from ribbed.model import NetworkModel

    RunLogWriter = Union[LogWriter, SharedLogWriter]

__all__ = ["WRITER_VARIABLE", "WRITERS", "ResumePoint", "choose_writer", "open_run_log", "open_writer",
           "restore_from", "restore_last_snapshot"]

#: The environment variable that chooses the writer by hand.
WRITER_VARIABLE = "RIBBED_LOG_WRITER"
WRITERS = ("process", "thread")
#: The levels whose logs hold a topology record (the synapses their messages are expanded over).
_TOPOLOGY_LEVELS = ("activity", "messages")


@dataclass(frozen=True)
class ResumePoint:
    """Where a resumed run goes on with its log: the byte offset after the last record kept, that
    record's digest (the chain continues from it), the index entries ``(type code, tick, offset,
    digest)`` of the records kept, and the tick of the snapshot restored (None when the log has
    none: the run starts again from tick 0, after the header and topology)."""

    offset: int
    digest: bytes
    entries: list
    snapshot_tick: int | None


def choose_writer(device: str, cores: int | None = None) -> str:
    """``process`` or ``thread``: the writer a run on ``device`` gets, given the cores it can use
    (default: :func:`ribbed.resources.available_cores`); ``RIBBED_LOG_WRITER`` overrides."""
    chosen = os.environ.get(WRITER_VARIABLE)
    if chosen:
        if chosen not in WRITERS:
            raise RibbedError(Problem(f"environment variable {WRITER_VARIABLE}", "", f"{chosen!r} is not a log "
                                      f"writer", f"set it to one of {', '.join(WRITERS)}, or unset it"))
        return chosen
    if os.name != "posix" or device != "cpu":
        return "thread"
    return "process" if plan_cores(cores).writer_process else "thread"


def open_writer(path: str | Path, model: NetworkModel, level: str, header: dict | None, *,
                resume: ResumePoint | None = None, cores: int | None = None, key: LogKey | None = None) -> RunLogWriter:
    """The writer of the log at ``path`` (see the module docstring), with ``header`` written
    first (its ``resources`` say which writer wrote it), or continuing the log at ``resume``;
    with ``key``, the digest chain is keyed.  A writer process that cannot be started (no
    process or shared memory to be had) is replaced by a writer thread, which does the same work."""
    from ribbed.log.writer import LogWriter, write_index

    path = Path(path)
    if choose_writer(model.executor.device_name, cores) == "process":
        from ribbed.log.shared_writer import SharedLogWriter, tick_layout

        if resume is not None:  # cut the log after the record to keep, then let the process append
            os.truncate(path, resume.offset)
            write_index(path, resume.entries, resume.offset)
        try:
            return SharedLogWriter(path, _written_by(header, "process"), tick_layout(model, level),
                                   resume=resume is not None, key=key)
        except OSError:
            pass
    return LogWriter(path, _written_by(header, "thread"),
                     resume=None if resume is None else (resume.offset, resume.digest, resume.entries),
                     chain=DigestChain(key))


def _written_by(header: dict | None, writer: str) -> dict | None:
    """The header with its ``resources`` naming the writer (a header without them as it is)."""
    if header is None or not isinstance(header.get("resources"), dict):
        return header
    return {**header, "resources": {**header["resources"], "writer": writer}}


def open_run_log(path: str | Path, model: NetworkModel, level: str, threads: dict, *, resume: ResumePoint | None = None,
                 cores: int | None = None, key: LogKey | None = None) -> RunLogWriter:
    """Start the log of a run: its writer, the header and (at levels that expand messages) the
    topology; or, with ``resume``, continue a log after the point :func:`restore_last_snapshot`
    found.  ``threads``: torch's settings in force, ``cores``: the cores the run can use
    (default: :func:`ribbed.resources.available_cores`), both recorded in the header; ``key``:
    the key of a keyed chain (the header records its id; a resumed log goes on with the same key)."""
    if resume is not None:
        return open_writer(path, model, level, None, resume=resume, cores=cores, key=key)
    cores = plan_cores(cores).cores
    header = header_body(model, level, threads, cores, chain=DigestChain(key).header_field())
    writer = open_writer(path, model, level, header, cores=cores, key=key)
    if level in _TOPOLOGY_LEVELS:
        topology = topology_body(model)
        writer.write("topology", -1, lambda: topology)
    return writer


def restore_last_snapshot(log: LogReader, model: NetworkModel) -> ResumePoint:
    """Put the log's last snapshot (at or before the run's last tick) into ``model``, freshly
    built from the log's scenario, and say where its log is cut: after that snapshot, or after
    the header and topology when there is none."""
    snapshot = log.snapshot(model.scenario.run.ticks)
    keep = [ref for ref in log.refs if ref.type in ("header", "topology")]
    if snapshot is not None:
        restore_from(model, snapshot, log)
        keep = log.refs[:next(i for i, ref in enumerate(log.refs) if ref.offset == snapshot.offset) + 1]
    last = keep[-1]
    return ResumePoint(offset=last.offset + last.size, digest=last.digest,
                       entries=[(RECORD_TYPES.index(ref.type), ref.tick, ref.offset, ref.digest) for ref in keep],
                       snapshot_tick=None if snapshot is None else snapshot.tick)


def restore_from(model: NetworkModel, snapshot: Record, log: LogReader) -> None:
    """Put a snapshot record's state into ``model``; a snapshot whose state does not fit the
    network the header's scenario builds (a log edited, or written by another version of an
    executor) is a LogFormatError naming its tick and offset, not the executor's own error."""
    try:
        restore_snapshot(model, snapshot.body, snapshot.decode)
    except RibbedError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, RuntimeError) as exc:
        raise LogFormatError(Problem(str(log.path), f"tick {snapshot.tick}", f"the snapshot at byte {snapshot.offset} "
                                     f"does not fit the network of the log's scenario ({type(exc).__name__}: "
                                     f"{str(exc)[:200]})", "use a copy of the original log, or re-run the scenario"),
                             snapshot.tick, snapshot.offset) from None
