"""Public module paths that outlive a move (standard library only).

The packages are grouped in rooms (``turbsim.physics``, ``feedbackseg.evaluation``, ...), but a
few module paths are public API that code outside this repository imports:
``from turbsim.field import draw_noise``, ``from feedbackseg.losses import cb_ifl``. Each package
``__init__`` hands its table of such paths to :func:`install`; importing a public path then
returns the very module object of its room (``turbsim.field is turbsim.physics.field``), so a
class, a function or a monkeypatch is the same through either name. Nothing is loaded before it is
imported, and code inside the repository imports the room paths only (the import-rules test
checks it).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Mapping
from types import ModuleType

__all__ = ["install"]


class _PublicPaths(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finder and loader of the public paths of one package: ``{public: module of its room}``."""

    def __init__(self, table: Mapping[str, str]) -> None:
        self.table = dict(table)

    def find_spec(
        self, fullname: str, path: object = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.table:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # the default placeholder; exec_module swaps in the real module

    def exec_module(self, module: ModuleType) -> None:
        # The import system returns (and binds on the parent package) what sys.modules holds
        # under the public name once this returns: the room's module itself.
        sys.modules[module.__name__] = importlib.import_module(self.table[module.__name__])


def install(table: Mapping[str, str]) -> None:
    """Make each public dotted path of ``table`` import the module it maps to (idempotent)."""
    for finder in sys.meta_path:
        if isinstance(finder, _PublicPaths) and finder.table == dict(table):
            return
    sys.meta_path.append(_PublicPaths(table))
