"""ribbed: multi-agent simulation of neurons that learn by message passing.

The three-line run::

    import ribbed
    model = ribbed.NetworkModel(ribbed.load_scenario("digits"))
    metrics = model.run()          # a pandas DataFrame, one row per evaluation
"""

from importlib import import_module
from typing import TYPE_CHECKING

from ribbed.errors import Problem, RibbedError, RibbedWarning, ScenarioError

if TYPE_CHECKING:
    from ribbed.model import NetworkModel, Population, Projection
    from ribbed.runner import run
    from ribbed.scenarios.loader import builtin_scenarios, load_scenario, scenario_to_yaml
    from ribbed.scenarios.schema import Scenario
    from ribbed.sweeps import SweepResult, sweep

#: Where the public names live: imported on first use (PEP 562), so that a process that needs only
#: a light part of ribbed (the message log's writer process, the log format) does not load torch.
_LAZY = {
    "NetworkModel": "ribbed.model", "Population": "ribbed.model", "Projection": "ribbed.model",
    "run": "ribbed.runner", "builtin_scenarios": "ribbed.scenarios.loader",
    "load_scenario": "ribbed.scenarios.loader", "scenario_to_yaml": "ribbed.scenarios.loader",
    "Scenario": "ribbed.scenarios.schema", "sweep": "ribbed.sweeps", "SweepResult": "ribbed.sweeps",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ribbed' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

__all__ = [
    "NetworkModel",
    "Population",
    "Problem",
    "Projection",
    "RibbedError",
    "RibbedWarning",
    "Scenario",
    "ScenarioError",
    "SweepResult",
    "builtin_scenarios",
    "load_scenario",
    "run",
    "scenario_to_yaml",
    "sweep",
]

__version__ = "0.1.0"
