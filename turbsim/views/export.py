"""Export generated shards to layouts other tools read: Cityscapes-layout PNG folders
(mmsegmentation, detectron2) and WebDataset tar files.

Cityscapes layout written under ``OUT`` (the names are a contract; ``{name}`` below)::

    leftImg8bit/{split}/{city}/{name}_leftImg8bit.png          distorted image, RGB 8-bit
    gtFine/{split}/{city}/{name}_gtFine_labelTrainIds.png      stored trainIds (0..18, 255)
    gtFine/{split}/{city}/{name}_gtFine_labelIds.png           official labelIds (255 -> 0)
    leftImg8bit_clean/{split}/{city}/{name}_leftImg8bit.png    clean image (``clean=True``)
    export.json                                                written last (complete)

``{name}`` is the stem, or ``{stem}_v{k}`` (k: the variant number, 0-based) when the dataset
holds several variants per image and none is selected. The city is the stem's part before its
first ``_`` (Cityscapes stems are ``{city}_{seq}_{frame}``), ``images`` without one; a stem with
``/`` has its folders joined with ``_`` as the city, its last part as the stem (detectron2 lists
exactly one level of city folders).

WebDataset: ``OUT/{split}/{split}-{shard:06d}.tar``, one per source shard; each sample is the
consecutive members ``{key}.distorted.png``, ``{key}.clean.png`` (``clean=True``),
``{key}.labeltrainids.png`` and ``{key}.json`` (name, split, variant, stored params); the key is
``{name}`` with the stem's folders kept and the dots of its last part as ``_`` (a WebDataset key
ends at the first dot of a basename).

Every file is published atomically (:mod:`turbsim._files`): an interrupted export leaves no
half-written file and no ``export.json``. numpy, h5py (:mod:`turbsim.shards`), OpenCV.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from turbsim import __version__, shards
from turbsim._files import atomic_path, write_bytes, write_json
from turbsim.errors import TurbsimError
from turbsim.shards.schema import CITYSCAPES_TABLE, MANIFEST_NAME, SCHEMA_VERSION

#: Export formats (``turbsim export --format``).
FORMATS: tuple[str, ...] = ("cityscapes", "webdataset")
#: Version of the layout of ``export.json``.
EXPORT_VERSION = 1
#: The record of a complete export, written last.
RECORD_NAME = "export.json"
#: Written first: marks an export (complete or not), lists the entries ``overwrite`` deletes.
MARKER_NAME = ".turbsim-export"
#: File-name suffixes and top folders (distorted images, labels, clean images) of the Cityscapes
#: layout.
IMAGE_SUFFIX, TRAIN_IDS_SUFFIX = "_leftImg8bit.png", "_gtFine_labelTrainIds.png"
LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"
IMAGE_DIR, LABEL_DIR, CLEAN_DIR = "leftImg8bit", "gtFine", "leftImg8bit_clean"
#: City folder of stems without a ``_``.
DEFAULT_CITY = "images"

#: uint8 (256,), read-only: official Cityscapes labelId of each trainId 0..18 (road 7 ...
#: bicycle 33); every other value (255 = ignore) -> 0, 'unlabeled'. The inverse of
#: ``turbsim.sources.cityscapes.LABEL_ID_TO_TRAIN_ID`` on the 19 classes (cityscapesScripts
#: labels.py).
TRAIN_ID_TO_LABEL_ID: np.ndarray = np.zeros(256, np.uint8)
for _name, _label_id, _train_id, _ in CITYSCAPES_TABLE:
    TRAIN_ID_TO_LABEL_ID[_train_id] = _label_id
TRAIN_ID_TO_LABEL_ID.flags.writeable = False

#: ``progress(done, total)``: samples exported so far, of all to export.
Progress = Callable[[int, int], None]


class ExportError(TurbsimError, RuntimeError):
    """A user-facing problem with an export's source or target, one line naming it; ``key``
    names the option at fault (``"variant"``) so a command can name its flag, else None."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote: the folder, the format (:data:`FORMATS`), samples per split, files
    written (PNGs or tars, and ``export.json``) and the wall time [s]."""

    out: Path
    format: str
    counts: dict[str, int]
    files: int
    seconds: float


#: The samples of one shard to export: (sample index, stem, variant, file name or key).
_Samples = list[tuple[int, str, int, str]]


@dataclass(frozen=True)
class _Source:
    """The shards to export and, per split, each shard's samples with their file names."""

    root: Path
    manifest: dict[str, Any]
    jobs: dict[str, list[tuple[int, shards.ShardReader, _Samples]]]  # split -> (index, reader, ...)
    variants: list[int]  # every variant number in the dataset
    variant: int | None  # the one selected, or None for all
    tagged: bool  # names carry ``_v{k}``: several variants, none selected


def _open_source(root: Path, fmt: str, variant: int | None, verify: bool) -> _Source:
    """Read (and verify) the shards of ``root`` and name every sample to export (ShardError,
    ExportError: see :func:`export_cityscapes`)."""
    manifest = shards.read_manifest(root)
    if verify and (problems := shards.verify(root)):
        raise ExportError(
            f"{root}: {len(problems)} problem(s) found by verification, the first: "
            f"{problems[0]} (run turbsim verify {root})"
        )
    infos = [shards.ShardInfo.from_dict(entry) for entry in manifest["shards"]]
    readers = [(info, shards.ShardReader(root / info.file)) for info in infos]
    variants = sorted({k for _, reader in readers for k in reader.variants.tolist()})
    if variant is not None and variant not in variants:
        listed = ", ".join(map(str, variants)) or "none"
        raise ExportError(f"{root}: no variant {variant} (the dataset has {listed})", "variant")
    tagged = variant is None and len(variants) > 1
    jobs: dict[str, list[tuple[int, shards.ShardReader, _Samples]]] = {}
    seen: dict[tuple[str, str], str] = {}
    for info, reader in readers:
        samples: _Samples = []
        for i, (stem, k) in enumerate(zip(reader.names, reader.variants.tolist(), strict=True)):
            if variant is None or k == variant:
                tag = k if tagged else None
                if fmt == "cityscapes":
                    name = "/".join(city_and_name(stem, tag))
                else:
                    name = webdataset_key(stem, tag)
                if (key := (info.split, name)) in seen:
                    raise ExportError(f"{root}: {seen[key]!r} and {stem!r} both export as {name}")
                seen[key] = stem
                samples.append((i, stem, k, name))
        jobs.setdefault(info.split, []).append((info.index, reader, samples))
    return _Source(root, manifest, jobs, variants, variant, tagged)


def _stem_parts(stem: str) -> list[str]:
    """The ``/``-separated parts of a stem, without empty and ``.`` parts; ExportError for an
    empty stem or one with a ``..`` part (it would leave the folder)."""
    parts = [part for part in stem.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        raise ExportError(f"sample name {stem!r} cannot be a file name")
    return parts


def city_and_name(stem: str, variant: int | None = None) -> tuple[str, str]:
    """(city folder, file-name stem) of a sample in the Cityscapes layout, ``_v{variant}``
    appended when given: ``aachen_000000_000019`` -> ``("aachen", "aachen_000000_000019")``,
    ``frame7`` -> ``("images", "frame7")``, ``site/cam1/frame7`` -> ``("site_cam1", "frame7")``."""
    parts = _stem_parts(stem)
    name = parts[-1] + (f"_v{variant}" if variant is not None else "")
    if len(parts) > 1:
        return "_".join(parts[:-1]), name
    city = parts[0].split("_", 1)[0] if "_" in parts[0] else ""
    return city or DEFAULT_CITY, name


def webdataset_key(stem: str, variant: int | None = None) -> str:
    """The WebDataset key of a sample: the stem (folders kept, ``.`` of its last part -> ``_``),
    plus ``_v{variant}`` when given."""
    parts = _stem_parts(stem)
    parts[-1] = parts[-1].replace(".", "_") + (f"_v{variant}" if variant is not None else "")
    return "/".join(parts)


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of an RGB uint8 (H, W, 3) image or a single-channel uint8 (H, W) map."""
    import cv2

    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"expected uint8 (H, W) or (H, W, 3), got {image.dtype} {image.shape}")
    pixels = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, encoded = cv2.imencode(".png", pixels)
    if not ok:
        raise ValueError(f"PNG encoding failed for an array {image.shape}")
    return encoded.tobytes()


def _prepare_out(out: Path, overwrite: bool, entries: list[str]) -> None:
    """Make ``out`` new or empty, or (``overwrite``) empty an earlier export: delete only the
    entries its marker lists, refusing (ExportError, nothing deleted) when ``out`` holds anything
    else; then write the marker listing ``entries``, this export's top-level entries."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: a file, not a folder")
    present = sorted(out.iterdir()) if out.is_dir() else []
    if present and not overwrite:
        raise ExportError(f"{out}: not empty (give a new or empty folder, or --overwrite)")
    if present:
        try:
            owned = set(json.loads((out / MARKER_NAME).read_text(encoding="utf-8"))["entries"])
        except (OSError, ValueError, KeyError, TypeError):
            raise ExportError(
                f"{out}: not an earlier turbsim export (no valid {MARKER_NAME}); "
                "overwrite replaces only those, give a new or empty folder"
            ) from None
        foreign = [p for p in present if p.name not in owned | {MARKER_NAME, RECORD_NAME}]
        if foreign:
            raise ExportError(
                f"{foreign[0]}: not written by turbsim export; overwrite deletes nothing "
                "else, move it away or give a new folder"
            )
        (out / RECORD_NAME).unlink(missing_ok=True)  # first: the folder stops looking complete
        for path in present:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / MARKER_NAME, {"tool": "turbsim export", "entries": sorted(entries)})


#: How the Cityscapes layout names files (``export.json``'s ``naming``; module docstring).
_CITYSCAPES_NAMING = {
    "images": f"{IMAGE_DIR}/{{split}}/{{city}}/{{name}}{IMAGE_SUFFIX}",
    "labelTrainIds": f"{LABEL_DIR}/{{split}}/{{city}}/{{name}}{TRAIN_IDS_SUFFIX}",
    "labelIds": f"{LABEL_DIR}/{{split}}/{{city}}/{{name}}{LABEL_IDS_SUFFIX}",
    "clean": f"{CLEAN_DIR}/{{split}}/{{city}}/{{name}}{IMAGE_SUFFIX} (with clean)",
    "city": "the stem's part before its first '_' ('images' without one); for a stem with "
    "'/', its folders joined with '_' (the name is then its last part)",
    "labels": "labelTrainIds: the stored trainIds 0..18, 255 = ignore; labelIds: the official "
    "Cityscapes labelIds, 255 -> 0 (unlabeled)",
}
_WEBDATASET_NAMING = {
    "tars": "{split}/{split}-{shard:06d}.tar",
    "key": "{name}, the stem's folders kept, dots of its last part as '_'",
    "members": "{key}.distorted.png {key}.clean.png (with clean) {key}.labeltrainids.png "
    "{key}.json (name, split, variant, params)",
}


def _write_record(
    out: Path, source: _Source, fmt: str, counts: dict[str, int], clean: bool
) -> None:
    """Write ``out/export.json`` (last): provenance, counts and the naming rule; no paths."""
    m = source.manifest
    source_record = {
        k: m.get(k) for k in ("recipe_hash", "root_seed", "tool_version", "git_commit")
    }
    digest = hashlib.sha256((source.root / MANIFEST_NAME).read_bytes()).hexdigest()
    source_record.update(manifest_schema_version=m.get("schema_version"), manifest_sha256=digest)
    source_record["shard_schema_version"] = SCHEMA_VERSION
    name = "{stem}_v{variant}" if source.tagged else "{stem}"
    rules = _CITYSCAPES_NAMING if fmt == "cityscapes" else _WEBDATASET_NAMING
    record = {
        "export_version": EXPORT_VERSION,
        "format": fmt,
        "tool": "turbsim",
        "tool_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": source_record,
        "counts": counts,
        "clean": clean,
        "variants": source.variants,
        "variant": source.variant,
        "naming": {"name": name, **rules},
    }
    write_json(out / RECORD_NAME, record)


def _write_pngs(out: Path, split: str, reader: shards.ShardReader, samples: _Samples,
                clean: bool, tick: Callable[[], None]) -> int:  # fmt: skip
    """Write the Cityscapes-layout PNGs of ``samples`` of ``reader``; returns the file count."""
    files = 0
    for i, _, _, name in samples:
        label = reader.read("label", i)
        targets = [
            (IMAGE_DIR, IMAGE_SUFFIX, reader.read("distorted", i)),
            (LABEL_DIR, TRAIN_IDS_SUFFIX, label),
            (LABEL_DIR, LABEL_IDS_SUFFIX, TRAIN_ID_TO_LABEL_ID[label]),
        ]
        if clean:
            targets.append((CLEAN_DIR, IMAGE_SUFFIX, reader.read("clean", i)))
        for top, suffix, array in targets:
            path = out / top / split / f"{name}{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes(path, encode_png(array))  # atomic: temporary, then rename
        files += len(targets)
        tick()
    return files


def _tar_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """Add a regular file ``name`` holding ``data`` (mtime 0, mode 0644: reproducible tars)."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def _write_tar(out: Path, split: str, index: int, reader: shards.ShardReader, samples: _Samples,
               clean: bool, tick: Callable[[], None]) -> int:  # fmt: skip
    """Write ``out/{split}/{split}-{index:06d}.tar`` of ``samples`` of ``reader`` (members of
    one sample consecutive: distorted, clean, labeltrainids, json); returns the file count."""
    if not samples:
        return 0
    params = {name: values.tolist() for name, values in reader.params.items()}
    path = out / split / f"{split}-{index:06d}.tar"
    path.parent.mkdir(exist_ok=True)
    with atomic_path(path) as temporary, tarfile.open(temporary, "w") as tar:
        for i, stem, k, key in samples:
            _tar_member(tar, f"{key}.distorted.png", encode_png(reader.read("distorted", i)))
            if clean:
                _tar_member(tar, f"{key}.clean.png", encode_png(reader.read("clean", i)))
            _tar_member(tar, f"{key}.labeltrainids.png", encode_png(reader.read("label", i)))
            stored = {name: values[i] for name, values in params.items()}
            record = {"name": stem, "split": split, "variant": k, "params": stored}
            _tar_member(tar, f"{key}.json", (json.dumps(record, sort_keys=True) + "\n").encode())
            tick()
    return 1


def export_cityscapes(
    shards_root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    clean: bool = False,
    variant: int | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    verify: bool = True,
) -> ExportReport:
    """Write the shards of ``shards_root`` as a Cityscapes-layout PNG tree under ``out`` for
    mmsegmentation and detectron2 (layout and names: the module docstring). Every sample is
    named before anything is written; ``out/export.json`` is written last.

    Args:
        shards_root: a ``turbsim generate`` output folder (manifest.json + shards).
        out: the export folder: new, empty, or with ``overwrite`` an earlier export.
        clean: also write the clean images.
        variant: export only this variant number, with plain ``{stem}`` names.
        overwrite: replace an earlier export in ``out`` (nothing else is deleted).
        progress: called with (samples done, samples to do) after each sample.
        verify: check the shards' sizes and checksums first (:func:`turbsim.shards.verify`).

    Raises:
        ShardError: a missing or invalid shard folder or file.
        ExportError: failed verification, an unknown ``variant`` (key "variant"), an unusable
            ``out``, or two samples of a split with one name.
        OSError: a file could not be written.
    """
    options = (clean, variant, overwrite, progress, verify)
    return _export(Path(shards_root), Path(out), "cityscapes", *options)


def export_webdataset(
    shards_root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    clean: bool = False,
    variant: int | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    verify: bool = True,
) -> ExportReport:
    """Write the shards of ``shards_root`` as WebDataset tars under ``out``, one per source
    shard (layout and keys: the module docstring). Arguments, errors and ``export.json``: those
    of :func:`export_cityscapes`."""
    options = (clean, variant, overwrite, progress, verify)
    return _export(Path(shards_root), Path(out), "webdataset", *options)


def _export(root: Path, out: Path, fmt: str, clean: bool, variant: int | None, overwrite: bool,
            progress: Progress | None, verify: bool) -> ExportReport:  # fmt: skip
    """:func:`export_cityscapes` (``fmt`` "cityscapes") or :func:`export_webdataset`."""
    start = time.monotonic()
    source = _open_source(root, fmt, variant, verify)
    cityscapes = fmt == "cityscapes"
    entries = [IMAGE_DIR, LABEL_DIR] + [CLEAN_DIR] * clean if cityscapes else list(source.jobs)
    _prepare_out(out, overwrite, entries)
    total = sum(len(samples) for jobs in source.jobs.values() for _, _, samples in jobs)
    counts, files = {split: 0 for split in source.jobs}, 0
    for split, jobs in source.jobs.items():

        def tick(split: str = split) -> None:
            counts[split] += 1
            if progress is not None:
                progress(sum(counts.values()), total)

        for index, reader, samples in jobs:
            if cityscapes:
                files += _write_pngs(out, split, reader, samples, clean, tick)
            else:
                files += _write_tar(out, split, index, reader, samples, clean, tick)
            reader.close()
    _write_record(out, source, fmt, counts, clean)
    return ExportReport(out, fmt, counts, files + 1, time.monotonic() - start)
