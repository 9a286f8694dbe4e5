"""Read a scenario's YAML text into plain data, in time and memory linear in the text's size.

YAML lets a small file describe a huge value: an alias (``*a``) repeats the node its anchor
(``&a``) names, and aliases of aliases multiply, so 420 bytes of eight nested levels of ten
aliases stand for 10^8 values. PyYAML builds the shared node once, but everything that then walks
the value (pydantic's validation, the locator of a duplicate key) walks every repetition. So the
reader measures each node as it is composed, and refuses (a located
:class:`~ribbed.errors.ScenarioError`, with the line of the alias) a file whose aliases add more
than :data:`MAX_ALIAS_NODES` nodes to what is written out, or whose collections nest (aliases
expanded) deeper than :data:`MAX_DEPTH`, or an alias inside the node it names (a recursive
value). What it accepts is at most the file's own nodes plus 100,000, so every later step is
linear in the file's size; the nesting bound also keeps the reader's own recursion far from
Python's limit (a file of 10,000 ``[`` is refused by it, or by libyaml's own bound of 1,000
when libyaml reads ahead).

Also: only plain values are built (text, numbers, booleans, null, lists, mappings, and the
dates SafeLoader reads implicitly): an explicit tag other than ``!!str``, ``!!int``,
``!!float``, ``!!bool``, ``!!null``, ``!!seq`` or ``!!map`` (``!!python/object``, ``!!set``,
``!mine``) is refused as it is composed, so no constructor ever sees it; a key written twice in
one mapping is an error, not a silent overwrite; merge keys (``<<: *defaults``) are read as YAML
defines them (the mapping's own keys win, then the merged mappings in order); exponent floats
(``1e-3``) read as numbers, as in YAML 1.2 and JSON; control characters are refused with their
line; a file is one document.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from typing import Any

import yaml
from yaml.events import AliasEvent, MappingStartEvent, ScalarEvent, SequenceStartEvent

from ribbed.errors import Problem, ScenarioError
from ribbed.scenarios.paths import format_path, shorten

__all__ = ["LOADER", "MAX_ALIAS_NODES", "MAX_DEPTH", "Locator", "read_yaml"]

#: The most nodes (scalars, lists and mappings) the aliases of one file may add to those written
#: out: a scenario that shares a few sections by alias adds tens.
MAX_ALIAS_NODES = 100_000
#: The deepest nesting of lists and mappings, aliases expanded: a scenario nests about six
#: (``projections[0].connectivity.edges[3][1]``).
MAX_DEPTH = 64

_NON_PRINTABLE = yaml.reader.Reader.NON_PRINTABLE
_CORE = "tag:yaml.org,2002:"
_MERGE_TAG = _CORE + "merge"
#: The explicit tags a scalar may carry: the plain types, each on a value that reads as it.
_SCALAR_TAGS = frozenset(_CORE + name for name in ("str", "int", "float", "bool", "null"))
_MERGE = object()  # the merge key '<<' in the duplicate check: never equal to a key the file writes


def _short_tag(tag: str) -> str:
    return shorten(tag.replace(_CORE, "!!"))


class _Refused(Exception):
    """A bound the YAML breaks: what, the fix, and where (a yaml Mark)."""

    def __init__(self, message: str, fix: str, mark: Any):
        super().__init__(message)
        self.message, self.fix, self.mark = message, fix, mark


class _DuplicateKey(yaml.constructor.ConstructorError):
    """A key written twice in one mapping; keeps the second key's node so the error can name
    the field path, not only the line."""

    def __init__(self, mapping: yaml.MappingNode, key_node: yaml.Node, key: Any, first_line: int) -> None:
        super().__init__("while reading a mapping", mapping.start_mark,
                         f"found the key {key!r} a second time (first on line {first_line})", key_node.start_mark)
        self.key_node, self.key, self.first_line = key_node, key, first_line


class _Strict(yaml.composer.Composer, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    """SafeLoader's composer, constructor and resolver, bounding what aliases expand to and how
    deep collections nest (see the module docstring), refusing a key written twice in one
    mapping, and reading merge keys without changing the composed nodes. The parser that feeds
    it events is libyaml's where PyYAML was built with it (:class:`_FastLoader`, about four times
    faster), else PyYAML's own (:class:`_PureLoader`); the bounds are the same."""

    def __init__(self) -> None:
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        self._shape: dict[int, tuple[int, int]] = {}  # id(node) -> (nodes when expanded, nesting depth)
        self._added = 0  # the nodes that the aliases read so far add
        self._open = 0  # the collections open at the node being composed

    def compose_node(self, parent: Any, index: Any) -> yaml.Node:
        if self.check_event(AliasEvent):
            self._measure_alias(self.peek_event())
            return super().compose_node(parent, index)
        event = self.peek_event()
        if event.tag not in (None, "!"):
            self._check_tag(event)
        collection = self.check_event(SequenceStartEvent, MappingStartEvent)
        if collection:
            self._open += 1
            if self._open > MAX_DEPTH:
                raise _Refused(f"the YAML is nested too deeply: lists and mappings more than {MAX_DEPTH} levels deep",
                               "write a scenario of a few levels of sections", self.peek_event().start_mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            if collection:
                self._open -= 1
        self._shape[id(node)] = self._measure(node)
        return node

    def _check_tag(self, event: Any) -> None:
        """An explicit tag is one of the plain types (``!!str``, ``!!int``...), on a value that reads
        as that type; anything else (``!!python/object``, ``!!timestamp``, ``!!set``, ``!mine``) is
        refused before anything is built."""
        tag = event.tag
        if isinstance(event, ScalarEvent) and tag in _SCALAR_TAGS:
            implicit = self.resolve(yaml.ScalarNode, event.value, (True, False))
            if tag in (implicit, _CORE + "str") or (tag == _CORE + "float" and implicit == _CORE + "int"):
                return
            raise _Refused(f"{shorten(repr(event.value))} does not read as the tag '{_short_tag(tag)}' says",
                           "remove the tag, or write a value of that type", event.start_mark)
        if (isinstance(event, SequenceStartEvent) and tag == _CORE + "seq") or \
                (isinstance(event, MappingStartEvent) and tag == _CORE + "map"):
            return
        raise _Refused(f"the tag '{_short_tag(tag)}' is not allowed: a scenario holds plain values only (text, "
                       "numbers, true/false, lists, mappings), and ribbed never builds Python objects from a file",
                       "remove the tag", event.start_mark)

    def _measure_alias(self, event: AliasEvent) -> None:
        target = self.anchors.get(event.anchor)
        if target is None:
            return  # an undefined alias: the composer reports it
        shape = self._shape.get(id(target))
        if shape is None:  # the anchored node is still being composed: the alias is inside it
            raise _Refused(f"the alias *{event.anchor} is inside the node &{event.anchor} names (a value that "
                           "contains itself)", "write the value out instead of the alias", event.start_mark)
        size, depth = shape
        self._added += size
        if self._added > MAX_ALIAS_NODES:
            raise _Refused(f"with the alias *{event.anchor} here, the file's aliases expand to more than "
                           f"{MAX_ALIAS_NODES:,} nodes beyond those written out (aliases of aliases multiply)",
                           "write the values out, or use fewer and smaller aliases", event.start_mark)
        if self._open + depth > MAX_DEPTH:
            raise _Refused(f"the YAML is nested too deeply: with the alias *{event.anchor}, lists and mappings are "
                           f"more than {MAX_DEPTH} levels deep",
                           "write a scenario of a few levels of sections", event.start_mark)

    def _measure(self, node: yaml.Node) -> tuple[int, int]:
        if isinstance(node, yaml.ScalarNode):
            return 1, 0
        children = node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair]
        shapes = [self._shape[id(child)] for child in children]
        return 1 + sum(size for size, _ in shapes), 1 + max((depth for _, depth in shapes), default=0)


class _PureLoader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, _Strict):
    """:class:`_Strict` fed by PyYAML's pure-Python parser."""

    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        _Strict.__init__(self)


def _fast_loader() -> type | None:
    """:class:`_Strict` fed by libyaml's parser (events only: the nodes are composed, bounded and
    built in Python), or None when PyYAML was built without libyaml."""
    try:
        from yaml._yaml import CParser
    except ImportError:
        return None

    class _FastLoader(CParser, _Strict):  # type: ignore[misc, valid-type]
        # CParser composes nodes in C too: these three keep the bounded composer.
        get_node = yaml.composer.Composer.get_node
        get_single_node = yaml.composer.Composer.get_single_node
        check_node = yaml.composer.Composer.check_node

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            _Strict.__init__(self)

    return _FastLoader


def _construct_mapping(loader: _Strict, node: yaml.MappingNode) -> dict:
    """A mapping's dict. Unlike SafeLoader's, it checks every key written twice, and reads merge
    keys without rewriting the nodes (SafeLoader's merge prepends the merged pairs to the node, so
    a mapping merged elsewhere before it is built would look as if its keys were written twice)."""
    first_line: dict[Any, int] = {}
    own: dict[Any, Any] = {}
    merged: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        if key_node.tag == _MERGE_TAG:
            key = _MERGE
        else:
            key = loader.construct_object(key_node)
            if not isinstance(key, Hashable):  # '? [a, b]': refused as invalid YAML, not a TypeError
                raise yaml.constructor.ConstructorError("while reading a mapping", node.start_mark,
                                                        "found a key that is a list or a mapping", key_node.start_mark)
        if key in first_line:
            raise _DuplicateKey(node, key_node, "<<" if key is _MERGE else key, first_line[key] + 1)
        first_line[key] = key_node.start_mark.line
        if key is _MERGE:
            merged = _merged(loader, node, value_node)
        else:
            own[key] = loader.construct_object(value_node)
    return {**merged, **own} if merged else own


def _merged(loader: _Strict, node: yaml.MappingNode, value_node: yaml.Node) -> dict:
    """The keys a merge key brings: of ``<<: *a``, or of ``<<: [*a, *b]`` (the first wins)."""
    sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
    merged: dict[Any, Any] = {}
    for source in sources:
        if not isinstance(source, yaml.MappingNode):
            raise yaml.constructor.ConstructorError(
                "while reading a merge key", node.start_mark,
                "'<<' takes a mapping (<<: *defaults) or a list of mappings (<<: [*a, *b])", source.start_mark)
        for key, value in loader.construct_object(source).items():
            merged.setdefault(key, value)
    return merged


_Strict.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# YAML 1.2 reads 1e-3 as a float, as JSON and the JSON Schema do; PyYAML follows YAML 1.1, which
# needs a dot (1.0e-3) and would read 1e-3 as a string.
_Strict.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


#: The loader :func:`read_yaml` uses: libyaml's parser where there is one.
LOADER: type = _fast_loader() or _PureLoader


def read_yaml(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """The data of the one YAML document in ``text`` and its composed node tree (for
    :class:`Locator`); raises :class:`~ribbed.errors.ScenarioError` located at the line."""
    bad = _NON_PRINTABLE.search(text)  # YAML's own rule, checked here the same for both parsers
    if bad is not None:
        line = text.count("\n", 0, bad.start()) + 1
        raise ScenarioError(Problem(source, "", f"invalid YAML: character {ord(bad.group()):#06x} is not allowed in a "
                                    "YAML file (a control character)", "delete it, or write it escaped inside "
                                    "a double-quoted string", line))
    loader: _Strict | None = None
    root: yaml.Node | None = None
    try:
        loader = LOADER(text)
        root = loader.get_single_node()
        return (loader.construct_document(root) if root is not None else None), root
    except _Refused as exc:
        raise ScenarioError(Problem(source, "", f"{exc.message} (column {exc.mark.column + 1})", exc.fix,
                                    exc.mark.line + 1)) from None
    except _DuplicateKey as exc:
        loc = Locator(root).path_to(exc.key_node) or (str(exc.key),)
        fix = "merge several mappings with one key: '<<: [*a, *b]'" if exc.key == "<<" else "keep only one of the two"
        raise ScenarioError(Problem(source, format_path(loc), f"the key is written twice (first on line "
                                    f"{exc.first_line})", fix, exc.key_node.start_mark.line + 1)) from None
    except yaml.MarkedYAMLError as exc:
        raise ScenarioError(_syntax_problem(exc, source)) from None
    except yaml.YAMLError as exc:
        raise ScenarioError(Problem(source, "", f"invalid YAML: {exc}", "fix the YAML syntax")) from None
    finally:
        if loader is not None:
            loader.dispose()


def _syntax_problem(exc: yaml.MarkedYAMLError, source: str) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else None
    column = f" (column {mark.column + 1})" if mark is not None else ""
    problem = str(exc.problem or exc.context)
    if problem == "exceeded maximum nesting depth":  # libyaml's own bound (1,000), met before ours when it reads ahead
        return Problem(source, "", f"the YAML is nested too deeply: lists and mappings more than {MAX_DEPTH} levels "
                       f"deep{column}", "write a scenario of a few levels of sections", line)
    if problem == "but found another document":
        return Problem(source, "", f"the file holds a second YAML document (a second '---'){column}",
                       "a scenario is one document: delete the second '---' and what follows it, or split the "
                       "file into one scenario per file", line)
    return Problem(source, "", f"invalid YAML: {problem}{column}", "fix the YAML syntax at that line", line)


class Locator:
    """Where nodes of a composed YAML tree are: the field path to a node, the line of a field
    path. Each mapping's keys are indexed once, and each node visited once (an aliased node is
    shared by every alias: walking into it again would repeat the aliases' expansion), so
    locating many fields stays linear in the file's size."""

    def __init__(self, root: yaml.Node | None):
        self.root = root
        self._keys: dict[int, dict[str, tuple[yaml.Node, yaml.Node]]] = {}

    def path_to(self, target: yaml.Node) -> tuple | None:
        """The field path from the root to the mapping key ``target`` (in document order, so a
        key inside an anchored node is found where the anchor is written), or None."""
        if self.root is None:
            return None
        seen: set[int] = set()
        stack: list[tuple[yaml.Node, tuple]] = [(self.root, ())]
        while stack:
            node, loc = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            if isinstance(node, yaml.MappingNode):
                for key, _ in node.value:
                    if key is target:
                        return (*loc, key.value)
                stack.extend((value, (*loc, key.value)) for key, value in reversed(node.value))
            elif isinstance(node, yaml.SequenceNode):
                stack.extend((item, (*loc, i)) for i, item in reversed(list(enumerate(node.value))))
        return None

    def line_of(self, loc: tuple) -> int | None:
        """The 1-based line of the node at the field path ``loc`` (or of its nearest ancestor)."""
        node = self.root
        line = node.start_mark.line + 1 if node is not None else None
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                match = self._index(node).get(str(part))
                if match is None:
                    break
                key, node = match
                line = key.start_mark.line + 1
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                break
        return line

    def _index(self, node: yaml.MappingNode) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        index = self._keys.get(id(node))
        if index is None:
            index = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    index.setdefault(key.value, (key, value))
            self._keys[id(node)] = index
        return index
