"""Cityscapes (or any image folder) -> hot-weather HDF5 shards: the driver, the manifest.

Flow (one way): a :class:`~turbsim.pipeline.recipe.Recipe` and a Cityscapes root
(:func:`turbsim.pipeline.plan.make_plan`) or an image folder
(:func:`turbsim.pipeline.image_folder.make_folder_plan`) make a
:class:`~turbsim.pipeline.plan.Plan` (validated inputs cut into self-contained, picklable
:class:`~turbsim.pipeline.plan.ShardTask` s); :func:`generate` prepares the output folder
(turbsim.pipeline.outfolder: checked and locked before anything is deleted), keeps shards already
published and intact (resume, subset runs), hands the rest to an executor
(turbsim.pipeline.executors: in process, a local process pool, or Dask), each task rendered by
:func:`turbsim.pipeline.render.run_shard` into one HDF5 file plus a JSON sidecar, and writes the
manifest once every planned shard is present. Shard selection (``shard_index``/``num_shards`` or a
list such as ``"3,7-9"``) lets SLURM arrays share one output folder.

Reproducibility: every sample's randomness comes from
``SeedSequence(root_seed, spawn_key=(split_code, stable_hash(stem), variant))`` alone
(turbsim.seeding), so the arrays are bit-identical whatever the worker count, shard size, order
or resumption.
"""

from __future__ import annotations

import contextlib
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

from turbsim import shards
from turbsim.pipeline.executors import run_dask, run_local
from turbsim.pipeline.outfolder import (
    RECIPE_FILE,
    claim_output,
    clean_stale_temporaries,
    is_present,
    output_lock,
    published_record,
)
from turbsim.pipeline.plan import (
    GenerateError,
    Plan,
    ShardTask,
    frame_size_problem,
    select_tasks,
)
from turbsim.pipeline.recipe import Range, Recipe
from turbsim.seeding import SEEDING_SCHEME
from turbsim.shards.manifest import Manifest, make_manifest

__all__ = ["RunReport", "build_manifest", "generate", "library_versions"]


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


def build_manifest(plan: Plan, records: dict[int, dict[str, Any]]) -> Manifest:
    """The manifest of a finished dataset (all planned shards present in ``records``)."""
    from turbsim import __version__

    skipped = [{"path": str(s.path), "reason": s.reason} for s in plan.skipped]
    shard_list = []
    for task in plan.tasks:
        rec = records[task.global_index]
        skipped += rec.get("skipped", [])
        shard_list.append(shards.ShardInfo.from_dict(rec).to_dict())
    return make_manifest(
        tool="turbsim",
        tool_version=__version__,
        git_commit=_git_commit(),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        recipe=plan.recipe.data,
        recipe_hash=plan.recipe.digest(),
        root_seed=plan.recipe.seed,
        seeding=SEEDING_SCHEME,
        libraries=library_versions(),
        source_root=plan.source_root,
        input_list_hash=plan.input_list_hash,
        labels=plan.label_note,
        native_sizes={t.split: list(t.native_shape) for t in plan.tasks},
        stored_sizes={t.split: list(t.out_shape) for t in plan.tasks},
        splits={
            split: sum(r["samples"] for i, r in records.items() if plan.tasks[i].split == split)
            for split in plan.recipe.splits
        },
        skipped=skipped,
        shards=shard_list,
        **({} if plan.source is None else {"source": plan.source}),
    )


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
    from turbsim.physics.theory import correlation_table

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
        resume: keep shards already published and valid (size and SHA-256 equal to their
            sidecar, complete, the planned names); render the rest.
        overwrite: delete a previous dataset's files in ``out`` first (refused, deleting
            nothing, when ``out`` also holds other files or another process writes in it).
        skip_bad: record unreadable inputs found while decoding instead of stopping.
        shard_index, num_shards, shard_list: render a subset (SLURM arrays); an existing ``out``
            made with the same recipe is accepted, and the tasks may run at the same time: the
            one that completes the set (checked again at its end, under the folder's lock)
            writes the manifest.
        scheduler: a Dask scheduler address or ``"local-cluster"``.
        progress: called with (images done, images total) as images finish.
        log: receives one-line messages.

    The run holds ``out``'s run lock from before it looks at the folder until it returns
    (turbsim.pipeline.outfolder.claim_output): a second start on the same folder is refused at once,
    before it reads or deletes anything, except tasks of shard selections, which share it.

    Raises:
        GenerateError: a bad selection, output folder or frame size (checked before anything is
            written), another run holding ``out`` (key ``"out"``, naming its process id), or a
            sample that ran out of memory; ``key`` names the option at fault.
        OSError: the output folder cannot be created or written (disk full included).
    """
    t0 = time.perf_counter()
    subset = shard_list is not None or shard_index is not None
    selected = select_tasks(plan.tasks, shard_index, num_shards, shard_list)
    too_large = frame_size_problem(plan)
    if too_large is not None:
        raise GenerateError(too_large, "size")
    if resume or subset:
        _check_same_input(out, plan.recipe)
    with claim_output(out, plan.recipe, resume, overwrite, subset):
        if subset:
            clean_stale_temporaries(out, selected)
        records, todo = _kept_and_todo(plan, out, selected, resume or subset, log)
        reused = len(records)
        try:
            _render(plan, out, todo, records, workers, skip_bad, scheduler, progress)
        except BaseException:
            # local executors have stopped their workers: what those left half-written goes
            # (a remote Dask worker's process id means nothing here: its files are left alone)
            if scheduler in (None, "local-cluster"):
                with contextlib.suppress(OSError):
                    clean_stale_temporaries(out, todo)
            raise
        missing = _finish(plan, out, records)
    return RunReport(
        planned_shards=len(plan.tasks),
        rendered_shards=len(todo),
        reused_shards=reused,
        samples=sum(r["samples"] for r in records.values()),
        seconds=time.perf_counter() - t0,
        manifest_written=not missing,
        missing_shards=missing,
    )


def _describe_input(value: Any) -> str:
    """An input record of a recipe in words: ``Cityscapes tree``, ``image folder, label map x``."""
    if not isinstance(value, dict):
        return "a Cityscapes tree"
    label_map = value.get("label_map")
    named = label_map if isinstance(label_map, str) else "from a file"
    return f"an image folder (label map {named})"


def _check_same_input(out: Path, recipe: Recipe) -> None:
    """Refuse, in words, to continue a dataset made from another kind of input or label map.

    The recipe digest tells them apart anyway (turbsim.pipeline.outfolder refuses "another recipe");
    this says what differs. Reads only ``recipe.json``; an unreadable one is left to outfolder.

    Raises:
        GenerateError: (key ``"out"``) naming both inputs.
    """
    try:
        previous = json.loads((out / RECIPE_FILE).read_text())["recipe"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    if not isinstance(previous, dict) or previous.get("input") == recipe.data.get("input"):
        return
    before, now = _describe_input(previous.get("input")), _describe_input(recipe.data.get("input"))
    if before == now:
        now += " with other values"
    raise GenerateError(
        f"{out}: was made from {before}, this run reads {now} (the input conventions are part "
        "of the recipe); use the same --images/--labels/--label-map, or --overwrite",
        "out",
    )


def _kept_and_todo(
    plan: Plan, out: Path, selected: list[ShardTask], keep: bool, log: Callable[[str], None]
) -> tuple[dict[int, dict[str, Any]], list[ShardTask]]:
    """(sidecar records of the selected shards kept, the selected shards to render)."""
    records: dict[int, dict[str, Any]] = {}
    todo: list[ShardTask] = []
    digest = plan.recipe.digest()
    for task in selected:
        rec, why = published_record(out, task, digest) if keep else (None, "")
        if rec is not None:
            records[task.global_index] = rec
        else:
            if why:
                log(f"resume: {why}; rendering it again")
            todo.append(task)
    if records:
        log(f"resume: {len(records)} shard(s) already published and valid, {len(todo)} to render")
    return records, todo


def _render(
    plan: Plan,
    out: Path,
    todo: list[ShardTask],
    records: dict[int, dict[str, Any]],
    workers: int,
    skip_bad: bool,
    scheduler: str | None,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Render ``todo`` with the chosen executor; ``records`` gains each finished shard's."""
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

    if not todo:
        return
    _prepare_correlation_table(plan.recipe)
    if scheduler:
        run_dask(todo, plan.recipe, out, skip_bad, scheduler, workers, on_shard_dask)
    else:
        run_local(todo, plan.recipe, out, skip_bad, workers, on_image, on_shard)


def _finish(plan: Plan, out: Path, records: dict[int, dict[str, Any]]) -> list[int]:
    """Under the folder's lock, look again for the shards other tasks published meanwhile; when
    every planned shard is present and valid, write the manifest (the task that completes the
    set does). ``records`` gains the others' sidecar records.

    Returns:
        The global numbers of the planned shards still missing (empty: manifest written).
    """
    with output_lock(out):
        others = [t for t in plan.tasks if t.global_index not in records]
        if all(is_present(out, t) for t in others):  # cheap test before hashing anything
            for task in others:
                rec, _ = published_record(out, task, plan.recipe.digest())
                if rec is not None:
                    records[task.global_index] = rec
        missing = [t.global_index for t in plan.tasks if t.global_index not in records]
        if not missing:
            shards.write_manifest(out, build_manifest(plan, records))
    return missing
