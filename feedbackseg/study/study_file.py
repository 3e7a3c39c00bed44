"""The study file of ``fbseg study``: cells x seeds, parsed and checked, and the run layout.

A study names *cells*; each cell is a training configuration (``mode``, ``loss``, ``input``
and any other :class:`~feedbackseg.config.TrainConfig` key) trained once per seed. The study
file is TOML::

    description = "what this grid is for"
    seeds = [0, 1, 2]                 # optional (default 0, 1, 2; --seeds overrides)
    [defaults]                        # keys shared by every cell
    small = true
    max_steps = 300
    [cells.erfnet-clean]
    mode = "erfnet"
    input = "clean"
    [cells.erfnet]
    mode = "erfnet"

Shipped studies (package data ``feedbackseg/study/studies/*.toml``, given by name): ``paper`` (the
paper's grid, full networks, for GPUs) and ``cpu`` (small networks, sized for 2 CPU cores).
Each run of a study is the run folder :func:`run_dir` (``STUDY/runs/{cell}/seed-{seed}``); the
runner is :mod:`feedbackseg.study.runner`, the report :mod:`feedbackseg.study.report`.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from feedbackseg.config import ConfigError, TrainConfig, resolve_config
from feedbackseg.errors import FbsegError
from feedbackseg.modes import mode_of

__all__ = [
    "CELL_PREFIX",
    "DEFAULT_SEEDS",
    "FORBIDDEN_KEYS",
    "STUDY_SPLIT",
    "Cell",
    "Study",
    "StudyError",
    "load_study",
    "parse_only",
    "parse_seeds",
    "parse_study",
    "run_dir",
    "shipped_studies",
]

#: Seeds of a study file that names none.
DEFAULT_SEEDS = (0, 1, 2)
#: The split every run is validated and evaluated on.
STUDY_SPLIT = "val"
#: Keys a study sets itself: a cell or ``[defaults]`` may not.
FORBIDDEN_KEYS = frozenset({"shards", "out", "seed", "resume", "overwrite", "val_split"})
#: Top-level keys of a study file.
_TOP_KEYS = frozenset({"description", "seeds", "defaults", "cells"})
#: ``pretrained_restorer = "cell:NAME"`` in a cell: R starts from NAME's run of the same seed.
CELL_PREFIX = "cell:"


class StudyError(FbsegError, ValueError):
    """A bad study (file, name, --only, --seeds) or study folder; one-line message.

    Attributes:
        key: the command-line argument at fault ("study", "only", "seeds") or None (the
            study file itself, or the study folder).
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Cell:
    """One training configuration of a study.

    Attributes:
        name: the cell's name (a folder name under ``STUDY/runs``).
        values: its TrainConfig keys (``[defaults]`` merged under the cell's own).
    """

    name: str
    values: dict[str, Any]

    @property
    def mode(self) -> str:
        return str(self.values.get("mode", TrainConfig.mode))

    @property
    def loss(self) -> str:
        return str(self.values.get("loss", TrainConfig.loss))

    @property
    def input(self) -> str:
        return str(self.values.get("input", TrainConfig.input))

    @property
    def restores(self) -> bool:
        """Whether the cell has a restorer R (restore-seg, feedback, restore)."""
        return mode_of(self.mode).restorer

    @property
    def depends_on(self) -> str | None:
        """The cell whose run of the same seed this one starts R from
        (``pretrained_restorer = "cell:NAME"``: that run's best.pt), or None."""
        value = self.values.get("pretrained_restorer")
        if isinstance(value, str) and value.startswith(CELL_PREFIX):
            return value[len(CELL_PREFIX) :]
        return None


@dataclass(frozen=True)
class Study:
    """Cells x seeds, as read from a study file.

    Attributes:
        source: the file (or ``shipped:NAME``) it was read from.
        cells: the cells by name, in file order.
        seeds: the seeds every cell is trained with.
        description: the file's ``description``.
    """

    source: str
    cells: dict[str, Cell]
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    description: str = ""

    def runs(self) -> list[tuple[str, int]]:
        """Every (cell, seed), cells in file order."""
        return [(name, seed) for name in self.cells for seed in self.seeds]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly: source, description, seeds, cells {name: values}."""
        return {
            "source": self.source,
            "description": self.description,
            "seeds": list(self.seeds),
            "cells": {n: json.loads(json.dumps(c.values)) for n, c in self.cells.items()},
        }


# ------------------------------------------------------------------------------ parsing
def shipped_studies() -> list[str]:
    """Names of the studies shipped in ``feedbackseg/study/studies`` (package data)."""
    folder = resources.files("feedbackseg.study") / "studies"
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def _study_text(spec: str | os.PathLike) -> tuple[str, str]:
    """(source, TOML text) of a study file path or shipped name."""
    text = str(spec)
    path = Path(text).expanduser()
    if path.suffix == ".toml" or path.exists() or os.sep in text:
        if not path.is_file():
            raise StudyError(f"{path}: no such study file", key="study")
        try:
            return str(path), path.read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise StudyError(f"{path}: cannot be read ({error})") from None
    names = shipped_studies()
    if text not in names:
        raise StudyError(
            f"{text!r} is neither a study file nor a shipped study ({', '.join(names)})",
            key="study",
        )
    resource = resources.files("feedbackseg.study") / "studies" / f"{text}.toml"
    return f"shipped:{text}", resource.read_text()


def _table_values(source: str, where: str, table: Any) -> dict[str, Any]:
    """The TrainConfig keys of a ``[defaults]`` or cell table (hyphens -> underscores)."""
    if not isinstance(table, dict):
        raise StudyError(f"{source}: {where} must be a table")
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = str(key).replace("-", "_")
        if name in FORBIDDEN_KEYS:
            raise StudyError(f"{source}: {where}: {key!r} is set by the study, not by a cell")
        if name not in TrainConfig.__dataclass_fields__:
            raise StudyError(f"{source}: {where}: unknown key {key!r}")
        out[name] = value
    return out


def _check_seeds(seeds: Any, where: str, key: str | None = None) -> tuple[int, ...]:
    if (
        not isinstance(seeds, list | tuple)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise StudyError(f"{where}: seeds must be distinct integers >= 0, got {seeds!r}", key)
    return tuple(int(s) for s in seeds)


def parse_study(text: str, source: str) -> Study:
    """A :class:`Study` from TOML text; every cell's config is resolved to check it.

    Raises:
        StudyError: bad TOML, an unknown or forbidden key, no cells, bad seeds, or a cell
            whose config is invalid (unknown mode, bad height, ...); one line naming
            ``source`` and the cell.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise StudyError(f"{source}: not valid TOML ({error})") from None
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise StudyError(
            f"{source}: unknown key {unknown[0]!r} (expected {', '.join(sorted(_TOP_KEYS))})"
        )
    seeds = _check_seeds(data.get("seeds", list(DEFAULT_SEEDS)), source)
    defaults = _table_values(source, "[defaults]", data.get("defaults", {}))
    tables = data.get("cells")
    if not isinstance(tables, dict) or not tables:
        raise StudyError(f"{source}: no cells (add [cells.NAME] tables)")
    cells: dict[str, Cell] = {}
    for name, table in tables.items():
        if not name or "/" in name or name.startswith(".") or ":" in name:
            raise StudyError(f"{source}: bad cell name {name!r}")
        values = {**defaults, **_table_values(source, f"[cells.{name}]", table)}
        check = dict(values)
        if Cell(name, values).depends_on is not None:
            check["pretrained_restorer"] = "R.pt"  # the dependency's best.pt, checked below
        try:
            resolve_config("SHARDS", "OUT", values.get("recipe"), None, check)
        except ConfigError as error:
            raise StudyError(f"{source}: [cells.{name}]: {error}") from None
        cells[name] = Cell(name, values)
    for name, cell in cells.items():
        needed = cell.depends_on
        if needed is not None and (
            needed not in cells or not cells[needed].restores or cells[needed].depends_on
        ):
            raise StudyError(
                f"{source}: [cells.{name}]: pretrained_restorer {CELL_PREFIX}{needed} must name "
                "a cell with a restorer that depends on no other"
            )
    return Study(source, cells, seeds, str(data.get("description", "")))


def load_study(spec: str | os.PathLike) -> Study:
    """Read a study: a TOML file path or a shipped name (:func:`shipped_studies`).

    Raises:
        StudyError: an unknown name (key ``study``) or a bad file (:func:`parse_study`).
    """
    source, text = _study_text(spec)
    return parse_study(text, source)


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` -> (0, 1, 2). Raises StudyError (key ``seeds``)."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise StudyError(f"{text!r} is not a comma-separated list of seeds", "seeds") from None
    return _check_seeds(seeds, "--seeds", "seeds")


def parse_only(text: str, study: Study) -> list[tuple[str, int]]:
    """The runs ``--only CELL`` or ``--only CELL:SEED`` selects.

    Raises:
        StudyError: unknown cell or seed (key ``only``).
    """
    name, _, seed_text = text.partition(":")
    if name not in study.cells:
        raise StudyError(f"unknown cell {name!r} (the study has: {', '.join(study.cells)})", "only")
    if not seed_text:
        return [(name, seed) for seed in study.seeds]
    try:
        seed = int(seed_text)
    except ValueError:
        raise StudyError(f"{seed_text!r} is not a seed (CELL:SEED)", "only") from None
    if seed not in study.seeds:
        seeds = ", ".join(map(str, study.seeds))
        raise StudyError(f"seed {seed} is not one of the study's seeds ({seeds})", "only")
    return [(name, seed)]


# ---------------------------------------------------------------------------- layout
def run_dir(study_dir: str | os.PathLike, cell: str, seed: int) -> Path:
    """``STUDY/runs/{cell}/seed-{seed}``."""
    return Path(study_dir) / "runs" / cell / f"seed-{seed}"
