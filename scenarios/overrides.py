"""Command-line style overrides of a scenario (``--backend``, ``--device``, ``--shards``,
``--ticks``, ``--seed``), validated like the file itself.

Switching the executor (``--backend``) keeps only the file's backend keys that the new executor
has: the file's Ray settings do not follow it onto the batched executor; nor does its device onto
the reference executor, which computes on the CPU (so ``--backend reference`` runs any scenario
there, as the built-ins' comments promise).  An option given with it must fit the new executor
(``--backend batched --shards 2`` is refused, naming the option).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ribbed.errors import Problem, ScenarioError
from ribbed.scenarios.backend import BACKEND_KINDS, backend_fields
from ribbed.scenarios.loader import load_scenario

if TYPE_CHECKING:
    from ribbed.scenarios.schema import Scenario

__all__ = ["OVERRIDES", "apply_overrides"]

#: Each override and the field it sets.
OVERRIDES: dict[str, tuple[str, ...]] = {
    "ticks": ("run", "ticks"), "seed": ("seed",), "backend": ("backend", "kind"), "device": ("backend", "device"),
    "shards": ("backend", "shards"),
}


def apply_overrides(scenario: Scenario, **overrides: Any) -> Scenario:
    """A copy of ``scenario`` with the overrides that are not None applied, validated again;
    errors name the options."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if not given:
        return scenario
    data = scenario.model_dump()
    kind = given.get("backend")
    if kind is not None and kind in BACKEND_KINDS and kind != data["backend"]["kind"]:
        keep = set(backend_fields(kind)) - ({"device"} if kind == "reference" else set())
        data["backend"] = {key: value for key, value in data["backend"].items() if key in keep}
    for key, value in given.items():
        target = data
        *parents, last = OVERRIDES[key]
        for parent in parents:
            target = target[parent]
        target[last] = value
    try:
        updated = load_scenario(data)
    except ScenarioError as exc:
        problems = [Problem(f"{scenario.source} with " + " ".join(f"--{k} {v}" for k, v in given.items()),
                            p.path, p.message, p.fix) for p in exc.problems]
        raise ScenarioError(problems) from None
    updated.locate(scenario.source, scenario.folder)
    return updated
