"""The scenario a log's header holds, and the check of its size, without torch.

A replay (and a resumed run) rebuilds the header's scenario; a header can claim any size (it is
only as trustworthy as the log), so the command line checks the scenario's estimated size
(:mod:`ribbed.scenarios.size`) with the reader and the scenarios layer alone, before it imports the
model and torch (seconds): a refusal comes back at once.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from ribbed.errors import LogError, RibbedWarning
from ribbed.log.reader import LogReader

if TYPE_CHECKING:
    from ribbed.resources import MemoryLimit
    from ribbed.scenarios.schema import Scenario

__all__ = ["check_header_size", "scenario_of"]


def scenario_of(log: LogReader, source: str | None = None) -> Scenario:
    """The scenario a log was recorded from (its header holds it resolved)."""
    from ribbed.scenarios.loader import load_scenario

    folder = log.header.get("scenario_folder")
    return load_scenario(log.header["scenario"]).locate(source or f"{log.path} (header)",
                                                       Path(folder) if folder else None)


def check_header_size(path: str | Path, max_memory: int | str | MemoryLimit | None = None,
                      source: str | None = None) -> None:
    """Refuse (:class:`~ribbed.errors.ScenarioError`) the header scenario of the log at ``path``
    when it breaks a rule or does not fit in ``max_memory`` (default: the memory available).  A
    log that cannot be read is left to the command that reads it, which says why."""
    from ribbed.scenarios.validation import validate

    try:
        with warnings.catch_warnings():  # (the command that reads the log reports them)
            warnings.simplefilter("ignore", RibbedWarning)
            with LogReader(path) as log:
                scenario = scenario_of(log, source)
    except LogError:
        return
    validate(scenario, max_memory=max_memory)
