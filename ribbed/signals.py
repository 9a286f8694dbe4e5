"""Stopping a run between two ticks when it is asked to stop (Ctrl-C, ``kill``).

A signal that interrupts Python raises wherever the interpreter happens to be: halfway through
handing a record to the log writer, halfway through a Ray round trip.  What the run had
written would then end inside a record.  So while a run goes, the first SIGINT or SIGTERM only
asks it to stop: :class:`StopOnSignal` sets the model's ``running`` to False (Mesa's way of
saying a model is done), the model finishes the tick it is in and returns, and the runner
closes the log with an ``end`` record of status ``interrupted`` and raises
:class:`RunInterrupted`.  A second SIGINT raises at once, for a run that does not come back
from its tick; the log still keeps every record that was whole.  While the run closes its
files, further signals are held back until they are closed.

Signal handlers belong to the main thread: elsewhere (a run started from a worker thread),
nothing is installed and the signals keep their handlers.  A signal this process was started
ignoring stays ignored (POSIX's convention: a shell starts background jobs ignoring SIGINT, so
that the terminal's Ctrl-C leaves them running; ``nohup`` and service managers do likewise).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

__all__ = ["STOP_SIGNALS", "RunInterrupted", "StopOnSignal"]

#: The signals that ask a run to stop: the terminal's Ctrl-C, and ``kill``'s default.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by a signal, after it closed its log; ``signal`` is its number (the exit
    status of a process that stops for it is 128 + ``signal``, as a shell reports it)."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signal = int(signum)


class StopOnSignal:
    """While the ``with`` block runs, the first stop signal sets ``model.running = False``;
    a second SIGINT raises :class:`RunInterrupted` at once (a second SIGTERM does the same).

    :meth:`hold` holds signals back while the run closes its files; :attr:`received` is the
    first signal that arrived (None when none did)."""

    def __init__(self, model: Any):
        self.model = model
        self.received: int | None = None
        self._holding = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                if signal.getsignal(signum) is not signal.SIG_IGN:
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def hold(self) -> None:
        """From now on, signals are only noted (the run is closing its files)."""
        self._holding = True

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first = self.received is None
        if first:
            self.received = signum
        if self._holding:
            return
        if first:
            self.model.running = False
            return
        raise RunInterrupted(signum)
