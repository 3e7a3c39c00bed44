"""Cityscapes -> hot-weather HDF5 shards: the driver, the output folder, the manifest.

Flow (one way): a :class:`~turbsim.recipe.Recipe` and a Cityscapes root make a
:class:`~turbsim.plan.Plan` (validated inputs cut into self-contained, picklable
:class:`~turbsim.plan.ShardTask` s); :func:`generate` prepares the output folder, keeps shards
already published (resume, subset runs), hands the rest to an executor (turbsim.executors: in
process, a local process pool, or Dask), each task rendered by :func:`turbsim.render.run_shard`
into one HDF5 file plus a JSON sidecar, and writes the manifest once every planned shard is
present. Shard selection (``shard_index``/``num_shards`` or a list such as ``"3,7-9"``) lets
SLURM arrays share one output folder.

Reproducibility: every sample's randomness comes from
``SeedSequence(root_seed, spawn_key=(split_code, stable_stem_hash(stem), variant))`` alone
(turbsim.seeding), so the arrays are bit-identical whatever the worker count, shard size, order
or resumption.

The names of the former single module stay importable from here.
"""

from __future__ import annotations

import json
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from turbsim import _files, shards
from turbsim.executors import run_dask, run_local
from turbsim.plan import (
    GenerateError,
    Plan,
    PlannedSample,
    ShardTask,
    describe_plan,
    make_plan,
    parse_shard_list,
    select_tasks,
)
from turbsim.recipe import Range, Recipe
from turbsim.render import (
    PARAM_KEYS,
    configure_worker,
    render_sample,
    resize_field,
    run_shard,
    sample_field,
    sidecar_path,
)
from turbsim.seeding import SEEDING_SCHEME, SPLIT_CODES, sample_seed_sequence, split_code

__all__ = [
    "PARAM_KEYS",
    "RECIPE_FILE",
    "SEEDING_SCHEME",
    "SPLIT_CODES",
    "GenerateError",
    "Plan",
    "PlannedSample",
    "RunReport",
    "ShardTask",
    "build_manifest",
    "configure_worker",
    "describe_plan",
    "generate",
    "library_versions",
    "make_plan",
    "parse_shard_list",
    "prepare_output",
    "render_sample",
    "resize_field",
    "run_shard",
    "sample_field",
    "sample_seed_sequence",
    "select_tasks",
    "sidecar_path",
    "split_code",
]

#: The resolved recipe and its hash, written first into every output folder.
RECIPE_FILE = "recipe.json"


# ----------------------------------------------------------------------- output folder
def _our_files(root: Path) -> list[Path]:
    out = [root / shards.MANIFEST_NAME, root / RECIPE_FILE]
    for sub in root.iterdir() if root.is_dir() else []:
        if sub.is_dir():
            out += [
                p
                for p in sub.iterdir()
                if shards.SHARD_RE.match(p.name)
                or p.name.startswith("shard-")
                or p.name.endswith(".tmp")
            ]
    return [p for p in out if p.exists()]


def prepare_output(root: Path, recipe: Recipe, resume: bool, overwrite: bool, subset: bool) -> None:
    """Create/check the output folder: refuse a foreign or different-recipe folder; clean
    temporaries; write ``recipe.json``.

    Raises:
        GenerateError: ``key`` ``"resume"`` (resume with overwrite) or ``"out"`` (the folder).
    """
    if resume and overwrite:
        raise GenerateError("resume and overwrite exclude each other", "resume")
    root.mkdir(parents=True, exist_ok=True)
    recipe_file = root / RECIPE_FILE
    non_empty = any(root.iterdir())
    if non_empty and overwrite:
        for p in _our_files(root):
            p.unlink()
        for sub in root.iterdir():
            if sub.is_dir() and not any(sub.iterdir()):
                sub.rmdir()
        non_empty = any(root.iterdir())
    if non_empty:
        _check_previous(root, recipe_file, recipe, resume or subset or overwrite)
    if not subset:  # a subset run must not delete the live temporaries of its siblings
        shards.clean_temporaries(root)
    record = {"recipe_hash": recipe.digest(), "recipe": recipe.data}
    _files.write_json(recipe_file, record, sort_keys=True)


def _check_previous(root: Path, recipe_file: Path, recipe: Recipe, continuing: bool) -> None:
    """A non-empty output folder must be ours, made with ``recipe``, and continued on purpose."""
    if not recipe_file.is_file():
        raise GenerateError(
            f"{root}: not empty and not a turbsim output folder; choose an empty output folder",
            "out",
        )
    if not continuing:
        raise GenerateError(
            f"{root}: already holds a dataset; set resume to continue it or overwrite to "
            "replace it",
            "out",
        )
    try:
        previous = json.loads(recipe_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise GenerateError(f"{recipe_file}: unreadable ({exc})", "out") from None
    if previous.get("recipe_hash") != recipe.digest():
        raise GenerateError(
            f"{recipe_file}: the folder was made with another recipe "
            f"({str(previous.get('recipe_hash'))[:12]} != {recipe.digest()[:12]}); "
            "use the same recipe, or overwrite it",
            "out",
        )


def _published_ok(root: Path, task: ShardTask) -> dict[str, Any] | None:
    """The sidecar record if the shard is published, complete and matches the plan."""
    side = sidecar_path(root, task.split, task.index)
    path = shards.shard_path(root, task.split, task.index)
    if not (side.is_file() and path.is_file()):
        return None
    try:
        record = json.loads(side.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if record.get("bytes") != path.stat().st_size:
        return None
    expected = [
        s.stem
        for s in task.samples
        if s.image_path not in {d["path"] for d in record.get("skipped", [])}
    ]
    if not shards.is_published_shard_valid(path, expected):
        return None
    return record


def _remove_own_temporaries(out: Path, todo: list[ShardTask]) -> None:
    """Temporaries of this run's own shards, left by a killed run."""
    for task in todo:
        own = shards.shard_path(out, task.split, task.index)
        for tmp in own.parent.glob(f"{own.name}.*.tmp") if own.parent.is_dir() else []:
            tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- manifest
def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def library_versions() -> dict[str, str]:
    """Versions of what shapes the bytes of a dataset (for the manifest).

    Python, numpy, scipy, numba and OpenCV from here; h5py and HDF5 from
    :func:`turbsim.shards.library_versions`.
    """
    from importlib.metadata import PackageNotFoundError, version

    import cv2
    import scipy

    try:
        numba_version = version("numba")
    except PackageNotFoundError:  # pragma: no cover - numba is a dependency
        numba_version = "unknown"
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "numba": numba_version,
        "opencv": cv2.__version__,
        **shards.library_versions(),
    }


def build_manifest(plan: Plan, records: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The manifest of a finished dataset (all planned shards present in ``records``)."""
    from turbsim import __version__

    skipped = [{"path": str(s.path), "reason": s.reason} for s in plan.skipped]
    shard_list = []
    for task in plan.tasks:
        rec = records[task.global_index]
        skipped += rec.get("skipped", [])
        shard_list.append(shards.ShardInfo.from_dict(rec).to_dict())
    return {
        "schema_version": shards.MANIFEST_SCHEMA_VERSION,
        "tool": "turbsim",
        "tool_version": __version__,
        "git_commit": _git_commit(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "recipe": plan.recipe.data,
        "recipe_hash": plan.recipe.digest(),
        "root_seed": plan.recipe.seed,
        "seeding": SEEDING_SCHEME,
        "libraries": library_versions(),
        "source_root": plan.source_root,
        "input_list_hash": plan.input_list_hash,
        "labels": plan.label_note,
        "native_sizes": {t.split: list(t.native_shape) for t in plan.tasks},
        "stored_sizes": {t.split: list(t.out_shape) for t in plan.tasks},
        "splits": {
            split: sum(r["samples"] for i, r in records.items() if plan.tasks[i].split == split)
            for split in plan.recipe.splits
        },
        "skipped": skipped,
        "shards": shard_list,
    }


# -------------------------------------------------------------------------------- driver
@dataclass
class RunReport:
    """What a run did."""

    planned_shards: int
    rendered_shards: int
    reused_shards: int
    samples: int
    seconds: float
    manifest_written: bool
    missing_shards: list[int]


def _prepare_correlation_table(recipe: Recipe) -> None:
    """With rho fixed, integrate (or load) its correlation table once here, not per worker."""
    from turbsim.theory import correlation_table

    if isinstance(recipe.physics["height_m"], Range) or isinstance(
        recipe.physics["aperture_m"], Range
    ):
        return
    first = recipe.sample_params(np.random.default_rng(0))
    correlation_table(first.rho, first.wave)


def generate(
    plan: Plan,
    out: Path,
    *,
    workers: int = 1,
    resume: bool = False,
    overwrite: bool = False,
    skip_bad: bool = False,
    shard_index: int | None = None,
    num_shards: int | None = None,
    shard_list: str | None = None,
    scheduler: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> RunReport:
    """Render the selected shards of ``plan`` into ``out`` and write the manifest when complete.

    Args:
        plan: from :func:`make_plan`.
        out: output folder.
        workers: local processes (spawned) or Dask workers for ``scheduler="local-cluster"``.
        resume: keep shards already published and valid; render the rest.
        overwrite: delete a previous dataset's files in ``out`` first.
        skip_bad: record unreadable inputs found while decoding instead of stopping.
        shard_index, num_shards, shard_list: render a subset (SLURM arrays); an existing ``out``
            made with the same recipe is accepted.
        scheduler: a Dask scheduler address or ``"local-cluster"``.
        progress: called with (images done, images total) as images finish.
        log: receives one-line messages.

    Raises:
        GenerateError: a bad selection or output folder; ``key`` names the option at fault.
    """
    t0 = time.perf_counter()
    subset = shard_list is not None or shard_index is not None
    selected = select_tasks(plan.tasks, shard_index, num_shards, shard_list)
    prepare_output(out, plan.recipe, resume, overwrite, subset)
    records: dict[int, dict[str, Any]] = {}
    todo: list[ShardTask] = []
    for task in plan.tasks:
        rec = _published_ok(out, task) if (resume or subset) else None
        if rec is not None:
            records[task.global_index] = rec
        elif task in selected:
            todo.append(task)
    _remove_own_temporaries(out, todo)
    reused = sum(1 for t in selected if t.global_index in records)
    if reused:
        log(f"resume: {reused} shard(s) already published and valid, {len(todo)} to render")
    total = sum(len(t.samples) for t in todo)
    done = 0

    def on_image(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    def on_shard(record: dict[str, Any]) -> None:
        records[int(record["global_index"])] = record

    def on_shard_dask(record: dict[str, Any]) -> None:
        on_shard(record)
        on_image(int(record["samples"]) + len(record.get("skipped", [])))

    if todo:
        _prepare_correlation_table(plan.recipe)
        if scheduler:
            run_dask(todo, plan.recipe, out, skip_bad, scheduler, workers, on_shard_dask)
        else:
            run_local(todo, plan.recipe, out, skip_bad, workers, on_image, on_shard)
    missing = [t.global_index for t in plan.tasks if t.global_index not in records]
    if not missing:
        shards.write_manifest(out, build_manifest(plan, records))
    return RunReport(
        planned_shards=len(plan.tasks),
        rendered_shards=len(todo),
        reused_shards=reused,
        samples=sum(r["samples"] for r in records.values()),
        seconds=time.perf_counter() - t0,
        manifest_written=not missing,
        missing_shards=missing,
    )
