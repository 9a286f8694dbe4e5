"""The message log of a run: its format, writing, reading, and replay (docs/log-format.md).

The names below are imported on first use, so that the log's writer process (which needs only
:mod:`ribbed.log.format`) starts without pandas or torch.
"""

from importlib import import_module

__all__ = ["LogReader", "Record", "VerifyReport", "messages", "model_at", "open_log", "verify", "write_state"]

_LAZY = {"LogReader": "ribbed.log.reader", "Record": "ribbed.log.reader", "messages": "ribbed.log.messages",
         "VerifyReport": "ribbed.log.replay", "model_at": "ribbed.log.replay", "verify": "ribbed.log.replay",
         "write_state": "ribbed.log.replay"}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ribbed.log' has no attribute {name!r}")


def open_log(path, *, key_file=None, key=None):
    """Open a run's log for reading: ``open_log("runs/x/run.log").messages(agent=17)``; a keyed
    log's ``key_file`` (or ``key``) authenticates its digest chain."""
    from ribbed.log.reader import LogReader

    return LogReader(path, key_file=key_file, key=key)
