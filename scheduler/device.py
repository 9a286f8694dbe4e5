"""Where and in what precision the batched executor computes: the scenario's
``backend.device`` and ``backend.dtype`` turned into torch's.

Whether the device can be had is a scenario rule, checked with the others in
:mod:`ribbed.scenarios.validation`; this module only names it in torch's terms.
"""

from __future__ import annotations

import torch

from ribbed.errors import ScenarioError
from ribbed.scenarios.schema import Scenario
from ribbed.scenarios.validation import device_problem

__all__ = ["resolve_device", "resolve_dtype"]


def resolve_device(scenario: Scenario) -> torch.device:
    """``auto`` is cuda when a GPU is present, else cpu; an explicit cuda without one is an error."""
    problem = device_problem(scenario)
    if problem is not None:
        raise ScenarioError(problem)
    requested = scenario.backend.device
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def resolve_dtype(scenario: Scenario) -> torch.dtype:
    """float32 unless the scenario asks for float64."""
    return torch.float64 if scenario.backend.dtype == "float64" else torch.float32
