"""Cityscapes -> hot-weather HDF5 shards: plan, per-shard tasks, executors, manifest.

Flow: a :class:`~turbsim.recipe.Recipe` and a Cityscapes root make a :class:`Plan` (validated
inputs, cut into shards per split). Each :class:`ShardTask` is self-contained and picklable;
:func:`run_shard` renders it into one HDF5 file published atomically, plus a small JSON sidecar
that records it. Executors: in-process, a local pool of spawned processes, or Dask distributed;
shard selection (``--shard-index I --num-shards N`` or ``--shards 3,7-9``) lets SLURM arrays
share one output folder. The manifest is written once every planned shard is present.

Reproducibility: every sample's randomness comes from
``SeedSequence(root_seed, spawn_key=(split_code, stable_stem_hash(stem), variant))`` alone, so
the arrays are bit-identical whatever the worker count, shard size, order or resumption.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import subprocess
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from turbsim import shards
from turbsim.cityscapes import (
    CityscapesSample,
    SkippedFile,
    discover,
    png_size,
    read_image_rgb,
    read_train_ids,
    stable_stem_hash,
    validate,
)
from turbsim.field import sample_tilt_field
from turbsim.field import set_num_threads as set_field_threads
from turbsim.params import TurbulenceParams
from turbsim.recipe import PHYSICS_KEYS, Range, Recipe
from turbsim.theory import correlation_table
from turbsim.warp import set_num_threads as set_warp_threads
from turbsim.warp import warm_up, warp_image

#: Split codes of the seeding scheme; other split names use crc32(name) + 16.
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
SEEDING_SCHEME = (
    "numpy SeedSequence(root_seed, spawn_key=(split_code, stable_stem_hash(stem), variant)) "
    "spawned into 2 children: [0] draws the physical parameters, [1] the tilt field; "
    "split_code train=0 val=1 test=2 else crc32(split)+16; stable_stem_hash = first 8 bytes "
    "of sha256(stem), big-endian"
)
#: Per-sample parameters stored in every shard (`params/<key>`).
PARAM_KEYS: tuple[str, ...] = (
    *PHYSICS_KEYS,
    "sigma_r_px",
    "sigma_r_px_stored",
    "field_std_row_px",
    "field_std_col_px",
)
RECIPE_FILE = "recipe.json"


class GenerateError(RuntimeError):
    """A user-facing problem of a generate run; the message is one line."""


def split_code(split: str) -> int:
    """Integer code of a split name in the seeding scheme."""
    return SPLIT_CODES.get(split, zlib.crc32(split.encode()) + 16)


def sample_seed_sequence(
    root_seed: int, split: str, stem: str, variant: int
) -> np.random.SeedSequence:
    """The seed of one sample: a function of (root seed, split, Cityscapes stem, variant) only."""
    return np.random.SeedSequence(
        root_seed, spawn_key=(split_code(split), stable_stem_hash(stem), int(variant))
    )


# ------------------------------------------------------------------------------------ plan
@dataclass(frozen=True)
class PlannedSample:
    """One output sample: a source image/label pair and a variant number."""

    split: str
    stem: str
    variant: int
    image_path: str
    label_path: str | None
    label_kind: str | None

    def source(self) -> CityscapesSample:
        return CityscapesSample(
            split=self.split,
            city=self.stem.split("_")[0],
            stem=self.stem,
            image_path=Path(self.image_path),
            label_path=None if self.label_path is None else Path(self.label_path),
            label_kind=self.label_kind,
        )


@dataclass(frozen=True)
class ShardTask:
    """Everything needed to render one shard, picklable for any executor."""

    split: str
    index: int
    global_index: int
    samples: tuple[PlannedSample, ...]
    native_shape: tuple[int, int]
    out_shape: tuple[int, int]


@dataclass
class Plan:
    """The validated inputs of a run cut into shards."""

    recipe: Recipe
    source_root: str
    tasks: list[ShardTask]
    skipped: list[SkippedFile] = field(default_factory=list)
    input_list_hash: str = ""
    label_note: dict[str, str] = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return sum(len(t.samples) for t in self.tasks)

    def estimated_bytes(self) -> int:
        """Rough output size [bytes]: per sample two RGB images at ~0.75 byte/px after gzip,
        labels ~0.03 byte/px, flow 2 x 2 bytes/px at ~0.5 if stored."""
        flow = 2.0 if self.recipe.store_flow else 0.0
        total = 0.0
        for t in self.tasks:
            h, w = t.out_shape
            total += len(t.samples) * h * w * (2 * 3 * 0.75 + 0.03 + flow)
        return int(total)


def make_plan(cityscapes_root: Path, recipe: Recipe, skip_bad: bool = False) -> Plan:
    """Discover and validate the inputs (no image is decoded), then cut each split into shards.

    Raises:
        CityscapesError: a missing/truncated/unreadable input (unless ``skip_bad``).
        GenerateError: images of one split differ in size while the recipe keeps native size.
    """
    found = discover(Path(cityscapes_root), recipe.splits)
    tasks: list[ShardTask] = []
    skipped: list[SkippedFile] = []
    hasher = hashlib.sha256()
    label_note: dict[str, str] = {}
    global_index = 0
    for split in recipe.splits:
        good, bad = validate(found[split], skip_bad=skip_bad)
        skipped += bad
        if not good:
            raise GenerateError(f"{cityscapes_root}: no usable images in split {split!r}")
        if all(s.label_path is None for s in good):
            label_note[split] = "no labels (all 255): Cityscapes test labels are not public"
        sizes = {png_size(s.image_path) for s in good}
        native = sizes.pop()
        if sizes and recipe.size is None:
            raise GenerateError(
                f"{cityscapes_root}: split {split!r} has images of different sizes "
                f"({native} and {sorted(sizes)[0]}); pass --size HxW to store a common size"
            )
        out_shape = recipe.size or native
        planned = [
            PlannedSample(
                split,
                s.stem,
                v,
                str(s.image_path),
                None if s.label_path is None else str(s.label_path),
                s.label_kind,
            )
            for s in good
            for v in range(recipe.variants)
        ]
        for s in good:
            rel_img = os.path.relpath(s.image_path, cityscapes_root)
            rel_lab = "" if s.label_path is None else os.path.relpath(s.label_path, cityscapes_root)
            hasher.update(f"{split}\t{s.stem}\t{rel_img}\t{rel_lab}\n".encode())
        for k in range(math.ceil(len(planned) / recipe.shard_size)):
            chunk = planned[k * recipe.shard_size : (k + 1) * recipe.shard_size]
            tasks.append(ShardTask(split, k, global_index, tuple(chunk), native, out_shape))
            global_index += 1
    return Plan(
        recipe=recipe,
        source_root=str(Path(cityscapes_root).resolve()),
        tasks=tasks,
        skipped=skipped,
        input_list_hash=hasher.hexdigest(),
        label_note=label_note,
    )


def parse_shard_list(spec: str) -> set[int]:
    """``"3,7-9"`` -> {3, 7, 8, 9} (global shard numbers, 0-based)."""
    out: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi < lo or lo < 0:
                    raise ValueError
                out.update(range(lo, hi + 1))
            else:
                value = int(part)
                if value < 0:
                    raise ValueError
                out.add(value)
        except ValueError:
            raise GenerateError(f"--shards: bad item {part!r} (use e.g. 3,7-9)") from None
    if not out:
        raise GenerateError("--shards: empty selection")
    return out


def select_tasks(
    tasks: Sequence[ShardTask],
    shard_index: int | None = None,
    num_shards: int | None = None,
    shard_list: str | None = None,
) -> list[ShardTask]:
    """The shards this run renders: all, ``global % num_shards == shard_index``, or a list."""
    if shard_list is not None:
        if shard_index is not None or num_shards is not None:
            raise GenerateError("--shards cannot be combined with --shard-index/--num-shards")
        wanted = parse_shard_list(shard_list)
        beyond = sorted(i for i in wanted if i >= len(tasks))
        if beyond:
            raise GenerateError(
                f"--shards: shard {beyond[0]} does not exist (the plan has {len(tasks)})"
            )
        return [t for t in tasks if t.global_index in wanted]
    if (shard_index is None) != (num_shards is None):
        raise GenerateError("--shard-index and --num-shards go together")
    if shard_index is None or num_shards is None:
        return list(tasks)
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise GenerateError(f"--shard-index must be in [0, {num_shards}), got {shard_index}")
    return [t for t in tasks if t.global_index % num_shards == shard_index]


# ---------------------------------------------------------------------------- rendering
def sample_field(
    recipe: Recipe, split: str, stem: str, variant: int, native_shape: tuple[int, int]
) -> tuple[np.ndarray, TurbulenceParams]:
    """The exact tilt field [px] (2, H, W) at native size, and the parameters, of one sample.

    A pure function of (recipe, split, stem, variant): previews and audits recompute it.
    """
    params_seq, field_seq = sample_seed_sequence(recipe.seed, split, stem, variant).spawn(2)
    params = recipe.sample_params(np.random.Generator(np.random.PCG64(params_seq)))
    tilt = sample_tilt_field(
        params, native_shape, np.random.Generator(np.random.PCG64(field_seq)), recipe.normalize
    )
    return tilt, params


def resize_field(tilt: np.ndarray, out_shape: tuple[int, int]) -> np.ndarray:
    """Nearest-resize a (2, H, W) field [px] to ``out_shape`` and scale it to the new pixels."""
    h, w = out_shape
    nh, nw = tilt.shape[1:]
    if (h, w) == (nh, nw):
        return tilt
    return np.stack(
        [
            cv2.resize(tilt[0], (w, h), interpolation=cv2.INTER_NEAREST) * (h / nh),
            cv2.resize(tilt[1], (w, h), interpolation=cv2.INTER_NEAREST) * (w / nw),
        ]
    ).astype(np.float32)


def render_sample(
    sample: PlannedSample, recipe: Recipe, out_shape: tuple[int, int]
) -> dict[str, Any]:
    """Decode, distort at native resolution, then resize to ``out_shape`` (H, W) [px].

    Returns a dict with ``distorted``, ``clean`` (H, W, 3) uint8 RGB, ``label`` (H, W) uint8
    trainIds, ``flow`` (2, H, W) float32 [px] (row, col; scaled to the stored size), ``params``.
    """
    src = sample.source()
    clean = read_image_rgb(src.image_path)
    label = read_train_ids(src)
    if label.shape != clean.shape[:2]:
        raise GenerateError(
            f"{src.label_path}: label size {label.shape} != image size {clean.shape[:2]}"
        )
    native = clean.shape[:2]
    tilt, params = sample_field(recipe, sample.split, sample.stem, sample.variant, native)
    distorted = warp_image(clean, tilt, border=recipe.border)
    h, w = out_shape
    if (h, w) != native:
        distorted = cv2.resize(distorted, (w, h), interpolation=cv2.INTER_AREA)
        clean = cv2.resize(clean, (w, h), interpolation=cv2.INTER_AREA)
        label = cv2.resize(label, (w, h), interpolation=cv2.INTER_NEAREST)
        tilt = resize_field(tilt, out_shape)
    std = np.sqrt(
        [np.var(component, dtype=np.float64) for component in tilt]
    )  # field_std_*: the realised sample std of each component [px]
    record = {
        "cn2": params.cn2,
        "path_length_m": params.path_length_m,
        "aperture_m": params.aperture_m,
        "wavelength_m": params.wavelength_m,
        "focal_length_px": params.focal_length_px,
        "height_m": params.height_m,
        "sigma_r_px": params.sigma_r_px,
        "sigma_r_px_stored": params.sigma_r_px * h / native[0],
        "field_std_row_px": float(std[0]),
        "field_std_col_px": float(std[1]),
    }
    return {
        "distorted": np.ascontiguousarray(distorted),
        "clean": np.ascontiguousarray(clean),
        "label": np.ascontiguousarray(label),
        "flow": tilt,
        "params": record,
    }


_configured_threads: int | None = None
_progress_queue: Any = None


def configure_worker(threads: int, progress_queue: Any = None) -> None:
    """Size this process's thread pools (turbsim noise/FFT, Numba, OpenCV) and JIT-warm it."""
    global _configured_threads, _progress_queue
    threads = max(1, int(threads))
    set_field_threads(threads)
    set_warp_threads(threads)
    cv2.setNumThreads(threads)
    if _configured_threads is None:
        warm_up((np.dtype(np.uint8),), (np.dtype(np.float32),))  # what generate uses
    _configured_threads = threads
    _progress_queue = progress_queue


def sidecar_path(root: Path, split: str, index: int) -> Path:
    """The JSON record written next to a published shard."""
    return shards.shard_path(root, split, index).with_suffix(".json")


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def run_shard(
    task: ShardTask, recipe_data: dict[str, Any], out_root: str, skip_bad: bool
) -> dict[str, Any]:
    """Render one shard and publish it (HDF5 via tmp + rename, then its JSON sidecar).

    Returns the sidecar record: the ShardInfo dict plus ``names`` and ``skipped``.
    """
    if _configured_threads is None:
        configure_worker(1)
    recipe = Recipe(recipe_data)
    root = Path(out_root)
    path = shards.shard_path(root, task.split, task.index)
    path.parent.mkdir(parents=True, exist_ok=True)
    skipped: list[dict[str, str]] = []
    names: list[str] = []
    variants: list[int] = []
    h, w = task.out_shape
    from turbsim.cityscapes import CityscapesError

    with (
        shards.ShardWriter(
            path,
            split=task.split,
            shard_index=task.index,
            height=h,
            width=w,
            param_keys=PARAM_KEYS,
            compression=recipe.compression,
            store_flow=recipe.store_flow,
            expected_count=len(task.samples),
        ) as writer,
        ThreadPoolExecutor(1) as renderer,
    ):
        # Render sample k + 1 on a thread while sample k is compressed and written: decoding,
        # noise, FFTs and h5py's compression all release the GIL. Results stay in order and each
        # sample's randomness is its own, so the bytes do not change.
        def render(sample: PlannedSample) -> tuple[dict[str, Any] | None, Exception | None]:
            try:
                return render_sample(sample, recipe, task.out_shape), None
            except CityscapesError as exc:
                return None, exc

        pending = deque()
        samples = iter(task.samples)
        for sample in islice(samples, 2):
            pending.append((sample, renderer.submit(render, sample)))
        while pending:
            sample, future = pending.popleft()
            rendered, error = future.result()
            following = next(samples, None)
            if following is not None:
                pending.append((following, renderer.submit(render, following)))
            if error is not None:
                if not skip_bad:
                    raise error
                skipped.append({"path": sample.image_path, "reason": str(error)})
                continue
            assert rendered is not None
            writer.add(
                name=sample.stem,
                distorted=rendered["distorted"],
                clean=rendered["clean"],
                label=rendered["label"],
                params=rendered["params"],
                variant=sample.variant,
                flow=rendered["flow"] if recipe.store_flow else None,
            )
            names.append(sample.stem)
            variants.append(sample.variant)
            if _progress_queue is not None:
                _progress_queue.put(1)
    info = writer.info
    record = {
        **info.to_dict(),
        "names": names,
        "variants": variants,
        "skipped": skipped,
        "global_index": task.global_index,
    }
    _write_json_atomic(sidecar_path(root, task.split, task.index), record)
    return record


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
    """Create/check OUT: refuse a foreign or different-recipe folder; clean temporaries."""
    if resume and overwrite:
        raise GenerateError("--resume and --overwrite exclude each other")
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
        if not recipe_file.is_file():
            raise GenerateError(
                f"{root}: not empty and not a turbsim output folder; choose an empty --out"
            )
        if not (resume or subset or overwrite):
            raise GenerateError(
                f"{root}: already holds a dataset; use --resume to continue it or --overwrite"
            )
        try:
            previous = json.loads(recipe_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise GenerateError(f"{recipe_file}: unreadable ({exc})") from None
        if previous.get("recipe_hash") != recipe.digest():
            raise GenerateError(
                f"{recipe_file}: the folder was made with another recipe "
                f"({str(previous.get('recipe_hash'))[:12]} != {recipe.digest()[:12]}); "
                "use the same flags, or --overwrite"
            )
    if not subset:  # a subset run must not delete the live temporaries of its siblings
        shards.clean_temporaries(root)
    _write_json_atomic(recipe_file, {"recipe_hash": recipe.digest(), "recipe": recipe.data})


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


# ---------------------------------------------------------------------------- executors
def _default_threads(workers: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(1, workers))


def _run_local(
    tasks: Sequence[ShardTask],
    recipe: Recipe,
    out: Path,
    skip_bad: bool,
    workers: int,
    on_image: Callable[[int], None],
    on_shard: Callable[[dict[str, Any]], None],
) -> None:
    threads = _default_threads(workers)
    # compile the kernel once here, so that spawned workers load it from Numba's disk cache
    # instead of each compiling it (only the first run on a machine pays this)
    warm_up((np.dtype(np.uint8),), (np.dtype(np.float32),))
    if workers <= 1:
        configure_worker(threads)
        global _progress_queue

        class _Direct:
            def put(self, n: int) -> None:
                on_image(n)

        _progress_queue = _Direct()
        try:
            for task in tasks:
                on_shard(run_shard(task, recipe.data, str(out), skip_bad))
        finally:
            _progress_queue = None
        return
    import multiprocessing as mp
    import queue as queue_mod
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ctx = mp.get_context("spawn")
    progress = ctx.Queue()
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=ctx,
        initializer=configure_worker,
        initargs=(threads, progress),
    )
    try:
        pending = {pool.submit(run_shard, t, recipe.data, str(out), skip_bad) for t in tasks}
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            try:
                while True:
                    on_image(progress.get_nowait())
            except queue_mod.Empty:
                pass
            for fut in done:
                on_shard(fut.result())
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _run_dask(
    tasks: Sequence[ShardTask],
    recipe: Recipe,
    out: Path,
    skip_bad: bool,
    scheduler: str,
    workers: int,
    on_shard: Callable[[dict[str, Any]], None],
) -> None:
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise GenerateError(
            "--scheduler needs Dask: pip install 'turbsim-feedbackseg[dask]'"
        ) from None
    cluster = None
    if scheduler == "local-cluster":
        cluster = LocalCluster(
            n_workers=max(1, workers),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
        client = Client(cluster)
    else:
        client = Client(scheduler)
    try:
        futures = [
            client.submit(
                run_shard,
                t,
                recipe.data,
                str(out),
                skip_bad,
                pure=False,
                key=f"turbsim-shard-{t.global_index}-{recipe.digest()[:8]}",
            )
            for t in tasks
        ]
        for fut in as_completed(futures):
            on_shard(fut.result())
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


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
    """Versions of what shapes the bytes of a dataset (for the manifest)."""
    from importlib.metadata import PackageNotFoundError, version

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
    for task in todo:  # temporaries of this run's own shards, left by a killed run
        own = shards.shard_path(out, task.split, task.index)
        for tmp in own.parent.glob(f"{own.name}.*.tmp") if own.parent.is_dir() else []:
            tmp.unlink(missing_ok=True)
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

    if (
        todo
        and not isinstance(plan.recipe.physics["height_m"], Range)
        and not isinstance(plan.recipe.physics["aperture_m"], Range)
    ):
        # rho is fixed: integrate (or load) its correlation table once here, not in each worker
        first = plan.recipe.sample_params(np.random.default_rng(0))
        correlation_table(first.rho, first.wave)
    if todo:
        if scheduler:

            def on_shard_dask(record: dict[str, Any]) -> None:
                on_shard(record)
                on_image(int(record["samples"]) + len(record.get("skipped", [])))

            _run_dask(todo, plan.recipe, out, skip_bad, scheduler, workers, on_shard_dask)
        else:
            _run_local(todo, plan.recipe, out, skip_bad, workers, on_image, on_shard)
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


def describe_plan(plan: Plan, selected: Iterable[ShardTask] | None = None) -> str:
    """Human-readable plan for --dry-run: images, shards, sizes, estimated bytes."""
    tasks = list(plan.tasks if selected is None else selected)
    lines = [f"source: {plan.source_root}"]
    for split in plan.recipe.splits:
        st = [t for t in tasks if t.split == split]
        if not st:
            continue
        n = sum(len(t.samples) for t in st)
        h, w = st[0].out_shape
        nh, nw = st[0].native_shape
        lines.append(
            f"{split}: {n} samples ({n // plan.recipe.variants} images x {plan.recipe.variants} "
            f"variants) in {len(st)} shards; native {nh}x{nw}, stored {h}x{w}"
            + (f"; {plan.label_note[split]}" if split in plan.label_note else "")
        )
    lines.append(f"skipped inputs: {len(plan.skipped)}")
    lines.append(f"estimated output: {plan.estimated_bytes() / 1e9:.2f} GB")
    return "\n".join(lines)
