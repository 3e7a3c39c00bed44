"""The import rules of the layout (STYLE.md), checked statically with ``ast`` and dynamically.

- turbsim never imports click, feedbackseg or cli (not even lazily inside a function), and torch
  only in turbsim/augment.py (the optional torch front end: ``import turbsim``, every other
  turbsim module and the ``turbsim`` command stay torch-free); h5py only in turbsim/shards/ (not
  its schema), numba only in turbsim/warp.py, matplotlib only in turbsim/viz.py and only inside
  functions (it is an optional dependency).
- feedbackseg imports turbsim only through ``turbsim.shards`` (and the light atomic writer
  ``turbsim._files``) and ``turbsim.augment`` (online turbulence), and never imports cli.
- The physics modules (params, theory, field, warp, blur, choices) never import turbsim.shards.
- No import cycle inside turbsim (function-local imports included); ``import turbsim.shards``
  loads neither numba, scipy, cv2 nor torch.
- Sizes: no module over 600 lines, no function over 100 lines (its docstring aside).
- cli may import anything, but its command modules must not import torch at import time.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("turbsim", "feedbackseg", "cli")
#: The physics modules: they never import the storage layer (turbsim.shards).
PHYSICS_MODULES = frozenset(
    f"turbsim/{name}.py"
    for name in ("params", "theory", "field", "warp", "blur", "choices", "table_cache", "threads")
)
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


def violations(source: str, path: str) -> list[str]:
    """Import-rule violations of one file; ``path`` is repo-relative with forward slashes."""
    path = Path(path).as_posix()
    top = path.split("/")[0]
    problems: list[str] = []

    def flag(imp: Import, why: str) -> None:
        problems.append(f"{path}:{imp.line}: imports {imp.module}: {why}")

    for imp in imports_of(source, path):
        module = imp.module
        if top == "turbsim":
            for banned in ("torch", "click", "feedbackseg", "cli", "turbsim_cli"):
                if banned == "torch" and path == TORCH_MODULE:
                    continue
                if _is(module, banned):
                    flag(imp, f"turbsim must never import {banned}")
            if path in PHYSICS_MODULES and _is(module, "turbsim.shards"):
                flag(imp, "the physics takes its choices from turbsim.choices, not the storage")
            if _is(module, "h5py") and (
                not path.startswith("turbsim/shards/") or path == "turbsim/shards/schema.py"
            ):
                flag(imp, "h5py only in turbsim/shards/")
            if _is(module, "numba") and path != "turbsim/warp.py":
                flag(imp, "numba only in turbsim/warp.py")
            if _is(module, "matplotlib"):
                if path != "turbsim/viz.py":
                    flag(imp, "matplotlib only in turbsim/viz.py")
                elif imp.top_level:
                    flag(imp, "matplotlib is optional: import it inside functions")
        elif top == "feedbackseg":
            # `from turbsim import shards` lists "turbsim" (from_base) and "turbsim.shards".
            via_shards = (
                _is(module, "turbsim.shards")
                or _is(module, "turbsim._files")
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
        ("turbsim/field.py", "import torch\n"),
        ("turbsim/field.py", "import torch.nn as nn\n"),
        ("turbsim/field.py", "def f():\n    import click\n"),
        ("turbsim/field.py", "from feedbackseg.models import erfnet\n"),
        ("turbsim/field.py", "from cli import options\n"),
        ("turbsim/warp.py", "from turbsim.shards.schema import BORDERS\n"),
        ("turbsim/sub/x.py", "from ...cli import options\n"),
        ("turbsim/field.py", "import importlib\nimportlib.import_module('torch')\n"),
        ("turbsim/field.py", "__import__('click')\n"),
        ("turbsim/field.py", "import h5py\n"),
        ("turbsim/field.py", "from numba import njit\n"),
        ("turbsim/field.py", "import matplotlib.pyplot as plt\n"),
        ("turbsim/viz.py", "import matplotlib\n"),
        ("feedbackseg/data.py", "import turbsim\n"),
        ("feedbackseg/data.py", "from turbsim import sample_tilt_field\n"),
        ("feedbackseg/data.py", "from turbsim import *\n"),
        ("feedbackseg/data.py", "from turbsim import shards, field\n"),
        ("feedbackseg/data.py", "from turbsim.field import sample_tilt_field\n"),
        ("feedbackseg/data.py", "from turbsim.recipe import resolve_recipe\n"),
        ("turbsim/folding.py", "import torch\n"),
        ("turbsim/augment.py", "import click\n"),
        ("feedbackseg/data.py", "from cli.options import IMAGE_SIZE\n"),
        ("feedbackseg/data.py", "from turbsim_cli.options import IMAGE_SIZE\n"),
        ("turbsim/field.py", "import turbsim_cli.options\n"),
    ],
)
def test_checker_flags_bad_source(path: str, source: str) -> None:
    assert violations(source, path), f"not flagged: {path}: {source!r}"


@pytest.mark.parametrize(
    ("path", "source"),
    [
        ("turbsim/field.py", "import numpy as np\nimport scipy.fft\nfrom tqdm import tqdm\n"),
        ("turbsim/field.py", "from turbsim.params import TurbulenceParams\nfrom . import theory\n"),
        ("turbsim/shards/writer.py", "import h5py\n"),
        ("turbsim/warp.py", "import numba\nfrom numba import njit, prange\n"),
        ("turbsim/viz.py", "def save():\n    import matplotlib\n"),
        ("feedbackseg/data.py", "import torch\nfrom turbsim.shards import ShardReader\n"),
        ("feedbackseg/data.py", "from turbsim import shards\nimport turbsim.shards as s\n"),
        ("feedbackseg/rundir.py", "from turbsim._files import write_json\n"),
        ("feedbackseg/data.py", "from turbsim.shards.schema import IGNORE_LABEL\n"),
        ("cli/turbsim_cmd.py", "import turbsim\nimport click\nimport torch\n"),
        ("turbsim/augment.py", "import torch\nfrom torch import nn\n"),
        ("feedbackseg/turbulence.py", "from turbsim.augment import RandomTurbulence\n"),
    ],
)
def test_checker_accepts_good_source(path: str, source: str) -> None:
    assert violations(source, path) == []


def test_relative_imports_are_resolved() -> None:
    modules = {i.module for i in imports_of("from ..shards import read\n", "feedbackseg/a/b.py")}
    assert "feedbackseg.shards.read" in modules
    modules = {i.module for i in imports_of("from . import theory\n", "turbsim/__init__.py")}
    assert "turbsim.theory" in modules


# --------------------------------------------------------------------------- the real tree
def test_tree_is_scanned() -> None:
    files = {p.relative_to(REPO).as_posix() for p in _python_files()}
    assert {"turbsim/params.py", "cli/options.py", "feedbackseg/__init__.py"} <= files


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
    assert "turbsim.folding" in names and "turbsim.augment" not in names
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
        ("turbsim", "turbsim.params"),
        ("feedbackseg", "feedbackseg.study"),
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
