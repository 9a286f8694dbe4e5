"""Where and in what precision the batched executor computes: the scenario's
``backend.device`` and ``backend.dtype`` turned into torch's, with clear errors."""

from __future__ import annotations

import torch

from ribbed.errors import Problem, ScenarioError
from ribbed.scenarios.schema import Scenario

__all__ = ["resolve_device", "resolve_dtype"]


def resolve_device(scenario: Scenario) -> torch.device:
    """``auto`` is cuda when a GPU is present, else cpu; an explicit cuda without one is an error."""
    requested = scenario.backend.device
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            found = "no GPU is available to torch" if count == 0 else f"torch sees {count} GPU(s)"
            raise ScenarioError(Problem(scenario.source, "backend.device", f"'{requested}' was requested but {found}",
                                        "use 'device: auto' or 'device: cpu' (or --device cpu)"))
    return device


def resolve_dtype(scenario: Scenario) -> torch.dtype:
    """float32 unless the scenario asks for float64."""
    return torch.float64 if scenario.backend.dtype == "float64" else torch.float32
