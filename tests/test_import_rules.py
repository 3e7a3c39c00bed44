"""The import rules of the layout (STYLE.md), checked statically with ``ast`` and dynamically.

- Rooms. Each package is a few rooms (subpackages, or a module that is a room of its own) and a
  foundation (the modules beside the rooms). A room imports the foundation of its package and
  the rooms :data:`ROOMS` lists for it, nothing else of its package; the foundation imports no
  room. The rooms, each above the ones it may use::

      turbsim      physics (none) <- shards (physics.choices only) <- seeding <- sources
                   <- pipeline <- views; augment (physics, pipeline)
                   foundation: __init__, errors, _files, _aliases
      feedbackseg  models (none), data (none) <- devices (models) <- runs (models, devices)
                   <- evaluation <- training <- study
                   foundation: __init__, config, modes, label_layout, errors, paths, json_values

  Code in the repository (the CLI included) imports every module by its room path; the public
  paths of :data:`turbsim.PUBLIC_MODULES` (``turbsim.field``...) are for users.
- turbsim never imports click, feedbackseg or cli (not even lazily inside a function), and torch
  only in turbsim/augment.py (the optional torch front end: ``import turbsim``, every other
  turbsim module and the ``turbsim`` command stay torch-free); h5py only in turbsim/shards/ (not
  its schema), numba only in turbsim/physics/warp.py, matplotlib only in turbsim/views/viz.py and
  only inside functions (it is an optional dependency).
- feedbackseg imports turbsim only through ``turbsim.shards`` (and the light atomic writer
  ``turbsim._files``, the public-path table ``turbsim._aliases``) and ``turbsim.augment`` (online
  turbulence), and never imports cli.
- No import cycle inside turbsim, feedbackseg or cli (function-local imports included);
  ``import turbsim.shards`` loads neither numba, scipy, cv2 nor torch.
- Sizes: no module over 600 lines, no function over 100 lines (its docstring aside).
- cli may import any room, but its command modules must not import torch at import time.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import turbsim

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("turbsim", "feedbackseg", "cli")
#: The rooms of each package -> the rooms of the same package it may import (a dotted entry
#: names a single module). Every other first-level name of a package is its foundation.
ROOMS: dict[str, dict[str, frozenset[str]]] = {
    "turbsim": {
        "physics": frozenset(),
        "shards": frozenset({"physics.choices"}),
        "seeding": frozenset({"shards"}),
        "sources": frozenset({"shards", "seeding"}),
        "pipeline": frozenset({"physics", "shards", "sources", "seeding"}),
        "views": frozenset({"physics", "shards", "sources", "pipeline"}),
        "augment": frozenset({"physics", "pipeline"}),
    },
    "feedbackseg": {
        "models": frozenset(),
        "data": frozenset(),
        "devices": frozenset({"models"}),
        "runs": frozenset({"models", "devices"}),
        "evaluation": frozenset({"models", "devices", "data", "runs"}),
        "training": frozenset({"models", "devices", "data", "runs", "evaluation"}),
        "study": frozenset({"models", "devices", "data", "runs", "evaluation", "training"}),
    },
}
#: Names a package itself exports (``from turbsim import TurbulenceParams``).
PACKAGE_NAMES: dict[str, frozenset[str]] = {
    "turbsim": frozenset({*turbsim.__all__, "PUBLIC_MODULES"}),
    "feedbackseg": frozenset({"__version__", "PUBLIC_MODULES"}),
}
#: The foundation of each package: the modules beside the rooms (``""`` is the package itself).
FOUNDATION: dict[str, frozenset[str]] = {
    "turbsim": frozenset({"", "errors", "_files", "_aliases"}),
    "feedbackseg": frozenset(
        {"", "config", "modes", "label_layout", "errors", "paths", "json_values"}
    ),
}
#: The one turbsim module that may import torch.
TORCH_MODULE = "turbsim/augment.py"


@dataclass(frozen=True)
class Import:
    """One import statement's target module (dotted, absolute) and where it was found."""

    module: str
    line: int
    top_level: bool  # at module level (runs on import) rather than inside a function
    from_base: bool = False  # the `a` of `from a import b, c` (b, c are listed as a.b, a.c)


def _package_of(path: str) -> str:
    """Dotted package that relative imports in the file at ``path`` (repo-relative) resolve to."""
    parts = Path(path).with_suffix("").parts
    return ".".join(parts[:-1])


def _resolve(module: str | None, level: int, package: str) -> str:
    if level == 0:
        return module or ""
    base = package.split(".") if package else []
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def imports_of(source: str, path: str) -> list[Import]:
    """All modules a source file imports, absolute and dotted.

    ``from a import b`` counts as importing ``a.b`` (b may be a submodule); relative imports are
    resolved against the file's package; ``importlib.import_module("x")`` and ``__import__("x")``
    with a literal string count too.
    """
    tree = ast.parse(source, filename=path)
    package = _package_of(path)
    found: list[Import] = []

    def visit(node: ast.AST, top_level: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend(Import(alias.name, node.lineno, top_level) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module, node.level, package)
            star = any(alias.name == "*" for alias in node.names)
            found.append(Import(base, node.lineno, top_level, from_base=not star))
            found.extend(
                Import(f"{base}.{alias.name}", node.lineno, top_level)
                for alias in node.names
                if alias.name != "*"
            )
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Name) and node.func.id == "__import__")
                or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            )
        ):
            found.append(Import(node.args[0].value, node.lineno, top_level))
        inner = top_level and not isinstance(
            node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
        )
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(tree, True)
    # `if TYPE_CHECKING:` imports never run; they are still listed, which is the strict side.
    return found


def _is(module: str, root: str) -> bool:
    return module == root or module.startswith(root + ".")


def _unit(parts: list[str], package: str) -> str:
    """The room (or foundation module) of ``package`` that a dotted name's ``parts`` fall in."""
    name = parts[1] if len(parts) > 1 else ""
    return name if name in ROOMS[package] or name in FOUNDATION[package] else "?" + name


def room_problem(path: str, imp: Import, package: str) -> str | None:
    """Why importing ``imp`` (a module of ``package``) from the file at ``path`` breaks the
    room rules, or None."""
    target = imp.module.split(".")
    unit = _unit(target, package)
    if unit.startswith("?"):
        if len(target) == 2 and target[1] in PACKAGE_NAMES[package]:
            return None  # `from turbsim import TurbulenceParams`: a name of the package itself
        return f"{imp.module} is not in a room of {package}: import it by its room path"
    here = [part for part in Path(path).with_suffix("").parts if part != "__init__"]
    if here[0] != package:
        return None  # another package or the CLI: any room
    own = _unit(here, package)
    if unit == own:
        return None
    if own in FOUNDATION[package]:
        if unit in FOUNDATION[package]:
            return None
        return f"the foundation of {package} imports no room ({unit})"
    allowed = ROOMS[package][own]
    if unit in FOUNDATION[package] or unit in allowed or ".".join(target[1:3]) in allowed:
        return None
    return f"room {own} may import {sorted(allowed) or 'no other room'} of {package}, not {unit}"


def violations(source: str, path: str) -> list[str]:
    """Import-rule violations of one file; ``path`` is repo-relative with forward slashes."""
    path = Path(path).as_posix()
    top = path.split("/")[0]
    problems: list[str] = []

    def flag(imp: Import, why: str) -> None:
        problems.append(f"{path}:{imp.line}: imports {imp.module}: {why}")

    for imp in imports_of(source, path):
        module = imp.module
        for package in ROOMS:
            if _is(module, package) and (why := room_problem(path, imp, package)):
                flag(imp, why)
        if top == "turbsim":
            for banned in ("torch", "click", "feedbackseg", "cli", "turbsim_cli"):
                if banned == "torch" and path == TORCH_MODULE:
                    continue
                if _is(module, banned):
                    flag(imp, f"turbsim must never import {banned}")
            if _is(module, "h5py") and (
                not path.startswith("turbsim/shards/") or path == "turbsim/shards/schema.py"
            ):
                flag(imp, "h5py only in turbsim/shards/")
            if _is(module, "numba") and path != "turbsim/physics/warp.py":
                flag(imp, "numba only in turbsim/physics/warp.py")
            if _is(module, "matplotlib"):
                if path != "turbsim/views/viz.py":
                    flag(imp, "matplotlib only in turbsim/views/viz.py")
                elif imp.top_level:
                    flag(imp, "matplotlib is optional: import it inside functions")
        elif top == "feedbackseg":
            # `from turbsim import shards` lists "turbsim" (from_base) and "turbsim.shards".
            via_shards = (
                _is(module, "turbsim.shards")
                or _is(module, "turbsim._files")
                or _is(module, "turbsim._aliases")
                or _is(module, "turbsim.augment")
                or (module == "turbsim" and imp.from_base)
            )
            if _is(module, "turbsim") and not via_shards:
                flag(imp, "feedbackseg touches turbsim only via turbsim.shards, _files or augment")
            if _is(module, "cli") or _is(module, "turbsim_cli"):
                flag(imp, "feedbackseg must not import the CLI")
    return problems


def _python_files() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py"))


# ------------------------------------------------------------------------------ self-tests
@pytest.mark.parametrize(
    ("path", "source"),
    [
        ("turbsim/physics/field.py", "import torch\n"),
        ("turbsim/physics/field.py", "import torch.nn as nn\n"),
        ("turbsim/physics/field.py", "def f():\n    import click\n"),
        ("turbsim/physics/field.py", "from feedbackseg.models import erfnet\n"),
        ("turbsim/physics/field.py", "from cli import options\n"),
        ("turbsim/physics/warp.py", "from turbsim.shards.schema import BORDERS\n"),
        ("turbsim/sub/x.py", "from ...cli import options\n"),
        ("turbsim/physics/field.py", "import importlib\nimportlib.import_module('torch')\n"),
        ("turbsim/physics/field.py", "__import__('click')\n"),
        ("turbsim/physics/field.py", "import h5py\n"),
        ("turbsim/physics/field.py", "from numba import njit\n"),
        ("turbsim/physics/field.py", "import matplotlib.pyplot as plt\n"),
        ("turbsim/views/viz.py", "import matplotlib\n"),
        ("feedbackseg/data/dataset.py", "import turbsim\n"),
        ("feedbackseg/data/dataset.py", "from turbsim import sample_tilt_field\n"),
        ("feedbackseg/data/dataset.py", "from turbsim import *\n"),
        ("feedbackseg/data/dataset.py", "from turbsim import shards, field\n"),
        ("feedbackseg/data/dataset.py", "from turbsim.physics.field import sample_tilt_field\n"),
        ("feedbackseg/data/dataset.py", "from turbsim.pipeline.recipe import resolve_recipe\n"),
        ("turbsim/views/folding.py", "import torch\n"),
        ("turbsim/augment.py", "import click\n"),
        ("feedbackseg/data/dataset.py", "from cli.options import IMAGE_SIZE\n"),
        ("feedbackseg/data/dataset.py", "from turbsim_cli.options import IMAGE_SIZE\n"),
        ("turbsim/physics/field.py", "import turbsim_cli.options\n"),
        ("turbsim/physics/field.py", "from turbsim.pipeline.recipe import Recipe\n"),
        ("turbsim/physics/field.py", "from turbsim.theory import sigma_r_px\n"),
        ("turbsim/shards/writer.py", "from turbsim.physics import field\n"),
        ("turbsim/sources/cityscapes.py", "from turbsim.pipeline.plan import Plan\n"),
        ("turbsim/pipeline/render.py", "def f():\n    from turbsim.views import viz\n"),
        ("turbsim/errors.py", "from turbsim.physics.params import TurbulenceParams\n"),
        ("turbsim/augment.py", "from turbsim.views.viz import field_to_rgb\n"),
        ("feedbackseg/models/feedback.py", "from feedbackseg.data.dataset import ShardDataset\n"),
        ("feedbackseg/evaluation/evaluate.py", "from feedbackseg.training.losses import ifl\n"),
        ("feedbackseg/training/train.py", "from feedbackseg.study.runner import run_study\n"),
        ("feedbackseg/config.py", "from feedbackseg.models import ERFNet\n"),
        ("feedbackseg/data/dataset.py", "from feedbackseg.losses import ifl\n"),
        ("cli/fbseg_cmd.py", "from feedbackseg.metrics import ConfusionMatrix\n"),
        ("cli/turbsim_cmd.py", "from turbsim.field import draw_noise\n"),
    ],
)
def test_checker_flags_bad_source(path: str, source: str) -> None:
    assert violations(source, path), f"not flagged: {path}: {source!r}"


@pytest.mark.parametrize(
    ("path", "source"),
    [
        (
            "turbsim/physics/field.py",
            "import numpy as np\nimport scipy.fft\nfrom tqdm import tqdm\n",
        ),
        (
            "turbsim/physics/field.py",
            "from turbsim.physics.params import TurbulenceParams\nfrom . import theory\n",
        ),
        ("turbsim/shards/writer.py", "import h5py\n"),
        ("turbsim/physics/warp.py", "import numba\nfrom numba import njit, prange\n"),
        ("turbsim/views/viz.py", "def save():\n    import matplotlib\n"),
        ("feedbackseg/data/dataset.py", "import torch\nfrom turbsim.shards import ShardReader\n"),
        ("feedbackseg/data/dataset.py", "from turbsim import shards\nimport turbsim.shards as s\n"),
        ("feedbackseg/runs/rundir.py", "from turbsim._files import write_json\n"),
        ("feedbackseg/data/dataset.py", "from turbsim.shards.schema import IGNORE_LABEL\n"),
        ("cli/turbsim_cmd.py", "import turbsim\nimport click\nimport torch\n"),
        ("turbsim/augment.py", "import torch\nfrom torch import nn\n"),
        ("feedbackseg/data/turbulence.py", "from turbsim.augment import RandomTurbulence\n"),
        ("turbsim/shards/schema.py", "from turbsim.physics.choices import WAVES\n"),
        ("turbsim/views/preview.py", "from turbsim.pipeline.render import sample_field\n"),
        ("turbsim/pipeline/plan.py", "from turbsim.sources import cityscapes\n"),
        (
            "turbsim/physics/theory.py",
            "from turbsim.physics import table_cache\nfrom turbsim import errors\n",
        ),
        ("turbsim/__init__.py", "from turbsim import _aliases\n"),
        ("turbsim/pipeline/generate.py", "from turbsim import __version__, shards\n"),
        ("feedbackseg/study/runner.py", "from feedbackseg.training.train import train\n"),
        ("feedbackseg/evaluation/inference.py", "from feedbackseg.runs import checkpoints\n"),
        ("feedbackseg/models/__init__.py", "from feedbackseg.config import MODES\n"),
        ("feedbackseg/__init__.py", "from turbsim import _aliases\n"),
        ("cli/fbseg_cmd.py", "from feedbackseg.evaluation.metrics import ConfusionMatrix\n"),
        ("cli/turbsim_physics.py", "from turbsim import sample_tilt_field\n"),
    ],
)
def test_checker_accepts_good_source(path: str, source: str) -> None:
    assert violations(source, path) == []


def test_relative_imports_are_resolved() -> None:
    modules = {i.module for i in imports_of("from ..shards import read\n", "feedbackseg/a/b.py")}
    assert "feedbackseg.shards.read" in modules
    modules = {i.module for i in imports_of("from . import theory\n", "turbsim/physics/x.py")}
    assert "turbsim.physics.theory" in modules


# --------------------------------------------------------------------------- the real tree
def test_tree_is_scanned() -> None:
    files = {p.relative_to(REPO).as_posix() for p in _python_files()}
    assert {"turbsim/physics/params.py", "cli/options.py", "feedbackseg/__init__.py"} <= files


def test_repository_follows_import_rules() -> None:
    problems = []
    for path in _python_files():
        source = path.read_text(encoding="utf-8")
        problems += violations(source, path.relative_to(REPO).as_posix())
    assert problems == []


def _fresh_interpreter_modules(statement: str) -> set[str]:
    code = f"{statement}\nimport sys\nprint('\\n'.join(sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def _roots(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_importing_turbsim_loads_no_torch_click_or_other_packages() -> None:
    roots = _roots(_fresh_interpreter_modules("import turbsim"))
    assert "turbsim" in roots
    assert roots.isdisjoint({"torch", "click", "feedbackseg", "cli", "turbsim_cli", "matplotlib"})


@pytest.mark.parametrize(
    "module", ["turbsim_cli.turbsim_cmd", "turbsim_cli.fbseg_cmd", "feedbackseg"]
)
def test_command_modules_do_not_import_torch(module: str) -> None:
    roots = _roots(_fresh_interpreter_modules(f"import {module}"))
    assert "torch" not in roots


def test_every_turbsim_module_but_augment_is_torch_free() -> None:
    """What `pip install turbsim-feedbackseg` (no torch) users import, the CLI included."""
    names = sorted(
        _module_name(p)
        for p in (REPO / "turbsim").rglob("*.py")
        if p.relative_to(REPO).as_posix() != TORCH_MODULE
    )
    assert "turbsim.views.folding" in names and "turbsim.augment" not in names
    statement = "; ".join(f"import {n}" for n in [*names, "turbsim_cli.turbsim_cmd"])
    assert "torch" not in _roots(_fresh_interpreter_modules(statement))


def test_importing_the_schema_loads_numpy_only() -> None:
    roots = _roots(_fresh_interpreter_modules("import turbsim.shards.schema"))
    assert roots.isdisjoint({"h5py", "numba", "scipy", "cv2", "torch", "click"})


def test_importing_the_shard_reader_is_light() -> None:
    """What every DataLoader worker does: no numba, scipy, cv2 or torch behind it."""
    roots = _roots(_fresh_interpreter_modules("from turbsim.shards import ShardReader"))
    assert "turbsim" in roots and "h5py" in roots
    assert roots.isdisjoint({"numba", "scipy", "cv2", "torch", "click", "matplotlib"})


# ------------------------------------------------------------------------------ import cycles
#: Repository folder -> the name its package is imported by (pyproject.toml maps cli/).
IMPORT_NAMES = {"turbsim": "turbsim", "feedbackseg": "feedbackseg", "cli": "turbsim_cli"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    parts[0] = IMPORT_NAMES.get(parts[0], parts[0])
    return ".".join(parts)


def import_graph(folder: str) -> dict[str, set[str]]:
    """Edges module -> modules of the package in ``folder`` it imports (anywhere in the file,
    lazily too).

    ``from a import b`` points at ``a.b`` when that is a module of the package, else at ``a``.
    """
    package = IMPORT_NAMES[folder]
    files = {_module_name(p): p for p in sorted((REPO / folder).rglob("*.py"))}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        rel = path.relative_to(REPO).as_posix()
        # relative imports resolve against the import name, not the folder
        rel = "/".join([package, *rel.split("/")[1:]])
        for imp in imports_of(path.read_text(encoding="utf-8"), rel):
            target = imp.module
            if not _is(target, package):
                continue
            while target not in files and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in files and target != name:
                graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first == last), or None (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


@pytest.mark.parametrize(
    ("folder", "module"),
    [
        ("turbsim", "turbsim.physics.params"),
        ("feedbackseg", "feedbackseg.study.runner"),
        ("cli", "turbsim_cli.options"),
    ],
)
def test_no_import_cycle(folder: str, module: str) -> None:
    """Within each package, function-local imports included (a lazy import that closes a cycle
    still ties the two modules together)."""
    graph = import_graph(folder)
    assert module in graph
    assert find_cycle(graph) is None


# -------------------------------------------------------------------------------------- sizes
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 100


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int]]:
    """(name, lines) of every function longer than ``limit`` lines, its docstring not counted."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        lines = node.end_lineno - node.lineno + 1
        first = node.body[0]
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
        ):
            lines -= first.end_lineno - first.lineno + 1
        if lines > limit:
            found.append((node.name, lines))
    return found


def test_size_checker_flags_a_long_function() -> None:
    source = 'def f():\n    """Doc."""\n' + "    x = 1\n" * 101
    assert long_functions(source) == [("f", 102)]
    assert long_functions('def g():\n    """Doc."""\n' + "    x = 1\n" * 98) == []


def test_modules_and_functions_are_small() -> None:
    problems = []
    for path in _python_files():
        rel = path.relative_to(REPO).as_posix()
        source = path.read_text(encoding="utf-8")
        n = source.count("\n")
        if n > MAX_MODULE_LINES:
            problems.append(f"{rel}: {n} lines")
        problems += [f"{rel}: {name}() {k} lines" for name, k in long_functions(source)]
    assert problems == []
