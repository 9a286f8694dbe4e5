"""Command-line style overrides of a scenario (``--backend``, ``--device``, ``--shards``,
``--ticks``, ``--seed``), and any field by its dotted name (``ribbed sweep --set learning.lr=0.1``,
``NetworkModel(scenario, learning__lr=0.1)``), validated like the file itself.

Switching the executor (``--backend``) keeps only the file's backend keys that the new executor
has: the file's Ray settings do not follow it onto the batched executor; nor does its device onto
the reference executor, which computes on the CPU (so ``--backend reference`` runs any scenario
there, as the built-ins' comments promise).  An option given with it must fit the new executor
(``--backend batched --shards 2`` is refused, naming the option).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from ribbed.errors import Problem, ScenarioError
from ribbed.scenarios.backend import BACKEND_KINDS, backend_fields
from ribbed.scenarios.loader import load_scenario

if TYPE_CHECKING:
    from ribbed.scenarios.schema import Scenario

__all__ = ["OVERRIDES", "apply_fields", "apply_overrides"]

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


def apply_fields(scenario: Scenario, fields: Mapping[str, Any], *, label: str) -> Scenario:
    """A copy of ``scenario`` with each field named by its dotted path set to its value, checked
    again by the schema and its consistency rules.

    A path walks the sections (``learning.lr``, ``run.ticks``, ``task.noise``); a list element is
    named by its index or its name (``populations.hidden.size``, ``projections.in->hidden.init.gain``;
    a projection's name defaults to ``PRE->POST``).  A section the scenario leaves out
    (``coupling``) is created, so its fields can be set too.  ``label`` says who asked (``--set
    learning.lr=0.1``, ``NetworkModel(learning__lr=0.1)``): every error names it with the field
    and the fix.  The rules that need more than the scenario (estimators given from Python) stay
    with :func:`ribbed.scenarios.validation.validate`, which callers run as before."""
    if not fields:
        return scenario
    source = f"{scenario.source} with {label}"
    data = scenario.model_dump()
    for path, value in fields.items():
        _set_field(data, path, value, source)
    try:
        updated = load_scenario(data)
    except ScenarioError as exc:
        raise ScenarioError([Problem(source, p.path, p.message, p.fix) for p in exc.problems]) from None
    return updated.locate(scenario.source, scenario.folder)


def _set_field(data: dict, path: str, value: Any, source: str) -> None:
    parts = path.split(".")
    if not path or not all(parts):
        raise ScenarioError(Problem(source, path, "is not a field name",
                                    "name a field by its sections, joined by dots: learning.lr, run.ticks, "
                                    "populations.hidden.size"))
    target: Any = data
    for depth, part in enumerate(parts):
        where = ".".join(parts[:depth])
        last = depth == len(parts) - 1
        if isinstance(target, list):
            key: Any = _element(target, part, where, source)
        elif isinstance(target, dict):
            key = part
            if not last and target.get(key) is None:
                target[key] = {}  # a section left to its default: the schema judges what is set in it
        else:
            raise ScenarioError(Problem(source, where, "is a value, not a section with fields",
                                        f"set '{where}' itself, or name a field of a section"))
        if last:
            target[key] = value
        else:
            target = target[key]


def _element(items: list, part: str, where: str, source: str) -> int:
    """The index of the element called ``part`` (its name, a projection's PRE->POST, or an index)."""
    names = [item.get("name") or (f"{item['pre']}->{item['post']}" if "pre" in item else None)
             if isinstance(item, dict) else None for item in items]
    if part in names:
        return names.index(part)
    if part.isdigit() and int(part) < len(items):
        return int(part)
    known = ", ".join(str(name) for name in names if name) or "none"
    raise ScenarioError(Problem(source, f"{where}.{part}", f"'{where}' has no element '{part}'",
                                f"name one by its index (0 to {len(items) - 1}) or its name ({known})"))
