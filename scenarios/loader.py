"""Load a scenario from a YAML file, a built-in name, or a mapping, with errors a person can act on.

A file's bytes become text in :mod:`ribbed.scenarios.source_text` (UTF-8, at most 256 KiB), and
the text becomes plain data in :mod:`ribbed.scenarios.yaml_reader` (``yaml.SafeLoader`` only, so
no Python object is ever constructed; aliases and nesting bounded; a key written twice is an
error rather than a silent overwrite).  Pydantic's validation errors are translated here into
:class:`~ribbed.errors.Problem` records that carry the file, the line, the field path
(``projections[1].connectivity.k``) and a fix.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import BaseModel, ValidationError

from ribbed.errors import Problem, ScenarioError
from ribbed.scenarios.paths import format_path, shorten, strip_union_tags
from ribbed.scenarios.schema import Scenario
from ribbed.scenarios.source_text import read_scenario_text
from ribbed.scenarios.yaml_reader import Locator, read_yaml

__all__ = ["builtin_scenarios", "load_scenario", "scenario_to_yaml", "resolve_source", "yaml_value"]

_BUILTIN_PACKAGE = "ribbed.scenarios.builtin"
#: The most problems one error lists: a mistake repeated 40,000 times (an edge list) needs its
#: first few, and placing each one costs a walk of the schema (about 0.1 ms).
MAX_PROBLEMS = 50


# --------------------------------------------------------------------------- error translation


def _problem(error: dict, source: str, locator: Locator) -> Problem:
    loc, owner = strip_union_tags(tuple(error["loc"]), Scenario)
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    path = format_path(loc)
    line = locator.line_of(loc)
    keys = sorted(owner.model_fields) if isinstance(owner, type) and issubclass(owner, BaseModel) else []

    if kind == "extra_forbidden":
        key = shorten(str(loc[-1])) if loc else "?"
        return Problem(source, path, f"unknown key '{key}'",
                       f"remove it, or use one of: {', '.join(keys)}" if keys else "remove it", line)
    if kind == "missing":
        return Problem(source, path, "a required key is missing", f"add '{loc[-1]}: ...'" if loc else "", line)
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        # Located at the tag itself (task.kind), the field to change, whether the section was
        # written out or as the shorthand 'task: mnist'.
        field = str(ctx.get("discriminator", "kind")).strip("'")
        path = format_path((*loc, field))
        if kind == "union_tag_not_found":
            return Problem(source, path, f"the key '{field}' is missing", f"add '{field}: ...'", line)
        return Problem(source, path, f"unknown {field} {ctx.get('tag')!r}",
                       f"use one of: {ctx.get('expected_tags')}", locator.line_of((*loc, field)))
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return Problem(source, path, f"expected a mapping of keys to values, got {_describe(value)}",
                       "write it as 'key: value' lines", line)
    if kind == "scenario":
        return Problem(source, path, error["msg"], ctx.get("fix", ""), line)
    expected = error["msg"]
    expected = expected[0].lower() + expected[1:] if expected else expected
    return Problem(source, path, f"{expected} (got {_describe(value)})", _fix_hint(kind, ctx), line)


def _describe(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return f"a {'mapping' if isinstance(value, dict) else 'list'}"
    if isinstance(value, str) and len(value) > 80:  # a file may write a megabyte on one line
        return f"{value[:60]!r}... (a string of {len(value):,} characters)"
    return shorten(repr(value))


def _fix_hint(kind: str, ctx: Mapping) -> str:
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return "use a number in the allowed range"
    if kind == "literal_error":
        return f"use one of: {ctx.get('expected')}"
    if kind == "finite_number":
        return "use a finite number"
    if kind == "string_pattern_mismatch":  # the only pattern in the schema is that of a name
        return "use letters, digits, '_', '-' and '.', starting with a letter or '_'"
    if kind.startswith(("int_", "float_", "bool_", "string_")):
        return "use a value of that type"
    if kind == "too_short":
        return "add at least one entry"
    if kind == "list_type":
        return "write it as a list, one '- ...' entry per line"
    return ""


def _translate(exc: ValidationError, source: str, root: Any) -> ScenarioError:
    errors = exc.errors(include_url=False)
    locator = Locator(root)  # one for all the errors: it indexes each mapping's keys once
    problems = [_problem(error, source, locator) for error in errors[:MAX_PROBLEMS]]
    if len(errors) > MAX_PROBLEMS:
        problems.append(Problem(source, "", f"... and {len(errors) - MAX_PROBLEMS:,} more problems",
                                "fix the ones above first: the rest are often the same mistake, repeated"))
    return ScenarioError(problems)


# --------------------------------------------------------------------------- public API


def builtin_scenarios() -> dict[str, str]:
    """Names of the built-in scenarios mapped to their one-line descriptions."""
    listing: dict[str, str] = {}
    folder = resources.files(_BUILTIN_PACKAGE)
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            data = yaml.safe_load(entry.read_text(encoding="utf-8"))
            listing[entry.name[: -len(".yaml")]] = str(data.get("description", "")).strip().splitlines()[0]
    return listing


def resolve_source(name_or_path: str | Path) -> tuple[str, str, Path | None]:
    """Return ``(label, yaml_text, folder)`` for a file path or a built-in scenario name."""
    path = Path(name_or_path)
    try:
        exists = path.exists()
    except (OSError, ValueError) as exc:  # a name too long for the file system, or with a NUL in it
        why = getattr(exc, "strerror", None) or exc
        raise ScenarioError(Problem(shorten(str(path)), "", f"is not a usable file name: {why}",
                                    "give the path of a YAML file, or the name of a built-in scenario")) from None
    if exists:  # a file, a folder or a device: source_text reads the first, refuses the others
        return str(path), read_scenario_text(path), path.resolve().parent
    name = str(name_or_path)
    if name in builtin_scenarios():
        entry = resources.files(_BUILTIN_PACKAGE).joinpath(f"{name}.yaml")
        return f"{name} (built-in)", entry.read_text(encoding="utf-8"), None
    choices = ", ".join(builtin_scenarios())
    raise ScenarioError(Problem(name, "", "no such file, and no built-in scenario of that name",
                                f"give the path of a YAML file, or one of the built-ins: {choices}"))


def load_scenario(source: str | Path | Mapping[str, Any] | Scenario) -> Scenario:
    """Load and validate a scenario from a YAML path, a built-in name, a mapping, or a Scenario.

    Raises :class:`~ribbed.errors.ScenarioError` naming the file, line and field of each problem.
    """
    if isinstance(source, Scenario):
        return source
    if isinstance(source, Mapping):
        label, text, folder, data, root = "<mapping>", None, None, dict(source), None
    else:
        label, text, folder = resolve_source(source)
        data, root = read_yaml(text, label)
    if not isinstance(data, dict):
        # An empty file (or one with only comments) reads as None: say so rather than "got None".
        got = "an empty file" if data is None and text is not None else _describe(data)
        raise ScenarioError(Problem(label, "", f"expected a mapping of sections at the top, got {got}",
                                    "start the file with 'name: ...', 'task: ...', 'populations: ...'", 1))
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise _translate(exc, label, root) from None
    scenario.locate(label, folder)
    return scenario


def scenario_to_yaml(scenario: Scenario) -> str:
    """The fully resolved scenario as YAML that stands alone: every default written out, and a
    data file's path and a log key file's path made absolute, so it runs the same from any folder."""
    data = scenario.model_dump(mode="json")
    if data["task"]["kind"] == "npz" and scenario.folder is not None and not Path(data["task"]["path"]).is_absolute():
        data["task"]["path"] = str(scenario.folder / data["task"]["path"])
    key_file = data["log"].get("key_file")
    if key_file and scenario.folder is not None and not Path(key_file).expanduser().is_absolute():
        data["log"]["key_file"] = str(scenario.folder / key_file)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)


def yaml_value(text: str) -> Any:
    """A value written as it would be in a scenario file (``0.01``, ``1e-3``, ``true``, ``tanh``),
    read by the same reader (YAML 1.2 numbers, no tags or aliases beyond its bounds): what
    ``ribbed sweep --set`` values mean.  Raises :class:`~ribbed.errors.ScenarioError` when
    ``text`` is not such a value."""
    return read_yaml(text, "--set")[0]
