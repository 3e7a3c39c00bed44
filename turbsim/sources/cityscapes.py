"""The Cityscapes data set on disk: layout discovery, cheap validation, labelId -> trainId.

Layout (Cordts et al., "The Cityscapes Dataset for Semantic Urban Scene Understanding", CVPR
2016; the layout of the official ``leftImg8bit_trainvaltest.zip`` / ``gtFine_trainvaltest.zip``)::

    {root}/leftImg8bit/{split}/{city}/{city}_{seq:06d}_{frame:06d}_leftImg8bit.png
    {root}/gtFine/{split}/{city}/{city}_{seq:06d}_{frame:06d}_gtFine_labelIds.png
    {root}/gtFine/{split}/{city}/{city}_{seq:06d}_{frame:06d}_gtFine_labelTrainIds.png  (optional)

The stem ``{city}_{seq:06d}_{frame:06d}`` (e.g. ``aachen_000000_000019``) pairs an image with its
label. ``_labelTrainIds.png`` exists only where the user ran the official converter
(``cityscapesscripts/preparation/createTrainIdLabelImgs.py``), so the labelIds are preferred and
mapped here with :data:`LABEL_ID_TO_TRAIN_ID`; the trainId file is used only when no labelIds file
exists. The ``test`` split has no public labels (the ``gtFine/test`` files of the official zip are
placeholders): its samples never get a label, read as all 255 (ignore), and :func:`discover`
warns with :class:`CityscapesWarning`.

Facts (ids, names, colours) are those of cityscapesScripts ``helpers/labels.py`` (MIT licence),
copied here so that the ~100 MB ``cityscapesscripts`` package stays out of the runtime.

Only numpy and OpenCV are used. OpenCV decodes to BGR; :func:`read_image_rgb` converts to RGB
once, here, and nothing else in turbsim sees BGR.
"""

from __future__ import annotations

import os
import re
import struct
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple

import cv2
import numpy as np

from turbsim.errors import TurbsimError
from turbsim.shards.schema import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_PALETTE,
    CITYSCAPES_TABLE,
    IGNORE_LABEL,
    NUM_CLASSES,
)

if TYPE_CHECKING:
    from turbsim.sources.label_map import LabelMap

LabelKind = Literal["labelIds", "labelTrainIds"]

#: trainId of pixels that are not evaluated (void classes, unlabelled images).
IGNORE_ID = IGNORE_LABEL
#: The split whose labels are not public: its samples are read as all :data:`IGNORE_ID`.
UNLABELLED_SPLIT = "test"

_CLASSES = CITYSCAPES_TABLE

#: Class name of each trainId 0 .. 18.
TRAIN_ID_NAMES: tuple[str, ...] = CITYSCAPES_CLASSES

#: labelId of each trainId 0 .. 18 (to write predictions in the official labelIds format).
TRAIN_ID_TO_LABEL_ID: np.ndarray = np.array([label for _, label, _, _ in _CLASSES], np.uint8)
TRAIN_ID_TO_LABEL_ID.flags.writeable = False

#: Lookup table uint8 (256,): trainId of each labelId; every labelId not listed -> 255.
LABEL_ID_TO_TRAIN_ID: np.ndarray = np.full(256, IGNORE_ID, np.uint8)
for _name, _label_id, _train_id, _ in _CLASSES:
    LABEL_ID_TO_TRAIN_ID[_label_id] = _train_id
LABEL_ID_TO_TRAIN_ID.flags.writeable = False

#: uint8 (19, 3): RGB colour of each trainId, as in the official ``_color.png`` files.
TRAIN_ID_PALETTE: np.ndarray = CITYSCAPES_PALETTE

_COLOR_LUT = np.zeros((256, 3), np.uint8)
_COLOR_LUT[:NUM_CLASSES] = TRAIN_ID_PALETTE

#: ``{city}_{seq:06d}_{frame:06d}``; the city is checked against its folder separately.
STEM_PATTERN = re.compile(r"(?P<city>[a-z]+(?:_[a-z]+)*)_(?P<seq>\d{6})_(?P<frame>\d{6})")
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIXES: dict[str, str] = {
    "labelIds": "_gtFine_labelIds.png",
    "labelTrainIds": "_gtFine_labelTrainIds.png",
}

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: The last 12 bytes of every complete PNG: length 0, type IEND, CRC 0xAE426082.
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
#: Signature (8) + IHDR length and type (8) + width, height, bit depth, colour type (10).
_PNG_HEADER_BYTES = 26
_GRAY = 0  # PNG colour type of single-channel images


class CityscapesError(TurbsimError, ValueError):
    """A user-facing problem with a Cityscapes tree: one line, ``"{path}: {reason}"``.

    Attributes:
        path: the offending file or folder (str), or None.
        reason: what is wrong with it.
    """

    def __init__(self, message: str, path: Path | str | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.path = None if path is None else str(path)
        self.reason = reason or message

    def __reduce__(self) -> tuple:
        # Keep path and reason when the error crosses a process boundary (worker pools).
        return (type(self), (str(self), self.path, self.reason))


def _error(path: Path | str, reason: str) -> CityscapesError:
    return CityscapesError(f"{path}: {reason}", path, reason)


class CityscapesWarning(UserWarning):
    """Something the user should know about but that does not stop the run (e.g. test labels)."""


@dataclass(frozen=True)
class CityscapesSample:
    """One image of a Cityscapes tree and its label file.

    Attributes:
        split: "train", "val", "test", ...
        city: the city folder, e.g. "aachen".
        stem: ``{city}_{seq:06d}_{frame:06d}``, e.g. "aachen_000000_000019".
        image_path: the ``_leftImg8bit.png`` file.
        label_path: the ``_gtFine_labelIds.png`` (or ``_labelTrainIds.png``) file; None for the
            test split, whose labels are not public.
        label_kind: which kind of label file ``label_path`` is; None when there is none.
        label_map: for a sample of an image folder (turbsim.pipeline.image_folder), the map of its
        label
            file's values to trainIds; None for a Cityscapes sample (``label_kind`` says).
        image_shape: (H, W) [px] of the image from its header, when known (image folders): the
            size of an all-ignore label without reading a PNG header.
    """

    split: str
    city: str
    stem: str
    image_path: Path
    label_path: Path | None
    label_kind: LabelKind | None
    label_map: LabelMap | None = None
    image_shape: tuple[int, int] | None = None

    @property
    def has_labels(self) -> bool:
        """False for samples read as all-ignore (the test split)."""
        return self.label_path is not None


class SkippedFile(NamedTuple):
    """A sample left out by ``validate(..., skip_bad=True)``: the offending file and why."""

    path: str
    reason: str


class PngHeader(NamedTuple):
    """The IHDR fields turbsim checks: size [px], bit depth, PNG colour type (0 = grey)."""

    height: int
    width: int
    bit_depth: int
    color_type: int


def _read_header(path: Path) -> PngHeader:
    """Parse the IHDR chunk of a PNG from its first 26 bytes (PNG spec, section 11.2.2)."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(_PNG_HEADER_BYTES)
    except FileNotFoundError:
        raise _error(path, "missing") from None
    except IsADirectoryError:
        raise _error(path, "is a directory, not a PNG file") from None
    except OSError as error:
        raise _error(path, f"unreadable ({error.strerror or error})") from None
    if len(head) == 0:
        raise _error(path, "empty file (0 bytes)")
    if not head.startswith(_PNG_SIGNATURE[: len(head)]):
        raise _error(path, "not a PNG file (bad signature)")
    if len(head) < _PNG_HEADER_BYTES:
        raise _error(path, f"truncated ({len(head)} bytes, shorter than a PNG header)")
    if head[12:16] != b"IHDR":
        raise _error(path, "not a PNG file (first chunk is not IHDR)")
    width, height, bit_depth, color_type = struct.unpack(">IIBB", head[16:26])
    if width == 0 or height == 0:
        raise _error(path, f"invalid PNG header (size {height}x{width})")
    return PngHeader(height, width, bit_depth, color_type)


def png_size(path: Path | str) -> tuple[int, int]:
    """Height and width of a PNG from its IHDR chunk, without decoding the image.

    Args:
        path: a PNG file.

    Returns:
        (height, width) [px].

    Raises:
        CityscapesError: naming the file, when it is missing, unreadable, empty, not a PNG or
            shorter than the header.
    """
    header = _read_header(Path(path))
    return header.height, header.width


def png_is_complete(path: Path | str) -> bool:
    """Whether a file looks like a whole PNG: the PNG signature first, an IEND chunk last.

    A file cut short (an interrupted copy or download) lacks the trailing IEND chunk. Only the
    first 8 and the last 12 bytes are read.

    Args:
        path: a file.

    Returns:
        True when the file starts with the PNG signature and ends with the 12-byte IEND chunk.

    Raises:
        CityscapesError: naming the file, when it is missing or cannot be read.
    """
    path = Path(path)
    try:
        with open(path, "rb") as stream:
            start = stream.read(len(_PNG_SIGNATURE))
            size = stream.seek(0, 2)
            if size < len(_PNG_SIGNATURE) + len(_PNG_IEND):
                return False
            stream.seek(size - len(_PNG_IEND))
            end = stream.read(len(_PNG_IEND))
    except FileNotFoundError:
        raise _error(path, "missing") from None
    except OSError as error:
        raise _error(path, f"unreadable ({error.strerror or error})") from None
    return start == _PNG_SIGNATURE and end == _PNG_IEND


def check_png(path: Path | str) -> PngHeader:
    """Header of a PNG that is present, readable and complete; CityscapesError otherwise."""
    path = Path(path)
    header = _read_header(path)
    if not png_is_complete(path):
        raise _error(path, "truncated (no IEND chunk at the end)")
    return header


def _short(path: Path) -> str:
    """The last four parts of a path (``leftImg8bit/train/aachen/x.png``), for messages."""
    return "/".join(path.parts[-4:])


def _list_folder(folder: Path) -> list[Path]:
    """The entries of ``folder``, sorted; OSError (e.g. PermissionError) when it is unreadable."""
    return sorted(folder / name for name in os.listdir(folder))


def discover(
    root: Path | str,
    splits: Sequence[str],
    unreadable: list[SkippedFile] | None = None,
) -> dict[str, list[CityscapesSample]]:
    """Find the images of the given splits and pair each with its label file.

    Only names ending in ``_leftImg8bit.png`` inside ``leftImg8bit/{split}/{city}/`` count as
    images; other files (hidden files, READMEs, temporary files) are ignored. An image whose
    stem is not ``{city}_{seq:06d}_{frame:06d}`` with ``city`` its folder's name is an error:
    a renamed or misplaced image would otherwise be paired wrongly or silently dropped.

    The label of a sample is ``gtFine/{split}/{city}/{stem}_gtFine_labelIds.png`` if it exists,
    else ``..._gtFine_labelTrainIds.png`` if that exists, else the labelIds path (which
    :func:`validate` reports as missing). Samples of the ``test`` split get no label (the public
    test labels are placeholders) and a :class:`CityscapesWarning` says so. Nothing is opened:
    run :func:`validate` before heavy work.

    Args:
        root: the folder holding ``leftImg8bit/`` and ``gtFine/`` (often ``$CITYSCAPES_DATASET``).
        splits: split names, e.g. ("train", "val").
        unreadable: None: an unreadable city folder is an error. A list: each unreadable city
            folder is appended to it as a :class:`SkippedFile` and left out (``--skip-bad``).

    Returns:
        split -> its samples, sorted by stem.

    Raises:
        CityscapesError: one line naming the folder or file, when root, ``leftImg8bit/{split}``
            or (for a labelled split) ``gtFine/{split}`` is missing or unreadable, a split has
            no images, an image name does not follow the pattern, or (``unreadable`` None) a city
            folder cannot be listed.
    """
    root = Path(root)
    if not root.is_dir():
        raise _error(root, "Cityscapes root folder missing or not a directory")
    if isinstance(splits, str):
        raise TypeError(f"splits must be a sequence of names, not the string {splits!r}")
    found: dict[str, list[CityscapesSample]] = {}
    for split in splits:
        image_dir = root / "leftImg8bit" / split
        label_dir = root / "gtFine" / split
        labelled = split != UNLABELLED_SPLIT
        if not image_dir.is_dir():
            raise _error(image_dir, "split folder missing")
        if labelled and not label_dir.is_dir():
            raise _error(label_dir, f"label folder of split {split!r} missing")
        samples = []
        try:
            city_dirs = [p for p in _list_folder(image_dir) if p.is_dir()]
        except OSError as error:
            raise _error(image_dir, f"unreadable folder ({error.strerror or error})") from None
        for city_dir in city_dirs:
            city = city_dir.name
            try:
                entries = _list_folder(city_dir)
                if labelled and (label_dir / city).is_dir():
                    _list_folder(label_dir / city)
            except OSError as error:
                folder = error.filename or city_dir
                reason = f"unreadable folder ({error.strerror or error}); its samples are missing"
                if unreadable is None:
                    raise _error(folder, reason) from None
                unreadable.append(SkippedFile(str(folder), reason))
                continue
            for image_path in (p for p in entries if p.name.endswith(IMAGE_SUFFIX)):
                stem = image_path.name[: -len(IMAGE_SUFFIX)]
                match = STEM_PATTERN.fullmatch(stem)
                if match is None or match["city"] != city:
                    raise _error(
                        image_path, f"name is not {city}_<6 digits>_<6 digits>{IMAGE_SUFFIX}"
                    )
                label_path: Path | None = None
                label_kind: LabelKind | None = None
                if labelled:
                    label_kind = "labelIds"
                    label_path = label_dir / city / f"{stem}{LABEL_SUFFIXES['labelIds']}"
                    train_ids = label_dir / city / f"{stem}{LABEL_SUFFIXES['labelTrainIds']}"
                    if not label_path.exists() and train_ids.exists():
                        label_kind, label_path = "labelTrainIds", train_ids
                samples.append(
                    CityscapesSample(split, city, stem, image_path, label_path, label_kind)
                )
        if not samples:
            raise _error(image_dir, f"no *{IMAGE_SUFFIX} images in <city>/ folders")
        samples.sort(key=lambda sample: sample.stem)
        found[split] = samples
        if not labelled:
            warnings.warn(
                f"{image_dir}: the test split has no public labels; its labels read as all "
                f"{IGNORE_ID} (ignore)",
                CityscapesWarning,
                stacklevel=2,
            )
    return found


def _check_sample(sample: CityscapesSample) -> None:
    """Raise CityscapesError naming the first bad file of a sample."""
    image = check_png(sample.image_path)
    if sample.label_path is None:
        return
    if not sample.label_path.exists():
        raise _error(sample.label_path, f"missing (label of {_short(sample.image_path)})")
    label = check_png(sample.label_path)
    if (label.height, label.width) != (image.height, image.width):
        raise _error(
            sample.label_path,
            f"size {label.height}x{label.width} differs from its image "
            f"{_short(sample.image_path)} ({image.height}x{image.width})",
        )
    if (label.color_type, label.bit_depth) != (_GRAY, 8):
        raise _error(
            sample.label_path,
            f"not an 8-bit single-channel label image (PNG colour type {label.color_type}, "
            f"bit depth {label.bit_depth})",
        )


def validate(
    samples: Sequence[CityscapesSample], skip_bad: bool = False
) -> tuple[list[CityscapesSample], list[SkippedFile]]:
    """Check every sample cheaply before heavy work, reading only PNG headers and tails.

    Checks, per sample: the image and the label exist and are readable; each is a PNG (the
    signature), not empty, not shorter than the header, and ends with an IEND chunk (a file cut
    short does not); the label has the image's height and width (from IHDR, no decoding) and is
    8-bit single-channel. Samples without a label (test split) check only the image.

    Args:
        samples: from :func:`discover`.
        skip_bad: False: stop at the first problem. True: leave bad samples out and report them.

    Returns:
        (the good samples in input order, one SkippedFile per bad sample naming the bad file).

    Raises:
        CityscapesError: (only when ``skip_bad`` is False) one line naming the first bad file
            and the reason, e.g. ``.../aachen_000000_000019_gtFine_labelIds.png: missing (label
            of leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png)``.
    """
    good: list[CityscapesSample] = []
    skipped: list[SkippedFile] = []
    for sample in samples:
        try:
            _check_sample(sample)
        except CityscapesError as error:
            if not skip_bad:
                raise
            skipped.append(SkippedFile(error.path or "", error.reason))
        else:
            good.append(sample)
    return good, skipped


def _decode(path: Path, flags: int) -> np.ndarray:
    """cv2.imdecode of a file's bytes (works for non-ASCII paths too); CityscapesError if not."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise _error(path, "missing") from None
    except OSError as error:
        raise _error(path, f"unreadable ({error.strerror or error})") from None
    image = cv2.imdecode(data, flags) if data.size else None
    if image is None:
        raise _error(path, "unreadable (not a decodable image)")
    return image


def read_image_rgb(path: Path | str) -> np.ndarray:
    """Decode an image file to RGB, its pixels as stored.

    An EXIF orientation is not applied (cv2.IMREAD_IGNORE_ORIENTATION): the image keeps the size
    its header says, the one its label and the plan were checked against.

    Args:
        path: an image file (PNG, JPEG); grey images are expanded to 3 channels and an alpha
            channel is dropped.

    Returns:
        uint8 (H, W, 3), channels in R, G, B order.

    Raises:
        CityscapesError: naming the file, when it is missing or cannot be decoded.
    """
    image = _decode(Path(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image.dtype != np.uint8:
        raise _error(path, f"unreadable (not an 8-bit image: {image.dtype})")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_train_ids(sample: CityscapesSample) -> np.ndarray:
    """The trainId label image of a sample.

    labelIds are mapped with :data:`LABEL_ID_TO_TRAIN_ID`; labelTrainIds are used as they are,
    with values outside 0 .. 18 set to 255; a sample with a ``label_map`` (an image folder) has
    its 8- or 16-bit label mapped by it; a sample without labels (test split, unlabelled
    folders) reads as all 255, with the image's size from ``image_shape`` or its PNG header.

    Args:
        sample: from :func:`discover`.

    Returns:
        uint8 (H, W): trainIds 0 .. 18, 255 = ignore.

    Raises:
        CityscapesError: naming the file, when it is missing, undecodable or not 8-bit
            (with a ``label_map``: 8- or 16-bit) single-channel.
        turbsim.sources.label_map.LabelMapError: a value the sample's ``label_map`` does not list.
    """
    if sample.label_path is None:
        height, width = sample.image_shape or png_size(sample.image_path)
        return np.full((height, width), IGNORE_ID, np.uint8)
    label = _decode(sample.label_path, cv2.IMREAD_UNCHANGED)
    if sample.label_map is not None:
        if label.ndim != 2 or label.dtype not in (np.uint8, np.uint16):
            raise _error(
                sample.label_path,
                f"not an 8- or 16-bit single-channel label image ({label.dtype}, shape "
                f"{label.shape})",
            )
        return sample.label_map.apply(label, sample.label_path)
    if label.ndim != 2 or label.dtype != np.uint8:
        raise _error(
            sample.label_path,
            f"not an 8-bit single-channel label image ({label.dtype}, shape {label.shape})",
        )
    if sample.label_kind == "labelTrainIds":
        return np.where(label < NUM_CLASSES, label, np.uint8(IGNORE_ID)).astype(np.uint8)
    return LABEL_ID_TO_TRAIN_ID[label]


def colorize_train_ids(label: np.ndarray) -> np.ndarray:
    """Paint a trainId image with the official palette.

    Args:
        label: integer (H, W) trainIds; 255 (ignore) and any value outside 0 .. 18 are black.

    Returns:
        uint8 (H, W, 3) RGB.
    """
    label = np.asarray(label)
    if not np.issubdtype(label.dtype, np.integer):
        raise TypeError(f"label must be an integer array, got {label.dtype}")
    inside = (label >= 0) & (label < NUM_CLASSES)
    return _COLOR_LUT[np.where(inside, label, IGNORE_ID).astype(np.intp)]
