"""Any folder of images as the input of ``turbsim generate``: discovery, checks, the plan.

``turbsim generate --images DIR [--labels DIR] [--label-map NAME|FILE]`` reads PNG and JPEG
images (``.png .jpg .jpeg``, any case) found recursively, for data sets other than Cityscapes
(ACDC, BDD100K, KITTI, Mapillary, a folder of photos). Its plan is made of the same
:class:`~turbsim.pipeline.plan.ShardTask` s as :func:`turbsim.pipeline.plan.make_plan` makes for a
Cityscapes tree, so resume, verify, shard selections and the executors work the same.

Rules:

- **Splits**: when DIR has a folder named after every requested split, split ``s`` is read from
  ``DIR/s``. When it has none of them (nor a ``train``, ``val`` or ``test`` folder), DIR is one
  split, and exactly one split must be requested (``--splits NAME``). Anything in between is an
  error naming the folder.
- **Stems**: a sample's stem (its stored name and the key of its seed, turbsim.seeding) is its
  path relative to the split folder without the extension, each ``/`` replaced by
  :data:`STEM_SEPARATOR` (``city/a.jpg`` -> ``city__a``): shards, previews and predictions are
  files named by stem. Two images with one stem (``a.jpg`` and ``a.png``) are an error naming
  both. The manifest's ``source.files`` keeps each stem's relative path.
- **Labels** (optional): the label of ``{split folder}/rel/a.jpg`` is ``{labels}/{split}/rel/a.png``
  (``{labels}/rel/a.png`` for a one-split folder), a single-channel 8- or 16-bit PNG of the
  image's size, mapped to trainIds by a :class:`~turbsim.sources.label_map.LabelMap`. A missing
  label is an error naming it (``--skip-bad``: the image is left out and listed). A split with a
  labels folder but no ``{labels}/test`` reads ``test`` as unlabelled, as for Cityscapes.
  Without a labels folder every label is 255 (ignore) and the manifest's ``labels`` says so.
- **Checks** before any heavy work, reading headers only: every image is a complete PNG (IEND)
  or JPEG (EOI, see turbsim.sources.jpeg), every label a complete grey PNG of its image's size.

The label map and the layout are recorded in the recipe (:meth:`Recipe.with_input`), so a resume
with another map is refused; file and folder names are not (a moved folder still resumes).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from turbsim.pipeline.plan import (
    GenerateError,
    Plan,
    PlannedSample,
    check_plan_size,
    cut_shards,
    native_size,
    warn_if_field_large,
)
from turbsim.pipeline.recipe import Recipe
from turbsim.shards.schema import SPLITS
from turbsim.sources.cityscapes import (
    UNLABELLED_SPLIT,
    CityscapesError,
    CityscapesWarning,
    SkippedFile,
    check_png,
)
from turbsim.sources.jpeg import check_jpeg
from turbsim.sources.label_map import LabelMap, LabelMapError, resolve_label_map

#: File name endings of images (compared in lower case).
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg")
#: The ending of label files.
LABEL_EXTENSION = ".png"
#: Replaces each ``/`` of a relative path in a stem.
STEM_SEPARATOR = "__"
#: ``input.layout`` of the recipe and ``source.layout`` of the manifest.
LAYOUT = "image-folder"
#: The stem rule in words (the manifest's ``source.stem_rule``).
STEM_RULE = (
    "path relative to the split folder without its extension, each '/' replaced by "
    f"{STEM_SEPARATOR!r}"
)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_GRAY = 0
_COLOUR_TYPES = {2: "an RGB", 3: "a palette", 4: "a grey + alpha", 6: "an RGBA"}


def _error(path: Path | str, reason: str) -> CityscapesError:
    return CityscapesError(f"{path}: {reason}", path, reason)


@dataclass(frozen=True)
class FolderImage:
    """One image of an image folder and its label file.

    Attributes:
        split: the split it belongs to.
        relpath: its path relative to the split folder, ``/``-separated, with its extension.
        stem: the stored name (:func:`image_stem` of ``relpath``).
        image_path: the image file.
        label_path: the label file it must have, or None (no labels folder, unlabelled test).
    """

    split: str
    relpath: str
    stem: str
    image_path: Path
    label_path: Path | None


def image_stem(relpath: str) -> str:
    """The stem of an image: ``"city/a.jpg"`` -> ``"city__a"`` (see :data:`STEM_RULE`)."""
    stem, _ = os.path.splitext(relpath)
    return stem.replace("/", STEM_SEPARATOR)


def split_folders(root: Path, splits: Sequence[str]) -> dict[str, Path] | None:
    """The folder of each split (``root/{split}``), or None when ``root`` is one split.

    Raises:
        GenerateError: (key ``"splits"``) some but not all split folders exist, a flat folder
            holds a ``train``/``val``/``test`` folder not asked for, or a flat folder is asked
            for more than one split.
    """
    present = [s for s in splits if (root / s).is_dir()]
    if len(present) == len(splits):
        return {s: root / s for s in splits}
    if present:
        missing = [s for s in splits if s not in present]
        raise GenerateError(
            f"{root}: has {present[0]}/ but no {missing[0]}/ folder; name the splits it holds "
            "with --splits",
            "splits",
        )
    others = [s for s in SPLITS if (root / s).is_dir()]
    if others:
        raise GenerateError(
            f"{root}: has a {others[0]}/ folder but no {splits[0]}/; name the splits it holds "
            "with --splits",
            "splits",
        )
    if len(splits) != 1:
        raise GenerateError(
            f"{root}: has no {'/ or '.join(splits)}/ folder; for a flat folder name its one "
            "split with --splits NAME",
            "splits",
        )
    return None


def find_images(folder: Path, unreadable: list[SkippedFile] | None = None) -> list[str]:
    """Relative paths (``/``-separated) of the images under ``folder``, sorted.

    Images are files whose name ends in one of :data:`IMAGE_EXTENSIONS` (any case); hidden files
    and folders (``.name``) are left out. Symbolic links are followed, each folder once.

    Args:
        folder: the split folder.
        unreadable: None: an unreadable folder is an error. A list: each is appended to it as a
            :class:`SkippedFile` and left out (``--skip-bad``).

    Raises:
        CityscapesError: ``folder`` or (``unreadable`` None) a folder below it cannot be listed.
    """
    if not folder.is_dir():
        raise _error(folder, "image folder missing or not a directory")
    found: list[str] = []
    seen: set[tuple[int, int]] = set()

    def on_error(error: OSError) -> None:
        where = error.filename or folder
        reason = f"unreadable folder ({error.strerror or error}); its images are missing"
        if unreadable is None or Path(where) == folder:
            raise _error(where, reason)
        unreadable.append(SkippedFile(str(where), reason))

    for current, dirs, files in os.walk(folder, onerror=on_error, followlinks=True):
        stat = os.stat(current)
        if (stat.st_dev, stat.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((stat.st_dev, stat.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        base = Path(current).relative_to(folder)
        for name in files:
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                found.append((base / name).as_posix())
    return sorted(found)


def _check_label_folder(labels: Path, image_folders: Sequence[Path]) -> None:
    """The labels folder exists and lies in none of the folders searched for images."""
    if not labels.is_dir():
        raise _error(labels, "labels folder missing or not a directory")
    for folder in image_folders:
        if labels.resolve().is_relative_to(folder.resolve()):
            raise _error(
                labels,
                f"the labels folder is inside the image folder {folder}, whose PNGs would be "
                "read as images; keep the labels in a folder of their own",
            )


def _split_images(
    split: str,
    folder: Path,
    label_folder: Path | None,
    unreadable: list[SkippedFile] | None,
) -> list[FolderImage]:
    """The images of one split, each with its label path; stems checked for collisions."""
    by_stem: dict[str, str] = {}
    images = []
    for relpath in find_images(folder, unreadable):
        stem = image_stem(relpath)
        try:
            stem.encode("utf-8")
        except UnicodeEncodeError:
            raise _error(folder / relpath, "file name is not valid UTF-8") from None
        if stem in by_stem:
            raise _error(
                folder / relpath,
                f"has the stem {stem!r} of {folder / by_stem[stem]} (stems name the stored "
                "samples); rename one of them",
            )
        by_stem[stem] = relpath
        label = None
        if label_folder is not None:
            label = label_folder / (os.path.splitext(relpath)[0] + LABEL_EXTENSION)
        images.append(FolderImage(split, relpath, stem, folder / relpath, label))
    if not images:
        raise _error(folder, f"no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
    return images


def discover_folder(
    images: Path | str,
    splits: Sequence[str],
    labels: Path | str | None = None,
    unreadable: list[SkippedFile] | None = None,
) -> tuple[dict[str, list[FolderImage]], bool, dict[str, str]]:
    """Find the images of each split and the label each must have; nothing is opened.

    Args:
        images: the images folder (split folders inside, or one split).
        splits: the requested split names.
        labels: the labels folder, laid out as ``images``; None: no labels.
        unreadable: see :func:`find_images`.

    Returns:
        (split -> its images sorted by relative path, whether ``images`` has split folders,
        split -> why it has no labels, for the splits read as all 255).

    Raises:
        GenerateError: see :func:`split_folders`.
        CityscapesError: a folder missing or unreadable, a split without images, two images
            with one stem, or the labels folder inside the images folder.
    """
    root = Path(images)
    if not root.is_dir():
        raise _error(root, "images folder missing or not a directory")
    if isinstance(splits, str):
        raise TypeError(f"splits must be a sequence of names, not the string {splits!r}")
    folders = split_folders(root, splits)
    label_root = None if labels is None else Path(labels)
    if label_root is not None:
        _check_label_folder(label_root, [root] if folders is None else list(folders.values()))
    found: dict[str, list[FolderImage]] = {}
    notes: dict[str, str] = {}
    for split in splits:
        folder = root if folders is None else folders[split]
        label_folder = label_root if folders is None or label_root is None else label_root / split
        if label_root is None:
            notes[split] = "no labels (all 255): no labels folder was given"
        elif not label_folder.is_dir():
            if split != UNLABELLED_SPLIT or folders is None:
                raise _error(label_folder, f"label folder of split {split!r} missing")
            notes[split] = f"no labels (all 255): {label_folder} does not exist"
            warnings.warn(
                f"{label_folder}: no label folder for the test split; its labels read as all "
                "255 (ignore)",
                CityscapesWarning,
                stacklevel=2,
            )
            label_folder = None
        found[split] = _split_images(split, folder, label_folder, unreadable)
    return found, folders is not None, notes


def _check_image(path: Path) -> tuple[int, int]:
    """(H, W) [px] of a complete PNG or JPEG (told apart by content, not by name)."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(len(_PNG_SIGNATURE))
    except FileNotFoundError:
        raise _error(path, "missing") from None
    except OSError as error:
        raise _error(path, f"unreadable ({error.strerror or error})") from None
    if head.startswith(b"\xff\xd8"):
        header = check_jpeg(path)
        return header.height, header.width
    if head and not _PNG_SIGNATURE.startswith(head):
        raise _error(path, "not a PNG or JPEG file")
    png = check_png(path)
    return png.height, png.width


def _check_label(path: Path, image: FolderImage, shape: tuple[int, int]) -> None:
    """A present, complete, single-channel 8- or 16-bit PNG of the image's size."""
    if not path.exists():
        raise _error(path, f"missing (label of {image.image_path})")
    label = check_png(path)
    if label.color_type != _GRAY:
        kind = _COLOUR_TYPES.get(label.color_type, f"a colour type {label.color_type}")
        raise _error(
            path,
            f"{kind} label image (PNG colour type {label.color_type}); labels must be "
            "single-channel PNGs of class ids (8- or 16-bit)",
        )
    if label.bit_depth not in (8, 16):
        raise _error(path, f"a {label.bit_depth}-bit label image; labels must be 8- or 16-bit")
    if (label.height, label.width) != shape:
        raise _error(
            path,
            f"size {label.height}x{label.width} differs from its image {image.image_path} "
            f"({shape[0]}x{shape[1]})",
        )


def validate_folder(
    images: Sequence[FolderImage], skip_bad: bool = False
) -> tuple[list[tuple[FolderImage, tuple[int, int]]], list[SkippedFile]]:
    """Check every image (and label) from headers and tails only, before heavy work.

    Returns:
        ([(image, its (H, W) [px])] for the good ones in input order, one SkippedFile per bad
        one naming the bad file).

    Raises:
        CityscapesError: (only when ``skip_bad`` is False) one line naming the first bad file.
    """
    good: list[tuple[FolderImage, tuple[int, int]]] = []
    skipped: list[SkippedFile] = []
    for image in images:
        try:
            shape = _check_image(image.image_path)
            if image.label_path is not None:
                _check_label(image.label_path, image, shape)
        except CityscapesError as error:
            if not skip_bad:
                raise
            skipped.append(SkippedFile(error.path or "", error.reason))
        else:
            good.append((image, shape))
    return good, skipped


def make_folder_plan(
    images: Path | str,
    recipe: Recipe,
    labels: Path | str | None = None,
    label_map: str | os.PathLike[str] | LabelMap | None = None,
    skip_bad: bool = False,
) -> Plan:
    """Discover and check an image folder (no image is decoded), then cut it into shards.

    Args:
        images: the images folder (see the module docstring for the split rule).
        recipe: the run's recipe; the plan's recipe is it with the input recorded
            (:meth:`Recipe.with_input`: layout and label map, in the digest).
        labels: the labels folder, or None (labels all 255).
        label_map: a built-in name (``trainids``, the default, or ``cityscapes``), a JSON
            file, or a LabelMap; only with ``labels``.
        skip_bad: leave bad inputs out and list them instead of stopping.

    Raises:
        GenerateError: the split rule (key ``"splits"``), images of different sizes without a
            stored size (key ``"size"``), a split without usable images, a label map without
            labels (key ``"label_map"``).
        LabelMapError: (key ``"label_map"``) a bad label map file.
        CityscapesError: a bad folder or file (see :func:`discover_folder`,
            :func:`validate_folder`).
    """
    if labels is None and label_map is not None:
        raise GenerateError("a label map needs a labels folder", "label_map")
    mapping = None if labels is None else resolve_label_map(label_map)
    root = Path(images)
    unreadable: list[SkippedFile] | None = [] if skip_bad else None
    found, has_split_folders, notes = discover_folder(root, recipe.splits, labels, unreadable)
    skipped: list[SkippedFile] = list(unreadable or [])
    usable = {}
    for split in recipe.splits:
        good, bad = validate_folder(found[split], skip_bad)
        skipped += bad
        if not good:
            raise GenerateError(f"{root}: no usable images in split {split!r}")
        usable[split] = good
    check_plan_size(sum(len(good) for good in usable.values()), recipe.variants)
    hasher = hashlib.sha256(f"{LAYOUT}\n".encode())
    tasks = []
    for split, good in usable.items():
        native = native_size(root, split, {shape for _, shape in good}, recipe)
        warn_if_field_large(recipe, native)
        planned = [
            PlannedSample(
                split,
                image.stem,
                v,
                str(image.image_path),
                None if image.label_path is None else str(image.label_path),
                None,
                None if image.label_path is None else mapping,
                shape,
            )
            for image, shape in good
            for v in range(recipe.variants)
        ]
        for image, _ in good:
            label = "" if image.label_path is None else os.path.relpath(image.label_path, labels)
            image_rel = os.path.relpath(image.image_path, root)
            hasher.update(f"{split}\t{image.stem}\t{image_rel}\t{label}\n".encode())
        tasks += cut_shards(
            split, planned, recipe.shard_size, native, recipe.size or native, len(tasks)
        )
    value = "none" if mapping is None else mapping.recipe_value()
    return Plan(
        recipe=recipe.with_input({"layout": LAYOUT, "label_map": value}),
        source_root=str(root.resolve()),
        tasks=tasks,
        skipped=skipped,
        input_list_hash=hasher.hexdigest(),
        label_note=notes,
        source=_source(root, labels, mapping, has_split_folders, usable),
    )


def _source(
    root: Path,
    labels: Path | str | None,
    mapping: LabelMap | None,
    has_split_folders: bool,
    usable: dict[str, list[tuple[FolderImage, tuple[int, int]]]],
) -> dict[str, Any]:
    """The manifest's ``source`` block of an image folder."""
    return {
        "layout": LAYOUT,
        "images": str(root.resolve()),
        "labels": None if labels is None else str(Path(labels).resolve()),
        "split_folders": has_split_folders,
        "label_map": "none" if mapping is None else mapping.name,
        "label_map_file": (
            str(Path(mapping.origin).resolve()) if mapping is not None and mapping.origin else None
        ),
        "stem_rule": STEM_RULE,
        "files": {
            split: {image.stem: image.relpath for image, _ in good}
            for split, good in usable.items()
        },
    }


__all__ = [
    "IMAGE_EXTENSIONS",
    "LABEL_EXTENSION",
    "LAYOUT",
    "STEM_RULE",
    "STEM_SEPARATOR",
    "FolderImage",
    "LabelMapError",
    "discover_folder",
    "find_images",
    "image_stem",
    "make_folder_plan",
    "split_folders",
    "validate_folder",
]
