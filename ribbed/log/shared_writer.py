"""Writing a run's log from a separate process, fed through shared memory.

Encoding, checksumming and writing a tick record take tens of microseconds of Python, as long
as a whole tick of a small network: on a thread they would hold the interpreter lock the run
needs.  Here the run copies each tick's arrays into a slot of a ring in shared memory (a few
microseconds, no system call) and tells a writer process (:mod:`ribbed.log.writer_process`)
every few ticks, through a pipe, how far the ring is filled; the writer frames, checksums and
writes the records.  A slot holds its record's body already encoded around the arrays (see
:mod:`ribbed.log.ring`): the same bytes :func:`ribbed.log.records.tick_body` gives.
Other records (header, topology, snapshots, end) travel through the pipe whole.

When the run's process dies, the writer reads to the end of the pipe, writes every tick it was
told about, and exits: a killed run loses at most the ticks of its last few milliseconds.
"""

from __future__ import annotations

import json
import mmap
import os
import select
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from ribbed.errors import RibbedError
from ribbed.log.format import RECORD_TYPES, pack_parts, pack_spikes, record_body
from ribbed.log.ring import ACK, CLOSE, FLUSH, KEY, RECORD, RING_BYTES, SCALARS, TICKS, slot_layout, slot_views
from ribbed.log.writer import write_failure

if TYPE_CHECKING:
    from ribbed.log.keys import LogKey

__all__ = ["SharedLogWriter", "tick_layout"]

def tick_layout(model, level: str) -> list[dict]:
    """The fields of a tick record in body order (:func:`ribbed.log.records.tick_body`), with the
    dtype and shape they have in this run; ``as`` says how the body holds them."""
    dtype = np.dtype(model.executor.dtype_name).str
    network, batch = model.network, model.scenario.run.batch_size
    from ribbed.scheduler.messages import Kind

    fields = [{"name": "tick", "dtype": "<i8", "shape": [], "as": "int"},
              {"name": "backward", "dtype": "|b1", "shape": [], "as": "bool"},
              {"name": "loss", "dtype": "<f8", "shape": [], "as": "float"},
              {"name": "counts", "dtype": "<i8", "shape": [len(Kind)], "as": "array"},
              {"name": "batch", "dtype": "<i8", "shape": [batch], "as": "array"},
              {"name": "outputs", "dtype": dtype, "shape": [batch, network.output.size], "as": "array"}]
    # ``parts``: the widths of the per-population parts the executor hands over, side by side;
    # ``output_part``: which of the activation's parts is the output population's.
    parts = [p.size for p in network.populations.values()]
    from ribbed.log.records import time_layout

    time = time_layout(model)
    if level in ("activity", "messages"):
        fields.append({"name": "activation", "dtype": dtype, "shape": [batch, network.n_neurons], "as": "array",
                       "parts": parts, "output_part": list(network.populations).index(network.output.name)})
        if time is not None:  # per population, every step: spikes as bits (records.tick_body)
            steps, spiking = time["steps"], set(time["spiking"])
            fields.append({"name": "step_activity", "as": "map", "fields": [
                {"name": p.name, "dtype": "|u1", "shape": [batch, steps, -(-p.size // 8)], "spikes": True}
                if p.name in spiking else {"name": p.name, "dtype": dtype, "shape": [batch, steps, p.size]}
                for p in network.populations.values()]})
    if level == "messages":
        fields.append({"name": "answer", "dtype": dtype, "shape": [batch, network.output.size], "as": "array"})
        fields.append({"name": "delta", "dtype": dtype, "shape": [batch, network.n_neurons], "as": "array",
                       "parts": parts})
        if time is not None:
            fields.append({"name": "step_delta", "dtype": dtype, "shape": [batch, time["steps"], network.n_neurons],
                           "as": "array", "parts": parts})
        fields.append({"name": "weights", "as": "map", "fields": [
            {"name": p.name, "dtype": dtype, "shape": [p.n_synapses], "as": "array"}
            for p in network.projections if p.sends_error and p.feedback is None]})
    return fields


class SharedLogWriter:
    """The :class:`~ribbed.log.writer.LogWriter` interface, with the work done in a writer
    process (see the module docstring).  ``key``: the key of a keyed log, handed to the
    process through its pipe before anything else."""

    #: What kind of writer this is, as a run's header and summary.json record it.
    kind = "process"

    def __init__(self, path: str | Path, header: dict | None, layout: list[dict], *, resume: bool = False,
                 notify_every: int = 64, notify_seconds: float = 0.02, key: LogKey | None = None):
        self.path = Path(path)
        self.layout = layout
        slots = slot_layout(layout)
        self._n_slots = int(min(1024, max(4, RING_BYTES // slots.size)))
        folder = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        descriptor, ring = tempfile.mkstemp(prefix="ribbed-log-", suffix=".ring", dir=folder)
        self._ring = ring  # the writer removes it once mapped; the run does if the writer never got there
        try:
            os.ftruncate(descriptor, slots.size * self._n_slots)
            self._map = mmap.mmap(descriptor, slots.size * self._n_slots)
        finally:
            os.close(descriptor)
        for slot in range(self._n_slots):  # the bodies' constant bytes, once (the writer reads them)
            start = slot * slots.size + slots.rest_offset
            self._map[start:start + len(slots.rest)] = slots.rest
        self._slots = [_slot_targets(layout, views, slot * slots.size)
                       for slot, views in enumerate(slot_views(self._map, slots, self._n_slots))]
        self._errors = tempfile.TemporaryFile()
        command_read, self._commands = os.pipe()
        try:  # Linux: a larger pipe, so that a snapshot is handed over in fewer round trips
            import fcntl

            fcntl.fcntl(self._commands, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
        except (ImportError, OSError):
            pass
        self._acks, ack_write = os.pipe()
        settings = {"path": str(self.path), "ring": ring, "layout": layout, "slots": self._n_slots,
                    "resume": resume, "keyed": key is not None}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "ribbed.log.writer_process", json.dumps(settings)],
            stdin=command_read, stdout=ack_write, stderr=self._errors, pass_fds=(), close_fds=True,
            # Its own session: the terminal's Ctrl-C (sent to the run's process group) does not
            # reach it; the run stops it, after the last record (ribbed.signals).
            start_new_session=True)
        os.close(command_read)
        os.close(ack_write)
        os.set_blocking(self._acks, False)
        self._head = self._written = self._told = 0
        self._flushed, self._pending_ack, self._cut_short = True, b"", False
        self._told_at = time.monotonic()
        self._notify_every = min(notify_every, self._n_slots // 4 or 1)
        self._notify_seconds = notify_seconds
        self.closed = False
        try:
            if key is not None:
                self._send(KEY + struct.pack("<H", len(key.secret)), key.secret)
            if header is not None:
                self.write("header", -1, lambda: header)
        except RibbedError:
            self._remove_ring()
            raise

    # ------------------------------------------------------------------ ticks

    def write_tick(self, tick: int, backward: bool, result, index: np.ndarray, counts: np.ndarray,
                   counts_before: np.ndarray, values: dict, weights: dict | None) -> None:
        """Copy a tick's record into the next slot of the ring: ``result`` is the tick's
        ``TickResult`` (loss, outputs), ``index`` its batch, ``counts`` and ``counts_before`` the
        messages sent by kind after it and before it, ``values`` the executor's ``tick_values``
        at the log's level, ``weights`` the weights its errors were sent with (level ``messages``).

        This runs on the run's thread at every tick, so it builds nothing: each value is
        copied straight into its place in the slot, through views made once (``_slots``), with
        as few calls as can be (the outputs are copied from the activation's columns when the
        executor's outputs are the output population's activation part itself)."""
        head = self._head
        if head - self._written >= self._n_slots:
            self._tell()
            self._wait(lambda: self._head - self._written < self._n_slots)
        base, counts_view, batch_view, outputs, arrays, weight_views, step_views = self._slots[head % self._n_slots]
        SCALARS.pack_into(self._map, base, tick, result.loss, backward)
        np.subtract(counts, counts_before, out=counts_view)
        batch_view[...] = index  # (numpy's assignment: no dispatch through np.copyto)
        for name, view, tensor, parts in arrays:
            _copy(values[name], view, tensor, parts)
        for name, view, spikes in step_views:
            value = values["step_activity"][name]
            if spikes:
                view[...] = pack_spikes(value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value)
            elif isinstance(value, torch.Tensor):
                torch.from_numpy(view).copy_(value)
            else:
                view[...] = value
        raw = result.raw_outputs
        view, tensor, output_part, output_columns = outputs
        if output_part is not None and values["activation"][output_part] is raw:
            view[...] = output_columns
        elif isinstance(raw, torch.Tensor):
            tensor.copy_(raw)
        else:
            view[...] = raw
        for name, view in weight_views:
            view[...] = weights[name]
        self._head = head = head + 1
        if head - self._told >= self._notify_every or time.monotonic() - self._told_at >= self._notify_seconds:
            self._tell()

    def _tell(self) -> None:
        if self._head > self._told:
            self._send(TICKS + struct.pack("<q", self._head))
            self._told, self._told_at = self._head, time.monotonic()
        self._read_acks()

    # ------------------------------------------------------------------ other records

    def write(self, kind: str, tick: int, body: Callable[[], dict], *, index: bool = False, size: int = 0) -> None:
        """Write a whole record (header, topology, snapshot, end): encoded here, sent whole."""
        self._tell()
        parts = pack_parts(record_body(kind, tick, body()))  # sent piece by piece: a snapshot is not copied
        size = sum(len(part) for part in parts)
        self._send(RECORD + struct.pack("<BqBQ", RECORD_TYPES.index(kind), tick, index, size), *parts)

    def flush(self) -> None:
        """Wait until every record so far is in the file."""
        self._tell()
        self._flushed = False
        self._send(FLUSH)
        self._wait(lambda: self._flushed)

    def close(self, status: str | None = None, tick: int = 0, **fields: Any) -> None:
        """Write the end record (when ``status`` is given) and the index, and stop the writer."""
        if self.closed:
            return
        self.closed = True
        try:
            if self._cut_short:  # the writer drops the command cut short and keeps every whole record
                return
            if status is not None:
                self.write("end", tick, lambda: {"status": status, "tick": tick, **fields})
            self._tell()
            self._send(CLOSE)
        except RibbedError:
            pass  # the writer is gone: its exit status says why, below
        finally:
            os.close(self._commands)
            code = self._process.wait()
            os.close(self._acks)
            self._map.close()
            self._remove_ring()
            if code != 0:
                raise self._failure()
            self._errors.close()

    def _remove_ring(self) -> None:
        try:
            os.unlink(self._ring)
        except FileNotFoundError:  # removed by the writer, as it should be
            pass

    # ------------------------------------------------------------------ the pipe

    def _send(self, *parts: bytes) -> None:
        # ``_cut_short`` stays True when something interrupts the sending (a second Ctrl-C,
        # ribbed.signals): the pipe then ends inside a command, and close() sends nothing more.
        self._cut_short = True
        try:
            for part in parts:
                view = memoryview(part)
                while view:
                    view = view[os.write(self._commands, view):]
        except (BrokenPipeError, OSError):
            self._process.wait()
            raise self._failure() from None
        self._cut_short = False

    def _read_acks(self) -> None:
        try:
            data = os.read(self._acks, 1 << 16)
        except BlockingIOError:
            return
        if not data:
            return
        self._pending_ack += data
        whole = len(self._pending_ack) // ACK.size * ACK.size
        for what, value in ACK.iter_unpack(self._pending_ack[:whole]):
            if what == 0:
                self._written = max(self._written, value)
            elif what == 1:
                self._flushed = True
        self._pending_ack = self._pending_ack[whole:]

    def _wait(self, done: Callable[[], bool]) -> None:
        while not done():
            if self._process.poll() is not None:
                raise self._failure()
            select.select([self._acks], [], [], 0.1)
            self._read_acks()

    def _failure(self) -> RibbedError:
        self._errors.seek(0)
        text = self._errors.read().decode("utf-8", "replace").strip().splitlines()
        code = self._process.returncode
        stopped = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
        detail = text[-1] if text else f"the log writer process stopped ({stopped})"
        return write_failure(self.path, detail)


def _slot_targets(layout: list[dict], views: dict, base: int) -> tuple:
    """Where :meth:`SharedLogWriter.write_tick` copies each value in one slot: the slot's first
    byte, the counts' and batch's views, the outputs' (view, tensor, the activation part they
    may be, and the activation's columns of that part), (name, view, tensor, each part's
    columns as a view and a tensor) per per-neuron array, (name, view) per weight array.  Made
    once per slot, so that a tick looks up nothing by name and slices nothing."""
    arrays, output_part, output_columns = [], None, None
    for field in layout:
        if field["name"] in ("activation", "answer", "delta", "step_delta"):
            view = views[field["name"]]
            tensor = torch.from_numpy(view)
            edges = np.cumsum([0, *field.get("parts", [])]).tolist()
            parts = [(view[..., start:stop], tensor[..., start:stop]) for start, stop in zip(edges[:-1], edges[1:])]
            arrays.append((field["name"], view, tensor, parts))
            if "output_part" in field:
                output_part = field["output_part"]
                output_columns = parts[output_part][0]
    weights = [(item["name"], views[f"weights/{item['name']}"])
               for field in layout if field["name"] == "weights" for item in field["fields"]]
    steps = [(item["name"], views[f"step_activity/{item['name']}"], item.get("spikes", False))
             for field in layout if field["name"] == "step_activity" for item in field["fields"]]
    outputs = views["outputs"]
    return (base, views["counts"], views["batch"], (outputs, torch.from_numpy(outputs), output_part, output_columns),
            arrays, weights, steps)


def _copy(value, view: np.ndarray, tensor: torch.Tensor, parts: list[tuple[np.ndarray, torch.Tensor]]) -> None:
    """A tick field into its slot: a tensor, an array, or per-population parts side by side
    (``parts``: each part's columns of the slot; a part that is None is NaN), as
    records.tick_body lays them out."""
    if isinstance(value, list):
        if not any(part is None for part in value):
            try:  # the usual case, tensors: one call (a failed call is slow, hence the None check)
                torch.cat(value, dim=-1, out=tensor)
                return
            except TypeError:  # arrays
                pass
        for part, (part_view, part_tensor) in zip(value, parts, strict=True):
            if part is None:
                part_view[...] = np.nan
            elif isinstance(part, torch.Tensor):
                part_tensor.copy_(part)
            else:
                part_view[...] = part
    elif isinstance(value, torch.Tensor):
        tensor.copy_(value)
    else:
        view[...] = value
