"""Rendering: one sample's field and images, and one shard task into one published HDF5 file.

:func:`sample_field` is a pure function of (recipe, split, stem, variant) (see turbsim.seeding),
so previews and audits recompute any sample's field. :func:`run_shard` is what every executor
runs: it sizes the process's thread pools, renders a :class:`~turbsim.pipeline.plan.ShardTask` and
publishes the shard and its JSON sidecar. It keeps no state between calls.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from itertools import islice
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from turbsim import shards
from turbsim.physics.blur import blur_image
from turbsim.physics.field import sample_tilt_field
from turbsim.physics.field import set_num_threads as set_field_threads
from turbsim.physics.params import TurbulenceParams
from turbsim.physics.resample import area_resize_field
from turbsim.physics.theory import r0_m, sigma_r_px
from turbsim.physics.warp import set_num_threads as set_warp_threads
from turbsim.physics.warp import warm_up, warp_image
from turbsim.pipeline.plan import GenerateError, PlannedSample, ShardTask
from turbsim.pipeline.recipe import PHYSICS_KEYS, Recipe
from turbsim.seeding import sample_seed_sequence
from turbsim.shards.sidecar import sidecar_record, write_sidecar
from turbsim.sources.cityscapes import CityscapesError, read_image_rgb, read_train_ids

#: Per-sample parameters stored in every shard (`params/<key>`).
PARAM_KEYS: tuple[str, ...] = (
    *PHYSICS_KEYS,
    "sigma_r_px",
    "sigma_r_px_stored",
    "field_std_row_px",
    "field_std_col_px",
)

#: Per-sample parameters added when the recipe blurs: the Fried parameter r0 [m] of the sample.
BLUR_PARAM_KEYS: tuple[str, ...] = ("r0_m",)


def param_keys(recipe: Recipe) -> tuple[str, ...]:
    """The per-sample parameter keys a shard of ``recipe`` stores (``r0_m`` too when blurred)."""
    return PARAM_KEYS if recipe.blur == "none" else (*PARAM_KEYS, *BLUR_PARAM_KEYS)


#: Called with the number of samples just finished (progress reporting).
ImageCallback = Callable[[int], None]


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
    trainIds, ``flow`` (2, H, W) float32 [px] (row, col; scaled to the stored size, nearest or
    area-averaged as ``recipe.flow_resample`` says), ``params``.
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
    if recipe.blur != "none":  # the same atmosphere's blur, at native size (SPEC section 8)
        distorted = blur_image(distorted, params)
    h, w = out_shape
    if (h, w) != native:
        distorted = cv2.resize(distorted, (w, h), interpolation=cv2.INTER_AREA)
        clean = cv2.resize(clean, (w, h), interpolation=cv2.INTER_AREA)
        label = cv2.resize(label, (w, h), interpolation=cv2.INTER_NEAREST)
        tilt = (
            area_resize_field(tilt, out_shape)
            if recipe.flow_resample == "area"
            else resize_field(tilt, out_shape)
        )
    sigma_r = sigma_r_px(params)
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
        "sigma_r_px": sigma_r,
        "sigma_r_px_stored": sigma_r * h / native[0],
        "field_std_row_px": float(std[0]),
        "field_std_col_px": float(std[1]),
    }
    if recipe.blur != "none":
        record["r0_m"] = r0_m(params)
    return {
        "distorted": np.ascontiguousarray(distorted),
        "clean": np.ascontiguousarray(clean),
        "label": np.ascontiguousarray(label),
        "flow": tilt,
        "params": record,
    }


def configure_worker(threads: int) -> None:
    """Size this process's thread pools (turbsim noise/FFT, Numba, OpenCV) and JIT-warm it.

    Cheap after the first call in a process (the kernels load from Numba's cache once); the
    thread counts change nothing in the output.

    Args:
        threads: threads per pool, >= 1 (smaller values are raised to 1).
    """
    threads = max(1, int(threads))
    set_field_threads(threads)
    set_warp_threads(threads)
    cv2.setNumThreads(threads)
    warm_up((np.dtype(np.uint8),), (np.dtype(np.float32),))  # what generate uses


def run_shard(
    task: ShardTask,
    recipe: Recipe,
    out_root: str,
    skip_bad: bool,
    threads: int = 1,
    on_image: ImageCallback | None = None,
) -> dict[str, Any]:
    """Render one shard and publish it (HDF5 via tmp + rename, then its JSON sidecar).

    Args:
        task: the shard to render.
        recipe: the run's recipe (or its resolved dict, as a manifest stores it).
        out_root: the output folder.
        skip_bad: record undecodable inputs in the sidecar instead of raising.
        threads: size of this process's thread pools (see :func:`configure_worker`).
        on_image: called with 1 after each sample written (progress); None: no report.

    Returns:
        The sidecar record: the ShardInfo dict plus ``names``, ``variants``, ``skipped``,
        ``global_index`` and ``recipe_hash`` (the digest of the recipe it was rendered with).
    """
    if isinstance(recipe, dict):
        recipe = Recipe(recipe)
    configure_worker(threads)
    root = Path(out_root)
    path = shards.shard_path(root, task.split, task.index)
    path.parent.mkdir(parents=True, exist_ok=True)
    skipped: list[dict[str, str]] = []
    names: list[str] = []
    variants: list[int] = []
    h, w = task.out_shape
    with (
        shards.ShardWriter(
            path,
            split=task.split,
            shard_index=task.index,
            height=h,
            width=w,
            param_keys=param_keys(recipe),
            compression=recipe.compression,
            store_flow=recipe.store_flow,
            flow_resample=recipe.flow_resample,
            expected_count=len(task.samples),
        ) as writer,
        closing(_rendered(task, recipe)) as results,  # closed (threads joined) before the writer
    ):
        for sample, rendered, error in results:
            if error is not None:
                if not skip_bad or not isinstance(error, CityscapesError):
                    raise error  # running out of memory is no bad input
                skipped.append({"path": sample.image_path, "reason": str(error)})
                continue
            assert rendered is not None
            try:
                writer.add(
                    name=sample.stem,
                    distorted=rendered["distorted"],
                    clean=rendered["clean"],
                    label=rendered["label"],
                    params=rendered["params"],
                    variant=sample.variant,
                    flow=rendered["flow"] if recipe.store_flow else None,
                )
            except MemoryError:
                raise out_of_memory(sample, task) from None
            names.append(sample.stem)
            variants.append(sample.variant)
            if on_image is not None:
                on_image(1)
    record = sidecar_record(
        writer.info.to_dict(), names, variants, skipped, task.global_index, recipe.digest()
    )
    write_sidecar(root, task.split, task.index, record)
    return record


def out_of_memory(sample: PlannedSample, task: ShardTask) -> GenerateError:
    """The one-line error of a sample that ran out of memory: the image, its frame sizes [px]."""
    nh, nw = task.native_shape
    h, w = task.out_shape
    return GenerateError(
        f"{sample.image_path}: out of memory rendering its {nh}x{nw} frame (stored {h}x{w}); "
        "run fewer worker processes (--workers 1) or free memory, then rerun with --resume "
        "(the shards published so far are kept; frames are distorted at their native size, "
        "so a smaller --size does not lower the need)"
    )


def _rendered(
    task: ShardTask, recipe: Recipe
) -> Iterator[tuple[PlannedSample, dict[str, Any] | None, Exception | None]]:
    """Yield (sample, rendered dict or None, CityscapesError or GenerateError or None) in task
    order; a sample that runs out of memory gives :func:`out_of_memory`'s GenerateError.

    Sample k + 1 renders on a thread while sample k is compressed and written: decoding, noise,
    FFTs and h5py's compression all release the GIL. Results stay in order and each sample's
    randomness is its own, so the bytes do not change.
    """

    def render(sample: PlannedSample) -> tuple[dict[str, Any] | None, Exception | None]:
        try:
            return render_sample(sample, recipe, task.out_shape), None
        except CityscapesError as exc:
            return None, exc
        except MemoryError:
            return None, out_of_memory(sample, task)

    with ThreadPoolExecutor(1) as renderer:
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
            yield sample, rendered, error
