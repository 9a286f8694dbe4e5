"""Load a scenario from a YAML file, a built-in name, or a mapping, with errors a person can act on.

YAML is read with ``yaml.SafeLoader`` only (no Python objects are ever constructed), and a
key written twice in one mapping is an error rather than a silent overwrite.  Pydantic's
validation errors are translated into :class:`~ribbed.errors.Problem` records that carry the
file, the line, the field path (``projections[1].connectivity.k``) and a fix.
"""

from __future__ import annotations

import io
import re
from collections.abc import Hashable
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import BaseModel, ValidationError

from ribbed.errors import Problem, ScenarioError
from ribbed.scenarios.paths import format_path, strip_union_tags
from ribbed.scenarios.schema import Scenario

__all__ = ["builtin_scenarios", "load_scenario", "scenario_to_yaml", "resolve_source"]

_BUILTIN_PACKAGE = "ribbed.scenarios.builtin"


# --------------------------------------------------------------------------- YAML reading


class _StrictSafeLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key written twice in one mapping."""


class _DuplicateKey(yaml.constructor.ConstructorError):
    """A key written twice in one mapping; keeps the second key's node so the error can name
    the field path, not only the line."""

    def __init__(self, mapping: yaml.MappingNode, key_node: yaml.Node, key: Any, first_line: int):
        super().__init__("while reading a mapping", mapping.start_mark,
                         f"found the key {key!r} a second time (first on line {first_line})", key_node.start_mark)
        self.key_node, self.key, self.first_line = key_node, key, first_line


def _construct_mapping(loader: _StrictSafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, Hashable):  # '? [a, b]': refused as invalid YAML, not a TypeError
            raise yaml.constructor.ConstructorError("while reading a mapping", node.start_mark,
                                                    "found a key that is a list or a mapping", key_node.start_mark)
        if key in seen:
            raise _DuplicateKey(node, key_node, key, seen[key] + 1)
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictSafeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# YAML 1.2 reads 1e-3 as a float, as JSON and the JSON Schema do; PyYAML follows YAML 1.1, which
# needs a dot (1.0e-3) and would read 1e-3 as a string.
_StrictSafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def _loc_of(node: yaml.Node | None, target: yaml.Node) -> tuple | None:
    """The field path from ``node`` down to the mapping key ``target``, or None if it is not below."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key is target:
                return (key.value,)
            below = _loc_of(value, target)
            if below is not None:
                return (key.value, *below)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            below = _loc_of(item, target)
            if below is not None:
                return (index, *below)
    return None


def _read_yaml(text: str, source: str) -> Any:
    # Composed and constructed in two steps (what yaml.load does) so that a duplicate key can be
    # located in the composed tree and reported at its field path.
    loader: _StrictSafeLoader | None = None
    root: yaml.Node | None = None
    try:
        loader = _StrictSafeLoader(io.StringIO(text))  # the reader refuses control characters here
        root = loader.get_single_node()
        return loader.construct_document(root) if root is not None else None
    except _DuplicateKey as exc:
        loc = _loc_of(root, exc.key_node) or (str(exc.key),)
        raise ScenarioError(Problem(source, format_path(loc),
                                    f"the key is written twice (first on line {exc.first_line})",
                                    "keep only one of the two", exc.key_node.start_mark.line + 1)) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        message = f"invalid YAML: {exc.problem or exc.context}"
        if mark is not None:
            message += f" (column {mark.column + 1})"
        raise ScenarioError(Problem(source, "", message, "fix the YAML syntax at that line", line)) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise ScenarioError(Problem(source, "", f"invalid YAML: character {exc.character:#06x} is not allowed in a "
                                    "YAML file (a control character)", "delete it, or write it escaped inside "
                                    "a double-quoted string", line)) from None
    except yaml.YAMLError as exc:
        raise ScenarioError(Problem(source, "", f"invalid YAML: {exc}", "fix the YAML syntax")) from None
    except RecursionError:
        raise ScenarioError(Problem(source, "", "the YAML is nested too deeply to read",
                                    "write a scenario of a few levels of sections")) from None
    finally:
        if loader is not None:
            loader.dispose()


def _line_of(text: str | None, loc: tuple) -> int | None:
    """The 1-based line of the YAML node at ``loc`` (or of its nearest existing ancestor)."""
    if not text:
        return None
    try:
        node = yaml.compose(io.StringIO(text), Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = [(k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)]
            if not match:
                break
            key, node = match[0]
            line = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


# --------------------------------------------------------------------------- error translation


def _problem(error: dict, source: str, text: str | None) -> Problem:
    loc, owner = strip_union_tags(tuple(error["loc"]), Scenario)
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    path = format_path(loc)
    line = _line_of(text, loc)
    keys = sorted(owner.model_fields) if isinstance(owner, type) and issubclass(owner, BaseModel) else []

    if kind == "extra_forbidden":
        key = loc[-1] if loc else "?"
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
                       f"use one of: {ctx.get('expected_tags')}", _line_of(text, (*loc, field)))
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
    return repr(value)


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


def _translate(exc: ValidationError, source: str, text: str | None) -> ScenarioError:
    return ScenarioError([_problem(error, source, text) for error in exc.errors(include_url=False)])


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
    if path.is_file():
        try:
            return str(path), path.read_text(encoding="utf-8"), path.resolve().parent
        except (OSError, UnicodeDecodeError) as exc:
            raise ScenarioError(Problem(str(path), "", f"cannot read the file: {exc}",
                                        "check the file's permissions and that it is UTF-8 text")) from None
    if path.is_dir():
        raise ScenarioError(Problem(str(path), "", "is a folder, not a scenario file",
                                    "name a .yaml file or a built-in scenario"))
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
        label, text, folder, data = "<mapping>", None, None, dict(source)
    else:
        label, text, folder = resolve_source(source)
        data = _read_yaml(text, label)
    if not isinstance(data, dict):
        # An empty file (or one with only comments) reads as None: say so rather than "got None".
        got = "an empty file" if data is None and text is not None else _describe(data)
        raise ScenarioError(Problem(label, "", f"expected a mapping of sections at the top, got {got}",
                                    "start the file with 'name: ...', 'task: ...', 'populations: ...'", 1))
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise _translate(exc, label, text) from None
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
