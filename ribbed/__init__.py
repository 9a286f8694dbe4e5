"""ribbed: multi-agent simulation of neurons that learn by message passing.

The three-line run::

    import ribbed
    model = ribbed.NetworkModel(ribbed.load_scenario("digits"))
    metrics = model.run()          # a pandas DataFrame, one row per evaluation
"""

from ribbed.errors import Problem, RibbedError, RibbedWarning, ScenarioError
from ribbed.model import NetworkModel, Population, Projection
from ribbed.runner import run
from ribbed.scenarios.loader import builtin_scenarios, load_scenario, scenario_to_yaml
from ribbed.scenarios.schema import Scenario

__all__ = [
    "NetworkModel",
    "Population",
    "Problem",
    "Projection",
    "RibbedError",
    "RibbedWarning",
    "Scenario",
    "ScenarioError",
    "builtin_scenarios",
    "load_scenario",
    "run",
    "scenario_to_yaml",
]

__version__ = "0.1.0"
