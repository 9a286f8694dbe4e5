"""Layers only look down (docs/architecture.md): no module imports a module of a higher layer
at runtime.

Every module of the installed package is found through pyproject.toml's package-dir mapping,
parsed with :mod:`ast`, and each of its imports (at module level or inside a function) is checked
against the layer table below; imports under ``if TYPE_CHECKING:`` are for type checkers only and
are allowed. The table is the one home of the layer order: docs/architecture.md mirrors it, and a
test checks that it does. Every module must fall under a row, so a new package cannot slip in
without a place.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
PACKAGE = "ribbed"

#: The layers, lowest first. A row names modules and packages; a package covers its sub-modules,
#: except the root package ``ribbed``, which names only its ``__init__`` (the lazy public API).
#: The most specific row wins (``ribbed.scheduler.messages`` is vocabulary, below the scheduler).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("ribbed.errors", "ribbed.seeding", "ribbed.determinism", "ribbed.resources", "ribbed.versions",
                    "ribbed.signals", "ribbed.scheduler.messages")),
    ("scenarios", ("ribbed.scenarios", "ribbed.scenarios.timing")),
    ("couplings and meta-controllers", ("ribbed.coupling", "ribbed.meta")),
    ("environment", ("ribbed.environment",)),
    ("agents", ("ribbed.agents", "ribbed.agents.firing", "ribbed.agents.stdp")),
    ("scheduler", ("ribbed.scheduler", "ribbed.scheduler.batched.timed", "ribbed.scheduler.reference.timed",
                   "ribbed.scheduler.ray.timed", "ribbed.scheduler.plasticity")),
    ("model, log, specialization", ("ribbed.model", "ribbed.log", "ribbed.specialization",
                                    "ribbed.specialization_recorder")),
    ("entry points", ("ribbed.runner", "ribbed.sweeps", "ribbed.cli", "ribbed.dashboard", "ribbed.dashboard_server",
                      "ribbed", "ribbed.run_data", "ribbed.intervals", "ribbed.figures", "ribbed.report",
                      "ribbed.compare")),
]


class Import(NamedTuple):
    """One runtime import of a ``ribbed`` module."""

    target: str
    line: int


class Violation(NamedTuple):
    """A module that imports a module of a higher layer."""

    where: str  # file:line
    importer: str
    target: str
    importer_layer: int
    target_layer: int

    def __str__(self) -> str:
        return (f"{self.where}: {self.importer} (layer {self.importer_layer}, {LAYERS[self.importer_layer][0]}) "
                f"imports {self.target} (layer {self.target_layer}, {LAYERS[self.target_layer][0]}) at runtime; "
                "move the import under `if TYPE_CHECKING:` if it is for a type hint, or move the code to the "
                "layer it belongs to")


# ---------------------------------------------------------------------- finding the modules


def package_dirs(pyproject: Path = PYPROJECT) -> dict[str, Path]:
    """Each installed package and the folder its modules come from (pyproject's package-dir)."""
    config = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]
    mapping = config.get("package-dir", {})
    folders = {}
    for package in config["packages"]:
        if package in mapping:
            folders[package] = pyproject.parent / mapping[package]
            continue
        parent, _, leaf = package.rpartition(".")  # a package without its own row sits in its parent's folder
        folders[package] = folders[parent] / leaf
    return folders


def source_modules(pyproject: Path = PYPROJECT) -> dict[str, Path]:
    """Every module of the installed package, by dotted name, with its source file."""
    modules = {}
    for package, folder in package_dirs(pyproject).items():
        for path in sorted(folder.glob("*.py")):
            modules[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return modules


def undeclared_folders(pyproject: Path = PYPROJECT) -> list[Path]:
    """Folders with Python files under an installed package's folder that pyproject does not
    install (their modules would be missing from the installed package and from this test)."""
    declared = {folder.resolve() for folder in package_dirs(pyproject).values()}
    missing = set()
    for folder in declared:
        for path in folder.rglob("*.py"):
            if "__pycache__" not in path.parts and path.parent.resolve() not in declared:
                missing.add(path.parent)
    return sorted(missing)


# ---------------------------------------------------------------------- reading the imports


def is_type_checking(test: ast.expr) -> bool:
    """``TYPE_CHECKING`` or ``typing.TYPE_CHECKING``."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def runtime_imports(source: str, module: str, known: set[str], is_package: bool = False) -> list[Import]:
    """The ``ribbed`` modules that ``module`` (whose code is ``source``) imports at runtime.

    ``from X import Y`` names the module ``X.Y`` when that is a module, else ``X``; relative
    imports are resolved against ``module``; ``import_module("ribbed.x")`` with a literal name
    counts as an import.  The body of ``if TYPE_CHECKING:`` is skipped (its ``else`` is not).
    """
    package = module if is_package else module.rpartition(".")[0]
    found: list[Import] = []

    def add(name: str, line: int) -> None:
        if name == PACKAGE or name.startswith(PACKAGE + "."):
            found.append(Import(name, line))

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[:len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                add(sub if sub in known else base, node.lineno)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name == "import_module":
                add(node.args[0].value, node.lineno)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return found


# ---------------------------------------------------------------------- the layer rule


def layer_of(module: str) -> int | None:
    """The layer of a module: the most specific row that covers it, or None."""
    best, best_length = None, -1
    for index, (_, names) in enumerate(LAYERS):
        for name in names:
            covers = module == name or (name != PACKAGE and module.startswith(name + "."))
            if covers and len(name) > best_length:
                best, best_length = index, len(name)
    return best


def violations(source: str, module: str, where: str, known: set[str], is_package: bool = False) -> list[Violation]:
    """The runtime imports of ``module`` that reach a higher layer than its own."""
    own = layer_of(module)
    assert own is not None, f"{where}: module {module} has no layer in tests/test_layers.py's LAYERS"
    found = []
    for target, line in runtime_imports(source, module, known, is_package):
        layer = layer_of(target)
        assert layer is not None, f"{where}:{line}: {module} imports {target}, which has no layer"
        if layer > own:
            found.append(Violation(f"{where}:{line}", module, target, own, layer))
    return found


MODULES = source_modules()


def test_the_walker_finds_the_package():
    """The package-dir mapping is read: a sample of modules from every top folder is found."""
    for name in ("ribbed.cli", "ribbed.log.writer", "ribbed.agents.neuron", "ribbed.environment.network",
                 "ribbed.coupling.tree", "ribbed.meta.controllers", "ribbed.scheduler.base",
                 "ribbed.scheduler.reference.executor", "ribbed.scheduler.batched.executor",
                 "ribbed.scheduler.ray.shard", "ribbed.scenarios.schema", "ribbed", "ribbed.scheduler"):
        assert name in MODULES, name
    assert MODULES["ribbed.coupling.tree"] == ROOT / "coupling" / "tree.py"
    assert MODULES["ribbed.scheduler"] == ROOT / "scheduler" / "__init__.py"


def test_every_folder_with_python_files_is_an_installed_package():
    assert undeclared_folders() == [], "add these folders to [tool.setuptools] packages in pyproject.toml"


def test_every_module_has_a_layer():
    missing = sorted(name for name in MODULES if layer_of(name) is None)
    assert missing == [], f"give these modules a layer in tests/test_layers.py's LAYERS and docs/architecture.md: {missing}"


def test_every_row_of_the_table_names_something_real():
    """A renamed or deleted module does not leave a stale row behind."""
    for _, names in LAYERS:
        for name in names:
            assert any(module == name or module.startswith(name + ".") for module in MODULES), name


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_runtime_import_of_a_higher_layer(module):
    path = MODULES[module]
    found = violations(path.read_text(), module, str(path.relative_to(ROOT)), set(MODULES),
                       is_package=path.stem == "__init__")
    assert found == [], "\n".join(str(v) for v in found)


# ---------------------------------------------------------------------- the walker itself

KNOWN = {"ribbed", "ribbed.errors", "ribbed.model", "ribbed.runner", "ribbed.environment",
         "ribbed.environment.network", "ribbed.environment.tasks", "ribbed.agents", "ribbed.agents.guides",
         "ribbed.scheduler", "ribbed.scheduler.base", "ribbed.scheduler.messages", "ribbed.log", "ribbed.log.records"}

SYNTHETIC = '''
from __future__ import annotations
import typing
from typing import TYPE_CHECKING
import numpy as np
from ribbed.errors import Problem
from ribbed.agents.guides import guide_features   # line 7: agents is above environment

if TYPE_CHECKING:
    from ribbed.model import NetworkModel          # a type hint: allowed
else:
    import ribbed.scheduler.base                   # line 12: the else branch runs

if typing.TYPE_CHECKING:
    import ribbed.runner

def build():
    from ribbed import model                      # line 18: `from package import module`
    from importlib import import_module
    return import_module("ribbed.runner")          # line 20

class Holder:
    def method(self):
        from ..scheduler import messages           # relative: ribbed.scheduler.messages, vocabulary
        from . import tasks                         # relative: ribbed.environment.tasks, same layer
'''


def test_the_walker_catches_runtime_imports_of_higher_layers():
    found = violations(SYNTHETIC, "ribbed.environment.network", "synthetic.py", KNOWN)
    assert [(v.where, v.target) for v in found] == [
        ("synthetic.py:7", "ribbed.agents.guides"),
        ("synthetic.py:12", "ribbed.scheduler.base"),
        ("synthetic.py:18", "ribbed.model"),
        ("synthetic.py:20", "ribbed.runner"),
    ]
    message = str(found[0])
    assert "ribbed.environment.network (layer 3, environment)" in message and "(layer 4, agents)" in message


def test_the_walker_reads_imports_as_python_resolves_them():
    imports = runtime_imports(SYNTHETIC, "ribbed.environment.network", KNOWN)
    assert [i.target for i in imports] == ["ribbed.errors", "ribbed.agents.guides", "ribbed.scheduler.base",
                                           "ribbed.model", "ribbed.runner", "ribbed.scheduler.messages",
                                           "ribbed.environment.tasks"]
    # `from ribbed import __version__` is the package itself; a package's own relative import
    # resolves against the package, not its parent.
    assert runtime_imports("from ribbed import __version__", "ribbed.cli", KNOWN) == [Import("ribbed", 1)]
    assert runtime_imports("from .network import x", "ribbed.environment", KNOWN, is_package=True) == \
        [Import("ribbed.environment.network", 1)]


def test_layer_of_takes_the_most_specific_row():
    assert layer_of("ribbed.scheduler.messages") == 0
    assert layer_of("ribbed.scheduler.base") == layer_of("ribbed.scheduler.ray.shard") == 5
    assert layer_of("ribbed") == 7
    assert layer_of("ribbed.something_new") is None  # the root package covers only itself
    assert layer_of("ribbed.log.writer") == layer_of("ribbed.model") == 6
    assert layer_of("ribbed.specialization_recorder") == layer_of("ribbed.specialization") == 6
    assert layer_of("ribbed.specialization_extra") is None


def test_the_architecture_page_mirrors_the_table():
    """docs/architecture.md's table lists the same layers, in the same order, with the same modules."""
    rows = [line for line in ARCHITECTURE.read_text().splitlines() if re.match(r"\|\s*\d+\s*\|", line)]
    documented = []
    for row in rows:
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        documented.append((int(cells[0]), cells[1], tuple(re.findall(r"`(ribbed[\w.]*)`", cells[2]))))
    assert documented == [(i, name, names) for i, (name, names) in enumerate(LAYERS)]


# ---------------------------------------------------------------------- a light CLI


@pytest.mark.parametrize("code", [
    "import ribbed.cli",
    "from ribbed.cli import main\nsys.argv = ['ribbed', '--version']\ntry:\n    main()\nexcept SystemExit as e:\n"
    "    assert e.code in (0, None), e.code",
])
def test_the_cli_starts_without_torch(code):
    """`ribbed --version` (and importing the CLI) does not load torch, the model or the executors,
    nor the dashboard's solara, Mesa's visualization or matplotlib."""
    probe = f"import sys\n{code}\nheavy = sorted(m for m in ('torch', 'sklearn', 'ribbed.model', 'ribbed.scheduler.base', " \
            "'solara', 'mesa.visualization', 'matplotlib', 'ribbed.dashboard') " \
            "if m in sys.modules)\nprint('HEAVY', heavy)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout, result.stdout
