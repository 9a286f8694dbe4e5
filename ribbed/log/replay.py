"""Replaying a logged run: verify it bit for bit, or rebuild its state at any tick.

A replay rebuilds the model from the log's header (the resolved scenario, with the torch
thread count the run used), checks the header's layout (populations, projections, sizes) and
the topology record against the rebuilt network (the body that the log's format version wrote:
a version-1 topology has no D matrices), and re-runs it with a recorder that compares each
tick and snapshot record it computes with the logged one.  Verification is exact on the
executor, device and dtype the run used (a snapshot's metrics, an analysis of its state, within
:data:`METRIC_TOLERANCE` on the names the log recorded: see :func:`metric_difference`); elsewhere
the first difference is reported like any other.  A keyed log is verified only with its key (``key_file``), which authenticates every
record before anything is re-run.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ribbed.errors import (
    LogError, LogFormatError, LogIntegrityError, LogTruncatedWarning, LogUnauthenticatedWarning, Problem, RibbedError,
)
from ribbed.log.format import pack_body, record_body, unpack_body
from ribbed.log.header_scenario import scenario_of
from ribbed.log.keys import LogKey, read_key_file, scenario_key
from ribbed.log.reader import LogReader, Record

if TYPE_CHECKING:
    from ribbed.resources import MemoryLimit

__all__ = ["Difference", "VerifyReport", "keyed_reader", "model_at", "scenario_of", "verify", "write_state"]

#: The header fields a replay checks against the network its scenario builds: what a reader
#: names agents and sizes arrays by.
HEADER_LAYOUT = ("seed", "seed_entropy", "executor", "dtype", "batch_size", "ticks", "kinds", "stages", "n_neurons",
                 "populations", "projections", "broadcast")


def _model(log: LogReader, guides: dict | None, max_memory: int | str | MemoryLimit | None = None):
    """The model of the header's scenario, rebuilt; refused, like a run, when its estimated size
    does not fit in ``max_memory`` (default: the memory available), before anything is built
    (a header can claim any size)."""
    from ribbed.determinism import configure_torch
    from ribbed.model import NetworkModel

    threads = log.header.get("threads", {})
    configure_torch(threads.get("torch_threads"), threads.get("torch_interop_threads"))
    return NetworkModel(scenario_of(log), guides=guides, max_memory=max_memory)


@dataclass
class Difference:
    """Where a replay first departs from its log."""

    tick: int
    record: str  # tick or snapshot
    field: str
    agent: int | None
    detail: str

    def __str__(self) -> str:
        who = f", agent {self.agent}" if self.agent is not None else ""
        return f"tick {self.tick} ({self.record} record, field '{self.field}'{who}): {self.detail}"


@dataclass
class VerifyReport:
    """The result of :func:`verify`: ``ok``, how far it checked, and the first difference."""

    ok: bool
    ticks_checked: int
    snapshots_checked: int
    difference: Difference | None = None


class _LogEnds(Exception):
    """The log stops here (a run that was stopped): there is nothing left to compare."""


class _Mismatch(Exception):
    def __init__(self, difference: Difference):
        self.difference = difference


def _verifying_recorder(model, log: LogReader, level: str, snapshot_every: int):
    """A recorder that computes each record as the run did, and compares it with the logged one.
    (Defined when a replay runs: the recorder imports torch, which a log that fails its checks
    is reported without.)"""
    from ribbed.log.recorder import Recorder

    class VerifyingRecorder(Recorder):
        def __init__(self):
            super().__init__(model, level, snapshot_every)
            self.log = log
            self.expected = iter([ref for ref in log.refs if ref.type in ("tick", "snapshot")])
            self.ticks = self.snapshots = 0

        def emit(self, kind: str, tick: int, body: Callable[[], dict], size: int = 0) -> None:
            ref = next(self.expected, None)
            if ref is None:
                raise _LogEnds
            if (ref.type, ref.tick) != (kind, tick):
                raise _Mismatch(Difference(tick, kind, "record", None, f"the log has a {ref.type} record for tick "
                                           f"{ref.tick} here, the replay a {kind} record for tick {tick}"))
            try:
                logged = self.log.read(ref)
            except LogError as exc:
                raise _Mismatch(Difference(ref.tick, ref.type, "bytes", None, str(exc.problems[0].message))) from None
            data = pack_body(record_body(kind, tick, body()))
            if data != logged.data:
                difference = _first_difference(self.model, logged, unpack_body(data))
                if difference is not None:
                    raise _Mismatch(difference)
            if kind == "tick":
                self.ticks += 1
            else:
                self.snapshots += 1

    return VerifyingRecorder()


def verify(path: str | Path, *, guides: dict | None = None, on_tick: Callable | None = None,
           key: LogKey | None = None, key_file: str | Path | None = None,
           max_memory: int | str | MemoryLimit | None = None) -> VerifyReport:
    """Re-run a logged run from its header and compare every tick and snapshot record with the
    log, bit for bit; the report names the first tick, field and agent that differ.  A damaged
    or malformed record fails the report at its tick; a keyed log needs its ``key`` (or
    ``key_file``): without it, a LogError (nothing could be authenticated), and a key given for
    a log that is not keyed, or that does not authenticate it, fails the report at the header
    or at the first record re-chained without it.  A header scenario that does not fit in
    ``max_memory`` (default: the memory available) is refused with a
    :class:`~ribbed.errors.ScenarioError` before it is rebuilt."""
    if key_file is not None:
        key = read_key_file(key_file, source="ribbed replay", field="--key-file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LogUnauthenticatedWarning)  # (an error below)
            log = LogReader(path, key=key)
        if log.keyed and key is None:
            log.close()
            raise LogError(Problem(str(path), "", "the log's digest chain is keyed (HMAC-SHA256, key id "
                                   f"{log.key_id}): verifying it needs its key", "give the run's key file: ribbed replay RUN.log "
                                   "--verify --key-file PATH (the scenario's log.key_file)"))
        log.check()
    except LogError as exc:
        if exc.tick is None and exc.offset is None:
            raise  # not a readable log at all (a missing file, another format), or a keyed log without its key
        field = "format" if isinstance(exc, LogFormatError) else "integrity"
        return VerifyReport(False, 0, 0, Difference(exc.tick if exc.tick is not None else -1, "log",
                                                    field, None, exc.problems[0].message))
    with log:
        model = _model(log, guides, max_memory)
        difference = _header_difference(model, log.header)
        if difference is not None:
            model.executor.close()
            return VerifyReport(False, 0, 0, difference)
        topology = log.topology()
        if topology is not None:
            difference = _topology_difference(model, topology, log.version)
            if difference is not None:
                model.executor.close()
                return VerifyReport(False, 0, 0, difference)
        scenario = model.scenario
        recorder = _verifying_recorder(model, log, log.header["level"],
                                      scenario.log.snapshot_every or scenario.run.eval_every)
        model.recorder = recorder
        last = int(log.ticks[-1]) + 1 if len(log.ticks) else 0
        try:
            model.run(last, on_tick=on_tick)
        except _Mismatch as mismatch:
            return VerifyReport(False, recorder.ticks, recorder.snapshots, mismatch.difference)
        except _LogEnds:
            pass
        finally:
            model.executor.close()  # the Ray executor's shards go now, not when collected
    return VerifyReport(True, recorder.ticks, recorder.snapshots)


def keyed_reader(path: str | Path, source: str | None = None) -> tuple[LogKey | None, LogReader]:
    """A run's log opened with the key its scenario names (``log.key_file``, from the header),
    and that key: a keyed log is authenticated whole (every record read), so that a resumed run
    goes on from a chain that is all the key holder's.  A keyed log whose scenario names no key
    file, or a log that is not keyed whose scenario names one, is a LogIntegrityError."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LogUnauthenticatedWarning)
        log = LogReader(path)
    try:
        key = scenario_key(scenario_of(log, source))
    except BaseException:
        log.close()
        raise
    if key is None:
        if log.keyed:
            log.close()
            raise LogIntegrityError(Problem(str(path), "tick -1", f"the log's chain is keyed (key id {log.key_id}) but "
                                            "its scenario names no log.key_file", "use the original log: its "
                                            "scenario names the key file it was written with"), -1, 0)
        return None, log
    log.close()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LogTruncatedWarning)  # (given when it was opened above)
        log = LogReader(path, key=key)
    try:
        log.check()
    except BaseException:
        log.close()
        raise
    return key, log


def _header_difference(model, header: dict) -> Difference | None:
    """None when the header's layout (:data:`HEADER_LAYOUT`) is the one the rebuilt network
    has, else the first field that differs: a header edited apart from its scenario."""
    from ribbed.log.records import header_body

    rebuilt = header_body(model, header["level"], header["threads"])
    for field in HEADER_LAYOUT:
        if header[field] != rebuilt[field]:
            return Difference(-1, "header", field, None, f"the header says {_brief(header[field])}, its scenario "
                              f"builds {_brief(rebuilt[field])}")
    return None


def _brief(value) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _topology_difference(model, logged: Record, version: int) -> Difference | None:
    """None when the rebuilt network's topology body (as format ``version`` wrote it) is the
    logged one byte for byte, else where they first differ: a projection's synapses or feedback
    weights, or a population's D matrix (the agent: the neuron of the synapse or row)."""
    from ribbed.log.records import topology_body

    data = pack_body(record_body("topology", -1, topology_body(model, version)))
    if data == logged.data:
        return None
    replayed, network = unpack_body(data), model.network
    mine, theirs = logged.body.get("projections"), replayed["projections"]
    if not isinstance(mine, list) or len(mine) != len(theirs):
        return Difference(-1, "topology", "projections", None, "the log lists other projections")
    for projection, logged_item, replayed_item in zip(network.projections, mine, theirs):
        for key in ("pre", "post", "feedback"):
            found = _compare(logged, (logged_item or {}).get(key), replayed_item[key])
            if found is not None:
                agent = projection.post.start + int(projection.post_idx[found[0]]) if len(found) == 1 else None
                return Difference(-1, "topology", f"projections/{projection.name}/{key}", agent,
                                  f"differs at position {found}" if found else "differs")
    logged_dfa, replayed_dfa = logged.body.get("dfa") or {}, replayed.get("dfa") or {}
    for name in list(replayed_dfa) + [name for name in logged_dfa if name not in replayed_dfa]:
        found = _compare(logged, logged_dfa.get(name), replayed_dfa.get(name))
        if found is not None:
            population = network.populations.get(name)
            agent = population.start + found[0] if found and population is not None else None
            return Difference(-1, "topology", f"dfa/{name}", agent,
                              f"differs at position {found}" if found else "differs")
    return Difference(-1, "topology", "bytes", None, "the record's bytes differ")


def _first_difference(model, logged: Record, replayed: dict) -> Difference | None:
    """The first field (in the record's order) whose values differ, and the agent it belongs to;
    None when the records differ only in what a snapshot's metrics may (:func:`metric_difference`)."""
    network = model.network
    for field, value in logged.body.items():
        other = replayed.get(field)
        if field == "metrics" and logged.type == "snapshot" and isinstance(value, dict):
            name = metric_difference(value, other if isinstance(other, dict) else {})
            if name is not None:
                return Difference(logged.tick, logged.type, f"metrics/{name}", None,
                                  f"logged {value[name]!r}, replayed {(other or {}).get(name)!r}")
            continue
        if isinstance(value, dict) and "dtype" not in value:  # a map of arrays (weights, biases, state)
            for name, item in value.items():
                theirs = (other or {}).get(name) if isinstance(other, dict) else None
                if isinstance(item, dict) and "dtype" not in item:  # a map of maps (generations)
                    for key, part in item.items():
                        found = _compare(logged, part, (theirs or {}).get(key) if isinstance(theirs, dict) else None)
                        if found is not None:
                            return Difference(logged.tick, logged.type, f"{field}/{name}/{key}", None,
                                              f"logged {_show(logged, part, found)}, replayed "
                                              f"{_show(logged, (theirs or {}).get(key), found)}")
                    continue
                found = _compare(logged, item, theirs)
                if found is not None:
                    return Difference(logged.tick, logged.type, f"{field}/{name}",
                                      _agent_of(network, field, name, found), f"differs at position {found}")
            continue
        found = _compare(logged, value, other)
        if found is not None:
            return Difference(logged.tick, logged.type, field, _agent_of(network, field, None, found),
                              f"logged {_show(logged, value, found)}, replayed {_show(logged, other, found)}")
    extra = [field for field in replayed if field not in logged.body]
    if extra:
        return Difference(logged.tick, logged.type, extra[0], None, "the replay's record has a field the log's has not")
    if logged.type == "snapshot":
        return None  # only the metrics differ, within what metric_difference allows
    return Difference(logged.tick, logged.type, "bytes", None, "the record's bytes differ")


#: How closely a replayed snapshot's metrics must match the logged ones (relative, absolute).
METRIC_TOLERANCE = (1e-9, 1e-12)


def metric_difference(logged: dict, replayed: dict) -> str | None:
    """The first metric the log recorded that the replay computes otherwise, or None.

    A snapshot's metrics are analyses of the state it holds (which is compared bit for bit), and a
    later version of ribbed may add metrics or sum the same ones in another order: the metrics
    are compared on the names the log recorded, within :data:`METRIC_TOLERANCE`; new names are
    not in an older log.  Within one version the replay computes them exactly as the run did."""
    rtol, atol = METRIC_TOLERANCE
    for name, value in logged.items():
        if name not in replayed:
            return name
        other = replayed[name]
        if isinstance(value, (int, float)) and isinstance(other, (int, float)) and not isinstance(value, bool):
            a, b = float(value), float(other)
            if (np.isnan(a) and np.isnan(b)) or abs(a - b) <= atol + rtol * abs(a):
                continue
            return name
        if value != other:
            return name
    return None


def _compare(record: Record, a, b) -> tuple | None:
    """None when equal, else the position of the first difference (() for scalars)."""
    if isinstance(a, dict) and "dtype" in a:
        if not (isinstance(b, dict) and "dtype" in b):
            return ()
        x, y = record.decode(a), record.decode(b)
        if x.shape != y.shape or x.dtype != y.dtype:
            return ()
        diff = ~((x == y) | (np.isnan(x) & np.isnan(y))) if x.dtype.kind == "f" else x != y
        where = np.argwhere(diff)
        return tuple(int(i) for i in where[0]) if len(where) else None
    return None if a == b else ()


def _show(record: Record, value, position: tuple) -> str:
    if isinstance(value, dict) and "dtype" in value:
        array = record.decode(value)
        return repr(array[position].item()) if position and array.ndim == len(position) else f"array {array.shape}"
    return repr(value)


def _agent_of(network, field: str, name: str | None, position: tuple) -> int | None:
    """The agent a differing value belongs to: the column of an (batch, neurons) array, the output
    neuron of an output column, the postsynaptic neuron of a synapse."""
    if not position:
        return None
    if field in ("activation", "delta", "step_delta"):
        return position[-1]
    if field in ("outputs", "answer"):
        return network.output.start + position[-1]
    if field == "weights" and name is not None:
        projection = next((p for p in network.projections if p.name == name), None)
        if projection is not None and len(position) == 1:
            return projection.post.start + int(projection.post_idx[position[0]])
    if field == "biases" and name in network.populations:
        return network.populations[name].start + position[0]
    return None


def model_at(path: str | Path, tick: int, *, guides: dict | None = None, key: LogKey | None = None,
             key_file: str | Path | None = None, max_memory: int | str | MemoryLimit | None = None):
    """The model of a logged run at ``tick``: restored from the last snapshot at or before it,
    then run (without logging or evaluating) up to it.  Its state can be read, and no more ticks
    run (its executor is closed).  ``key``/``key_file``: a keyed log's key (without it, the log
    is read with a LogUnauthenticatedWarning).  Its size is checked against ``max_memory`` as
    :func:`verify` checks it."""
    from ribbed.log.run_log import restore_from

    if key_file is not None:
        key = read_key_file(key_file, source="ribbed replay", field="--key-file")
    with LogReader(path, key=key) as log:
        last = int(log.ticks[-1]) + 1 if len(log.ticks) else 0
        if not 0 <= tick <= last:
            raise RibbedError(Problem(str(log.path), "", f"tick {tick} is not in this run (it has ticks 0..{last})",
                                      f"ask for a tick from 0 to {last}"))
        model = _model(log, guides, max_memory)
        snapshot = log.snapshot(tick)
        if snapshot is not None:
            restore_from(model, snapshot, log)
    try:
        while model.tick < tick:
            model.advance()
    finally:
        model.executor.close()  # its state stays readable; the Ray executor's shards go now
    return model


def write_state(model, out: str | Path) -> Path:
    """Write a model's full state to a folder: ``state.npz`` (canonical weights and biases, and
    every optimizer, guide and meta array by name), ``scenario.yaml`` and ``state.json``."""
    import json

    from ribbed.log.records import snapshot_body
    from ribbed.scenarios.loader import scenario_to_yaml

    folder = Path(out)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise RibbedError(Problem(str(folder), "", "already exists and is not an empty folder",
                                  "choose a new folder for --out"))
    folder.mkdir(parents=True, exist_ok=True)
    body = snapshot_body(model)
    arrays = {f"weights/{name}": values for name, values in body["weights"].items()}
    arrays.update({f"biases/{name}": values for name, values in body["biases"].items()})
    arrays.update({f"state{key}": np.asarray(value) for key, value in body["state"].items() if value is not None})
    np.savez(folder / "state.npz", **arrays)
    (folder / "scenario.yaml").write_text(scenario_to_yaml(model.scenario), encoding="utf-8")
    (folder / "state.json").write_text(json.dumps({"tick": model.tick, "scenario": model.scenario.name,
                                                   "executor": model.executor.name, "arrays": sorted(arrays)},
                                                  indent=2) + "\n", encoding="utf-8")
    return folder
