"""The link between a running model and its log: what to record at each tick and evaluation.

A :class:`Recorder` is attached to a :class:`~ribbed.model.NetworkModel` (``model.recorder``);
the model calls it before and after every tick and after every evaluation.  The
:class:`LogRecorder` hands records to a :class:`~ribbed.log.writer.LogWriter`; a replay uses the
same hooks to re-compute the records and compare them (:mod:`ribbed.log.replay`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

from ribbed.log.lineage import generations_at
from ribbed.log.records import snapshot_body, tick_body, tick_fields, weights_before_tick
from ribbed.log.writer import LogWriter

if TYPE_CHECKING:
    from ribbed.model import NetworkModel

__all__ = ["LogRecorder", "Recorder"]


class Recorder:
    """Builds the records of a run at the model's hooks; subclasses say what to do with them."""

    def __init__(self, model: NetworkModel, level: str, snapshot_every: int):
        self.model = model
        self.level = level
        self.snapshot_every = snapshot_every
        self._weights: dict | None = None
        self._counts = model.executor.message_counts
        # About how many bytes a tick record holds until it is written (a bound for the queue).
        values = 1 + (model.network.n_neurons if level in ("activity", "messages") else model.network.output.size)
        values += model.network.n_neurons if level == "messages" else 0
        self._sizes = values * model.scenario.run.batch_size * 8

    def before_tick(self) -> None:
        if self.level == "messages":
            self._weights = weights_before_tick(self.model)

    def after_tick(self, result, index: np.ndarray, backward: bool) -> None:
        counts = self.model.executor.message_counts
        fields = tick_fields(self.model, self.level, result, index, backward, counts - self._counts, self._weights)
        self._counts = counts
        self.emit_tick(fields)

    def after_record(self) -> None:
        """After an evaluation: a snapshot when one is due (every ``snapshot_every`` ticks, and at
        the end of the run)."""
        tick = self.model.tick
        if tick > 0 and (tick % self.snapshot_every == 0 or tick == self.model.scenario.run.ticks):
            body = snapshot_body(self.model)
            self.emit("snapshot", tick, lambda: body, 8 * self.model.network.n_synapses)

    def emit(self, kind: str, tick: int, body: Callable[[], dict], size: int = 0) -> None:
        raise NotImplementedError

    def emit_tick(self, fields: dict) -> None:
        self.emit("tick", fields["tick"], lambda: tick_body(fields), self._sizes)


class LogRecorder(Recorder):
    """Writes the records to a log file."""

    def __init__(self, model: NetworkModel, level: str, snapshot_every: int, writer: LogWriter):
        super().__init__(model, level, snapshot_every)
        self.writer = writer
        #: A writer process's ring (ribbed.log.shared_writer) takes a tick's values as they are,
        #: copied into shared memory now: no record is built on the run's thread.
        self._write_tick = getattr(writer, "write_tick", None)
        self._activity, self._messages = level in ("activity", "messages"), level == "messages"
        #: Populations whose guides evolve: a tick that ends one of their generations has a record
        #: of a size of its own (its ``generations``), built here and sent whole, not through the ring.
        self._evolving = {name: {"generation_every": g.evolution.generation_every}
                          for name, g in model.network.guided.items() if g.evolution is not None}

    def after_tick(self, result, index: np.ndarray, backward: bool) -> None:
        """A writer process's ring gets the values :func:`tick_fields` would gather, handed over
        as the executor gives them (this runs at every tick: no dict is built); a thread writer
        gets the record as :class:`Recorder` builds it."""
        if self._write_tick is None or generations_at(self._evolving, self.model.tick - 1):
            super().after_tick(result, index, backward)
            return
        executor = self.model.executor
        counts = executor.message_counts
        self._write_tick(self.model.tick - 1, backward, result, index, counts, self._counts,
                         executor.tick_values(activity=self._activity, messages=self._messages), self._weights)
        self._counts = counts

    def emit(self, kind: str, tick: int, body: Callable[[], dict], size: int = 0) -> None:
        self.writer.write(kind, tick, body, index=kind == "snapshot", size=size)
