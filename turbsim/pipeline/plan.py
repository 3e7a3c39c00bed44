"""The plan of a generate run: validated inputs cut into self-contained, picklable shard tasks.

:func:`make_plan` discovers and validates a Cityscapes tree (no image is decoded) and cuts each
split into :class:`ShardTask` s of ``recipe.shard_size`` samples (any folder of images:
:func:`turbsim.pipeline.image_folder.make_folder_plan`, with the same tasks); :func:`select_tasks`
picks the subset one run renders (all, every N-th, or a list such as ``"3,7-9"``), so that SLURM
arrays share one output folder; :func:`describe_plan` is the dry-run text.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from turbsim.errors import TurbsimError
from turbsim.physics.quantities import field_scale_warning
from turbsim.pipeline.recipe import Recipe
from turbsim.sources.cityscapes import CityscapesSample, SkippedFile, discover, png_size, validate
from turbsim.sources.label_map import LabelMap

#: The largest frame generate renders [px per image, native or stored]: 2**28 = 268,435,456 px
#: (16384 x 16384; 0.8 GB per RGB image before the field, its FFTs and the warp's copies).
#: OpenCV refuses much larger images ("Insufficient memory") after hours of planning.
MAX_FRAME_PIXELS = 2**28

#: The most samples (images x variants, all splits) one plan may hold: 2,000,000. The plan
#: keeps every sample in memory (~170 bytes each, so ~0.35 GB at the limit) and the dataset
#: would be ~8 TB at native Cityscapes size (~4 MB per sample); beyond it, split the images
#: into several datasets. Checked from the counts before the plan is built.
MAX_PLAN_SAMPLES = 2_000_000


class GenerateError(TurbsimError, RuntimeError):
    """A user-facing problem of a generate run; the message is one line.

    Attributes:
        key: the option at fault, in the library's words (``"shard_index"``, ``"num_shards"``,
            ``"shards"``, ``"size"``, ``"resume"``, ``"out"``, ``"scheduler"``,
            ``"variants"``), or None when no single input is at fault. A CLI maps it to its
            flag (e.g. ``--shard-index``).
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class PlannedSample:
    """One output sample: a source image/label pair and a variant number.

    ``stem`` is the stored name and the seed's key (turbsim.seeding). ``label_map`` and
    ``image_shape`` (H, W) [px] are set for samples of an image folder only (see
    :class:`~turbsim.sources.cityscapes.CityscapesSample`).
    """

    split: str
    stem: str
    variant: int
    image_path: str
    label_path: str | None
    label_kind: str | None
    label_map: LabelMap | None = None
    image_shape: tuple[int, int] | None = None

    def source(self) -> CityscapesSample:
        """The sample this output sample is rendered from (read by turbsim.sources.cityscapes)."""
        return CityscapesSample(
            split=self.split,
            city=self.stem.split("_")[0],
            stem=self.stem,
            image_path=Path(self.image_path),
            label_path=None if self.label_path is None else Path(self.label_path),
            label_kind=self.label_kind,  # type: ignore[arg-type]
            label_map=self.label_map,
            image_shape=self.image_shape,
        )


@dataclass(frozen=True)
class ShardTask:
    """Everything needed to render one shard, picklable for any executor.

    ``native_shape`` and ``out_shape`` are (H, W) [px]: the source size and the stored size.
    """

    split: str
    index: int
    global_index: int
    samples: tuple[PlannedSample, ...]
    native_shape: tuple[int, int]
    out_shape: tuple[int, int]


@dataclass
class Plan:
    """The validated inputs of a run cut into shards.

    ``source`` is None for a Cityscapes tree; for an image folder it describes the input (the
    folders, the label map, each image's relative path) and goes into the manifest as is.
    """

    recipe: Recipe
    source_root: str
    tasks: list[ShardTask]
    skipped: list[SkippedFile] = field(default_factory=list)
    input_list_hash: str = ""
    label_note: dict[str, str] = field(default_factory=dict)
    source: dict[str, Any] | None = None

    @property
    def n_samples(self) -> int:
        """Number of output samples over all shards."""
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
        CityscapesError: a missing/truncated/unreadable input or city folder (unless
            ``skip_bad``: then it is left out and listed in ``Plan.skipped``).
        GenerateError: images of one split differ in size while the recipe keeps native size
            (key ``"size"``), or a split has no usable image.
    """
    unreadable: list[SkippedFile] | None = [] if skip_bad else None
    found = discover(Path(cityscapes_root), recipe.splits, unreadable)
    tasks: list[ShardTask] = []
    skipped: list[SkippedFile] = list(unreadable or [])
    hasher = hashlib.sha256()
    label_note: dict[str, str] = {}
    usable: dict[str, list[CityscapesSample]] = {}
    for split in recipe.splits:
        good, bad = validate(found[split], skip_bad=skip_bad)
        skipped += bad
        if not good:
            raise GenerateError(f"{cityscapes_root}: no usable images in split {split!r}")
        usable[split] = good
    check_plan_size(sum(len(good) for good in usable.values()), recipe.variants)
    for split, good in usable.items():
        if all(s.label_path is None for s in good):
            label_note[split] = "no labels (all 255): Cityscapes test labels are not public"
        native = native_size(cityscapes_root, split, {png_size(s.image_path) for s in good}, recipe)
        warn_if_field_large(recipe, native)
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
        tasks += cut_shards(
            split, planned, recipe.shard_size, native, recipe.size or native, len(tasks)
        )
    return Plan(
        recipe=recipe,
        source_root=str(Path(cityscapes_root).resolve()),
        tasks=tasks,
        skipped=skipped,
        input_list_hash=hasher.hexdigest(),
        label_note=label_note,
    )


def native_size(
    root: Path | str, split: str, sizes: set[tuple[int, int]], recipe: Recipe
) -> tuple[int, int]:
    """The (H, W) [px] of a split's images, from the set of their header sizes (emptied).

    When they differ and the recipe sets a stored size, it is the one ``sizes.pop()`` gives (the
    manifest's ``native_sizes`` then names one of them; every image is distorted at its own).

    Raises:
        GenerateError: (key ``"size"``) the images differ in size and the recipe keeps the
            native size.
    """
    native = sizes.pop()
    if sizes and recipe.size is None:
        raise GenerateError(
            f"{root}: split {split!r} has images of different sizes "
            f"({native} and {sorted(sizes)[0]}); set a common stored size (HxW)",
            "size",
        )
    return native


class FieldScaleWarning(UserWarning):
    """The recipe's tilt field is large against the frames (see :func:`warn_if_field_large`)."""


#: Parameter draws (from ``numpy.random.default_rng(0)``) whose median sigma_r is judged.
FIELD_SCALE_DRAWS = 32


def warn_if_field_large(recipe: Recipe, native: tuple[int, int]) -> None:
    """Warn (:class:`FieldScaleWarning`) when the recipe's median sigma_r exceeds
    :data:`turbsim.physics.quantities.LARGE_FIELD_FRACTION` of the width of the frames it distorts.

    Args:
        recipe: the run's recipe (ranges are sampled :data:`FIELD_SCALE_DRAWS` times from a
            fixed generator, so the verdict is reproducible and draws no sample's randomness).
        native: (H, W) [px] of a split's images, at which the fields are rendered.
    """
    rng = np.random.default_rng(0)
    draws = [recipe.sample_params(rng) for _ in range(FIELD_SCALE_DRAWS)]
    message = field_scale_warning(draws, native)
    if message is not None:
        warnings.warn(message, FieldScaleWarning, stacklevel=2)


def check_plan_size(images: int, variants: int) -> None:
    """Refuse a plan of more than :data:`MAX_PLAN_SAMPLES` samples, from its counts alone.

    Raises:
        GenerateError: (key ``"variants"``) naming the counts and the limit.
    """
    samples = images * variants
    if samples > MAX_PLAN_SAMPLES:
        raise GenerateError(
            f"the plan has {images} images x {variants} variants = {samples:.3g} samples, over "
            f"the limit of {MAX_PLAN_SAMPLES} samples per dataset; use fewer variants, or "
            "split the images into several datasets",
            "variants",
        )


def cut_shards(
    split: str,
    planned: list[PlannedSample],
    shard_size: int,
    native: tuple[int, int],
    out_shape: tuple[int, int],
    first_global: int,
) -> list[ShardTask]:
    """Consecutive shards of ``shard_size`` samples, numbered from ``first_global`` overall."""
    return [
        ShardTask(
            split,
            k,
            first_global + k,
            tuple(planned[k * shard_size : (k + 1) * shard_size]),
            native,
            out_shape,
        )
        for k in range(math.ceil(len(planned) / shard_size))
    ]


def parse_shard_list(spec: str) -> set[int]:
    """``"3,7-9"`` -> {3, 7, 8, 9} (global shard numbers, 0-based).

    Raises:
        GenerateError: (key ``"shards"``) a bad item or an empty selection.
    """
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
            raise GenerateError(
                f"shard list: bad item {part!r} (use e.g. 3,7-9)", "shards"
            ) from None
    if not out:
        raise GenerateError("shard list: empty selection", "shards")
    return out


def select_tasks(
    tasks: Sequence[ShardTask],
    shard_index: int | None = None,
    num_shards: int | None = None,
    shard_list: str | None = None,
) -> list[ShardTask]:
    """The shards this run renders: all, ``global % num_shards == shard_index``, or a list.

    Raises:
        GenerateError: a bad or contradictory selection; ``key`` names the option at fault.
    """
    if shard_list is not None:
        if shard_index is not None or num_shards is not None:
            raise GenerateError(
                "a shard list cannot be combined with shard_index/num_shards", "shards"
            )
        wanted = parse_shard_list(shard_list)
        beyond = sorted(i for i in wanted if i >= len(tasks))
        if beyond:
            raise GenerateError(
                f"shard list: shard {beyond[0]} does not exist (the plan has {len(tasks)})",
                "shards",
            )
        return [t for t in tasks if t.global_index in wanted]
    if (shard_index is None) != (num_shards is None):
        raise GenerateError(
            "shard_index and num_shards go together",
            "num_shards" if num_shards is None else "shard_index",
        )
    if shard_index is None or num_shards is None:
        return list(tasks)
    if num_shards < 1:
        raise GenerateError(f"num_shards must be >= 1, got {num_shards}", "num_shards")
    if not 0 <= shard_index < num_shards:
        raise GenerateError(
            f"shard_index must be in [0, {num_shards}), got {shard_index}", "shard_index"
        )
    return [t for t in tasks if t.global_index % num_shards == shard_index]


def frame_size_problem(plan: Plan) -> str | None:
    """Why the plan's frames are too large to render (one line), or None when they are not.

    Both the native size (distorted at full resolution) and the stored size count; the limit
    is :data:`MAX_FRAME_PIXELS`.
    """
    for task in plan.tasks:
        for what, (h, w) in (("stored", task.out_shape), ("native", task.native_shape)):
            if h * w > MAX_FRAME_PIXELS:
                return (
                    f"{task.split}: {what} size {h}x{w} = {h * w:.3g} px per image is over the "
                    f"limit of {MAX_FRAME_PIXELS} px (2**28; {h * w * 3 / 1e9:.3g} GB per RGB "
                    f"image; estimated output {plan.estimated_bytes() / 1e9:.3g} GB); choose a "
                    "smaller stored size"
                )
    return None


def describe_plan(plan: Plan, selected: Iterable[ShardTask] | None = None) -> str:
    """Human-readable plan for a dry run: images, shards, sizes, estimated bytes."""
    tasks = list(plan.tasks if selected is None else selected)
    lines = [f"source: {plan.source_root}"]
    if plan.source is not None:  # an image folder
        label_map = plan.source["label_map"]
        if plan.source.get("label_map_file"):
            label_map = f"{label_map} {plan.source['label_map_file']}"
        lines.append(
            f"labels: {plan.source['labels']} (label map {label_map})"
            if plan.source.get("labels")
            else "labels: none (all 255)"
        )
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
    too_large = frame_size_problem(plan)
    if too_large is not None:
        lines.append(f"warning: a run would refuse this plan: {too_large}")
    return "\n".join(lines)
