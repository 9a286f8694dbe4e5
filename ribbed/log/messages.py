"""Messages out of a log's columnar records, filtered by tick, agent, kind and stage.

A tick record stores per-neuron values, not one entry per message: the activation messages
of a tick follow from every neuron's activation and the topology, the error messages from
every neuron's credit, the task's answers and the weights they were sent with
(docs/log-format.md, "Messages"); a timed tick's forward messages follow, step by step, from
what each neuron emitted at every step (a spike message per synapse and actual spike, a batch row
at a time).  This module expands them, in the canonical order, reading
only the records of the ticks asked for; with an agent filter it gathers only the synapses
that touch the agent.

Nothing is allocated from a size the header declares: agent ids are made from the arrays of the
records read (which the reader checked against the header), and the messages of a tick (batch
size x synapses payload values, far more than the record's bytes for a large network) are
made in blocks of at most :data:`BLOCK_BYTES`, so that listing or exporting them holds one block
at a time.  A filter that asks for messages the log's level does not hold is an error, not an
empty answer.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterator

import numpy as np
import pandas as pd

from ribbed.errors import LogError, Problem
from ribbed.log.format import unpack_spikes
from ribbed.scheduler.messages import TASK, Kind, Stage

__all__ = ["BLOCK_BYTES", "MessageColumns", "expand", "expandable", "iter_messages", "messages"]

COLUMNS = ("tick", "step", "stage", "kind", "src", "dst")
#: About the most bytes one block of messages holds (its columns and payloads).
BLOCK_BYTES = 16 << 20
#: The bytes of one message's columns besides its payload (tick, step, stage, kind, src, dst).
_COLUMN_BYTES = 8 + 8 + 1 + 1 + 8 + 8
#: The messages each level can expand, as (stage, kind) pairs (docs/log-format.md, "Log levels").
_EXPANDABLE = {
    "summary": {(Stage.READOUT, Kind.ACTIVATION)},
    "activity": {(Stage.SENSE, Kind.ACTIVATION), (Stage.FORWARD, Kind.ACTIVATION), (Stage.FORWARD, Kind.SPIKE),
                 (Stage.READOUT, Kind.ACTIVATION)},
}
_EXPANDABLE["messages"] = _EXPANDABLE["activity"] | {(Stage.READOUT, Kind.ERROR), (Stage.BACKWARD, Kind.ERROR)}


class MessageColumns(dict):
    """One block of messages as columns: ``tick``, ``step`` (the step within a timed tick at which
    it was sent; 0 in an untimed run), ``stage``, ``kind``, ``src``, ``dst`` (one entry per
    message) and ``payload`` (messages x batch)."""

    def __len__(self) -> int:
        return len(self["src"])


class _Layout:
    """Neuron ids and synapses of a logged network, from its header and topology record (both
    checked by the reader: the topology's arrays have the header's sizes)."""

    def __init__(self, log):
        header = log.header
        self.populations = {p["name"]: p for p in header["populations"]}
        role = {p["role"]: p for p in header["populations"]}
        self._input, self._output = role["input"], role["output"]
        self.broadcast = np.asarray(header.get("broadcast", []), dtype=np.int64)
        time = header.get("time") or {}
        self.spiking = set(time.get("spiking", ()))
        self.projections = []
        self._touching = lru_cache(maxsize=8)(self._touching_uncached)
        topology = log.topology()
        if topology is None:
            return
        for spec, synapses in zip(header["projections"], topology.body["projections"]):
            pre, post = self.populations[spec["pre"]], self.populations[spec["post"]]
            feedback = synapses.get("feedback")
            self.projections.append({
                **spec,
                "src": topology.decode(synapses["pre"]).astype(np.int64) + pre["start"],
                "dst": topology.decode(synapses["post"]).astype(np.int64) + post["start"],
                "feedback_weights": None if feedback is None else topology.decode(feedback),
            })

    @property
    def input(self) -> np.ndarray:
        """The input neurons' ids (made when first asked for: only records with an ``activation``
        array of ``n_neurons`` columns ask, so their number is one that is in the file)."""
        return self._ids("input_ids", self._input)

    @property
    def output(self) -> np.ndarray:
        """The output neurons' ids (every tick record's ``outputs`` has a column for each)."""
        return self._ids("output_ids", self._output)

    def _ids(self, name: str, population: dict) -> np.ndarray:
        if name not in self.__dict__:
            self.__dict__[name] = np.arange(population["start"], population["start"] + population["size"])
        return self.__dict__[name]

    def _touching_uncached(self, agent: int) -> tuple[np.ndarray, ...]:
        return tuple(np.flatnonzero((p["src"] == agent) | (p["dst"] == agent)) for p in self.projections)

    def step_activity(self, record) -> dict[str, np.ndarray] | None:
        """A timed tick's per-step outputs, per population (batch, steps, size), spikes unpacked;
        None for a record without them (untimed, or below level ``activity``)."""
        steps = record.body.get("step_activity")
        if steps is None:
            return None
        return {name: unpack_spikes(record.decode(value), self.populations[name]["size"]) if name in self.spiking
                else record.decode(value) for name, value in steps.items()}

    def touching(self, agent: int | None) -> tuple[np.ndarray | None, ...]:
        if agent is None:
            return (None,) * len(self.projections)
        return self._touching(agent)


def _block(tick: int, stage: Stage, kind: Kind, src: np.ndarray, dst: np.ndarray, payload: np.ndarray,
           step: int = 0) -> MessageColumns:
    n = len(src)
    return MessageColumns(tick=np.full(n, tick, dtype=np.int64), step=np.full(n, step, dtype=np.int64),
                          stage=np.full(n, stage, dtype=np.uint8),
                          kind=np.full(n, kind, dtype=np.uint8), src=np.asarray(src, dtype=np.int64),
                          dst=np.asarray(dst, dtype=np.int64), payload=payload)


def _task_side(ids: np.ndarray, agent: int | None) -> np.ndarray:
    """Positions in ``ids`` of messages between the task and ``ids`` that involve ``agent``."""
    if agent is None:
        return np.arange(len(ids))
    return np.arange(len(ids)) if agent == TASK else np.flatnonzero(ids == agent)


def _pieces(count: int, width: int, block_bytes: int) -> Iterator[slice]:
    """``count`` messages of ``width`` payload values each, in slices of about ``block_bytes``."""
    step = max(1, block_bytes // (_COLUMN_BYTES + 8 * max(width, 1)))
    for start in range(0, count, step):
        yield slice(start, min(count, start + step))


def expand(layout: _Layout, record, *, agent: int | None = None, kinds: set[Kind] | None = None,
           stages: set[Stage] | None = None, block_bytes: int = BLOCK_BYTES) -> Iterator[MessageColumns]:
    """The messages one tick record implies, in canonical order (stage, then as listed in
    docs/log-format.md), as blocks of columns of about ``block_bytes`` at most."""
    body, tick = record.body, record.tick

    def wanted(stage: Stage, kind: Kind) -> bool:
        return (kinds is None or kind in kinds) and (stages is None or stage in stages)

    outputs = record.decode(body["outputs"])
    width = outputs.shape[0]
    activation = record.array("activation")
    touching = layout.touching(agent)
    steps = layout.step_activity(record) if activation is not None else None
    if activation is not None:
        if wanted(Stage.SENSE, Kind.ACTIVATION):
            at = _task_side(layout.input, agent)
            yield _block(tick, Stage.SENSE, Kind.ACTIVATION, np.full(len(at), TASK), layout.input[at],
                         activation[:, layout.input[at]].T)
        if steps is not None:
            yield from _timed_forward(layout, tick, steps, touching, wanted, width, block_bytes)
        elif wanted(Stage.FORWARD, Kind.ACTIVATION):
            for projection, where in zip(layout.projections, touching):
                src, dst = (projection["src"], projection["dst"]) if where is None else \
                    (projection["src"][where], projection["dst"][where])
                for part in _pieces(len(src), width, block_bytes):
                    yield _block(tick, Stage.FORWARD, Kind.ACTIVATION, src[part], dst[part], activation[:, src[part]].T)
    if wanted(Stage.READOUT, Kind.ACTIVATION):
        at = _task_side(layout.output, agent)
        yield _block(tick, Stage.READOUT, Kind.ACTIVATION, layout.output[at], np.full(len(at), TASK),
                     outputs[:, at].T)
    if "answer" not in body:
        return
    if wanted(Stage.READOUT, Kind.ERROR):
        at = _task_side(layout.output, agent)
        yield _block(tick, Stage.READOUT, Kind.ERROR, np.full(len(at), TASK), layout.output[at],
                     record.decode(body["answer"])[:, at].T)
    if not body["backward"] or not wanted(Stage.BACKWARD, Kind.ERROR):
        return
    delta = record.decode(body["delta"])
    weights = body.get("weights") or {}
    for projection, where in reversed(list(zip(layout.projections, touching))):
        if not projection["sends_error"]:
            continue
        w = projection["feedback_weights"]
        if w is None:
            w = record.decode(weights[projection["name"]])
        src, dst = projection["dst"], projection["src"]  # errors travel from post to pre
        if where is not None:
            src, dst, w = src[where], dst[where], w[where]
        for part in _pieces(len(src), width, block_bytes):
            yield _block(tick, Stage.BACKWARD, Kind.ERROR, src[part], dst[part], w[part, None] * delta[:, src[part]].T)
    n_broadcast = len(layout.broadcast)
    if n_broadcast:  # message m: from output neuron m // n_broadcast to broadcast id m % n_broadcast
        for part in _pieces(len(layout.output) * n_broadcast, width, block_bytes):
            m = np.arange(part.start, part.stop)
            src, dst = layout.output[m // n_broadcast], layout.broadcast[m % n_broadcast]
            if agent is not None:
                keep = (src == agent) | (dst == agent)
                src, dst = src[keep], dst[keep]
            if len(src) or agent is None:
                yield _block(tick, Stage.BACKWARD, Kind.ERROR, src, dst, delta[:, src].T)


def _timed_forward(layout: _Layout, tick: int, steps: dict[str, np.ndarray], touching: tuple, wanted,
                   width: int, block_bytes: int) -> Iterator[MessageColumns]:
    """A timed tick's forward messages, step by step (docs/semantics.md, "Time within a tick"):
    along every synapse, an ``activation`` message at each step from a neuron that emits values,
    and a ``spike`` message for each batch row in which a spiking neuron spiked at that step (its
    payload one-hot on that row: the reference executor's payload is the row itself); a silent
    neuron sends nothing.  A delayed projection's message is listed at the step it was sent."""
    for step in range(next(iter(steps.values())).shape[1]):
        for projection, where in zip(layout.projections, touching):
            pre = projection["pre"]
            src, dst = (projection["src"], projection["dst"]) if where is None else \
                (projection["src"][where], projection["dst"][where])
            values = steps[pre][:, step, :]
            local = src - layout.populations[pre]["start"]
            spiking = pre in layout.spiking
            if not wanted(Stage.FORWARD, Kind.SPIKE if spiking else Kind.ACTIVATION):
                continue
            for part in _pieces(len(src), width, block_bytes):
                if not spiking:
                    yield _block(tick, Stage.FORWARD, Kind.ACTIVATION, src[part], dst[part],
                                 values[:, local[part]].T, step)
                    continue
                synapse, row = np.nonzero(values[:, local[part]].T)
                payload = np.zeros((len(synapse), width))
                payload[np.arange(len(synapse)), row] = 1.0
                yield _block(tick, Stage.FORWARD, Kind.SPIKE, src[part][synapse], dst[part][synapse], payload, step)


def _names(values, enum, what: str, source: str) -> set | None:
    if values is None:
        return None
    values = [values] if isinstance(values, (str, int)) else list(values)
    chosen = set()
    for value in values:
        try:
            chosen.add(enum(value) if isinstance(value, int) else enum[str(value).upper()])
        except (KeyError, ValueError):
            raise LogError(Problem(source, what, f"unknown {what} {value!r}",
                                   "use one of: " + ", ".join(m.name.lower() for m in enum))) from None
    return chosen


def _tick_range(log, ticks) -> range | None:
    if ticks is None:
        return None
    if isinstance(ticks, range):
        return ticks
    if isinstance(ticks, int):
        return range(ticks, ticks + 1)
    start, stop = ticks
    last = int(log.ticks[-1]) + 1 if len(log.ticks) else 0
    return range(0 if start is None else start, last if stop is None else stop)


def expandable(level: str) -> set[tuple[Stage, Kind]]:
    """The (stage, kind) pairs of the messages a log of ``level`` can expand."""
    return set(_EXPANDABLE.get(level, ()))


def _check_level(log, kinds: set[Kind] | None, stages: set[Stage] | None) -> None:
    """A LogError when the filter asks only for messages the log's level does not hold."""
    level = log.header["level"]
    held = expandable(level)
    if any((kinds is None or k in kinds) and (stages is None or s in stages) for s, k in held):
        return
    asked = " ".join(filter(None, ["/".join(sorted(s.name.lower() for s in stages)) if stages else "",
                                   "/".join(sorted(k.name.lower() for k in kinds)) if kinds else ""]))
    never = {Kind.ACTIVATION, Kind.SPIKE, Kind.ERROR}
    if kinds and not kinds & never:
        fix = ("only their number per tick is logged (each tick record's counts, summed by ribbed log info); "
               "activation, spike and error messages are the ones a log expands")
    elif level != "messages":
        fix = ("run the scenario again with log: {level: messages} (every activation and error message), or "
               "log: {level: activity} (every activation message)")
    else:
        fix = "ask for the stages a log holds messages of: sense, forward, readout, backward"
    raise LogError(Problem(str(log.path), "kind" if kinds else "stage", f"a log written at level '{level}' holds no "
                           f"{asked} messages (it holds: " + ", ".join(f"{s.name.lower()} {k.name.lower()}"
                                                                       for s, k in sorted(held)) + ")", fix))


def iter_messages(log, *, ticks=None, agent: int | None = None, kind=None, stage=None,
                  chunk_ticks: int = 64, block_bytes: int = BLOCK_BYTES) -> Iterator[MessageColumns]:
    """The log's messages as blocks of columns, ``chunk_ticks`` ticks (and about ``block_bytes``)
    at most at a time; ``ticks`` is a tick, a ``(start, stop)`` pair (stop excluded; None for open
    ends) or a range.  A LogError when the log's level holds none of the kinds and stages asked for."""
    kinds = _names(kind, Kind, "kind", str(log.path))
    stages = _names(stage, Stage, "stage", str(log.path))
    _check_level(log, kinds, stages)
    layout = _layout(log)
    blocks: list[MessageColumns] = []
    count = held = 0
    for record in log.records(("tick",), _tick_range(log, ticks)):
        for block in expand(layout, record, agent=agent, kinds=kinds, stages=stages, block_bytes=block_bytes):
            blocks.append(block)
            held += block["payload"].nbytes + _COLUMN_BYTES * len(block)
            if held >= block_bytes:
                yield _concat(blocks, log)
                blocks, held = [], 0
        count += 1
        if count % chunk_ticks == 0 and blocks:
            yield _concat(blocks, log)
            blocks, held = [], 0
    if blocks or count == 0:
        yield _concat(blocks, log)


def _layout(log) -> _Layout:
    if "message_layout" not in log.cache:
        log.cache["message_layout"] = _Layout(log)
    return log.cache["message_layout"]


def _concat(blocks: list[MessageColumns], log) -> MessageColumns:
    width = log.header["batch_size"]
    if not blocks:
        return MessageColumns(**{c: np.zeros(0, dtype=np.int64) for c in COLUMNS}, payload=np.zeros((0, width)))
    return MessageColumns(**{c: np.concatenate([b[c] for b in blocks]) for c in (*COLUMNS, "payload")})


def to_frame(columns: MessageColumns) -> pd.DataFrame:
    """Columns as a DataFrame: tick, step, stage and kind (categories by name), src, dst (-1: the task),
    and ``payload_0`` ... one column per sample of the batch."""
    frame = pd.DataFrame({
        "tick": columns["tick"], "step": columns["step"],
        "stage": pd.Categorical.from_codes(columns["stage"].astype(np.int64), [s.name.lower() for s in Stage]),
        "kind": pd.Categorical.from_codes(columns["kind"].astype(np.int64), [k.name.lower() for k in Kind]),
        "src": columns["src"], "dst": columns["dst"],
    })
    payload = columns["payload"]
    return pd.concat([frame, pd.DataFrame(payload, columns=[f"payload_{i}" for i in range(payload.shape[1])])],
                     axis=1)


def messages(log, *, ticks=None, agent: int | None = None, kind=None, stage=None) -> pd.DataFrame:
    """The messages of a log as a DataFrame (see :func:`to_frame`), filtered; only the records of
    the ticks asked for are read."""
    blocks = list(iter_messages(log, ticks=ticks, agent=agent, kind=kind, stage=stage))
    return to_frame(_concat([b for b in blocks if len(b)], log))
