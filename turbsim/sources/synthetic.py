"""Synthetic Cityscapes trees, for tests and demos without the real data.

:func:`write_sample_tree` writes procedural street scenes
(:func:`turbsim.sources.street.make_scene`, re-exported here with :data:`SCENE_LABEL_IDS`) as a
Cityscapes tree (see turbsim.sources.cityscapes for the layout) that
:func:`turbsim.sources.cityscapes.discover` reads like the real data set. Each scene's generator
comes from :func:`scene_rng` (turbsim.seeding), so any sample is reproducible alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from turbsim._files import write_bytes
from turbsim.seeding import scene_seed_sequence, stable_hash
from turbsim.shards.schema import SPLITS  # what write_sample_tree writes; test: no gtFine
from turbsim.sources.cityscapes import CityscapesError
from turbsim.sources.street import MIN_SIZE, SCENE_LABEL_IDS, check_size, make_scene

__all__ = [
    "DEFAULT_CITIES",
    "FRAME",
    "MIN_SIZE",
    "SCENE_LABEL_IDS",
    "SPLITS",
    "make_scene",
    "scene_rng",
    "write_sample_tree",
]

#: Default city folders per split (real Cityscapes city names of each split).
DEFAULT_CITIES: dict[str, tuple[str, ...]] = {
    "train": ("aachen", "bochum", "bremen"),
    "val": ("frankfurt", "lindau", "munster"),
    "test": ("berlin", "bielefeld", "bonn"),
}
#: Frame number of every written stem: Cityscapes annotates the 20th frame of each snippet.
FRAME = 19


def _split_code(split: str) -> int:
    """The spawn-key entry of a split: the stable hash of its name (see turbsim.seeding)."""
    return stable_hash(split)


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of sample ``index`` of ``split``: ``SeedSequence(seed, spawn_key=(code,
    index))`` with ``code = stable_hash(split)`` (:func:`turbsim.seeding.scene_seed_sequence`),
    so any sample is reproducible alone."""
    return np.random.default_rng(scene_seed_sequence(seed, split, index))


def _write_png(path: Path, image: np.ndarray) -> None:
    """Encode to PNG in memory and publish it atomically (turbsim._files)."""
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"PNG encoding failed for {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, encoded.tobytes())


def write_sample_tree(
    out: Path | str,
    n: int,
    height: int = 1024,
    width: int = 2048,
    seed: int = 0,
    splits: Sequence[str] = ("train", "val"),
    cities: Mapping[str, Sequence[str]] | None = None,
    per_split: Mapping[str, int] | None = None,
    overwrite: bool = False,
) -> dict[str, int]:
    """Write synthetic scenes as a Cityscapes tree that :func:`~.cityscapes.discover` reads.

    Writes ``leftImg8bit/{split}/{city}/{city}_{seq:06d}_000019_leftImg8bit.png`` (RGB) and, for
    every split but "test" (whose labels are not public in the real data either),
    ``gtFine/{split}/{city}/{stem}_gtFine_labelIds.png``. Sample ``i`` of a split goes to city
    ``cities[split][i % len]`` with ``seq = i // len``; its content depends only on (seed, split,
    i, height, width) (see :func:`scene_rng`), so any subset can be regenerated alone. Each file
    is written to a hidden temporary name and renamed, so no half-written PNG is ever left.

    Args:
        out: root folder of the tree; created if needed. It must be empty unless ``overwrite``.
        n: number of images written to *each* split (unless ``per_split`` says otherwise).
        height: image height [px], >= 16 (the real data: 1024).
        width: image width [px], >= 16 (the real data: 2048).
        seed: root seed, >= 0.
        splits: any of "train", "val", "test", each at most once.
        cities: split -> city folder names; defaults to :data:`DEFAULT_CITIES`.
        per_split: split -> image count, overriding ``n`` for the splits it names.
        overwrite: write into a non-empty ``out``, replacing files of the same name (other
            files are left as they are).

    Returns:
        split -> number of images written.

    Raises:
        CityscapesError: when ``out`` is a file, or a non-empty folder and not ``overwrite``.
        ValueError: on bad arguments (sizes, counts, split or city names).
    """
    out = Path(out)
    check_size(height, width)
    if isinstance(splits, str):
        raise TypeError(f"splits must be a sequence of names, not the string {splits!r}")
    unknown = [s for s in splits if s not in SPLITS]
    if unknown or len(set(splits)) != len(splits) or not splits:
        raise ValueError(f"splits must be distinct names among {SPLITS}, got {list(splits)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    counts = {split: (per_split or {}).get(split, n) for split in splits}
    for split, count in counts.items():
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
            raise ValueError(f"number of images of split {split!r} must be >= 1, got {count!r}")
    city_names = {split: tuple((cities or DEFAULT_CITIES)[split]) for split in splits}
    for split, names in city_names.items():
        if not names or any(
            not isinstance(c, str) or not c.isalpha() or not c.islower() for c in names
        ):
            raise ValueError(f"cities of split {split!r} must be lowercase letters, got {names}")

    if out.exists() and not out.is_dir():
        raise CityscapesError(f"{out}: exists and is not a directory", out)
    if out.is_dir() and not overwrite:
        entries = sum(1 for _ in out.iterdir())
        if entries:
            raise CityscapesError(
                f"{out}: not empty ({entries} entries); refusing to write into it without "
                "overwrite (--overwrite)",
                out,
            )

    for split, count in counts.items():
        names = city_names[split]
        for index in range(count):
            city = names[index % len(names)]
            stem = f"{city}_{index // len(names):06d}_{FRAME:06d}"
            rgb, label_ids = make_scene(scene_rng(seed, split, index), height, width)
            image_path = out / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"
            _write_png(image_path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            if split != "test":
                label_path = out / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"
                _write_png(label_path, label_ids)
    return counts
