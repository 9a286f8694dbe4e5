"""The message log of a run: its format, writing, reading, and replay (docs/log-format.md)."""

from ribbed.log.messages import messages
from ribbed.log.reader import LogReader, Record
from ribbed.log.replay import VerifyReport, model_at, verify, write_state

__all__ = ["LogReader", "Record", "VerifyReport", "messages", "model_at", "open_log", "verify", "write_state"]


def open_log(path) -> LogReader:
    """Open a run's log for reading: ``open_log("runs/x/run.log").messages(agent=17)``."""
    return LogReader(path)
