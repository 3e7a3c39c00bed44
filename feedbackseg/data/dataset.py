"""A torch Dataset over turbsim shards (the only place feedbackseg reads generated data).

Each item is one (distorted, clean, label) triple of a split, read through
:class:`turbsim.shards.ShardReader`: files open lazily in the process that reads them (DataLoader
workers included), and the dataset pickles without open handles, so it works with the spawn and
forkserver start methods. Optional on-the-fly resize (the original trained at height 224:
bilinear images, nearest labels) and augmentation (random crop + horizontal flip applied
identically to the three arrays) with a per-sample RNG drawn from (seed, epoch, index), so no
two workers repeat an augmentation.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from feedbackseg.config import INPUTS
from feedbackseg.errors import FbsegError
from feedbackseg.label_layout import label_layout
from feedbackseg.paths import not_found
from turbsim import shards


class DataError(FbsegError, ValueError):
    """Shards cannot be used (missing folder, manifest or split, a corrupt or missing shard);
    one-line message naming the folder or the shard.

    It pickles (one message argument), so a DataLoader worker can raise it. The DataLoader
    re-raises a worker's exception as ``DataError("Caught DataError in DataLoader worker ...
    Original Traceback ...")``; such a message is cut back to the worker's one line here.
    """

    #: The option at fault when one is (``"split"``), so a command can name its flag; None
    #: otherwise (not pickled: a worker's error names a shard, not an option).
    key: str | None = None

    def __init__(self, message: str = "", key: str | None = None) -> None:
        if key is not None:
            self.key = key
        message = str(message)
        if message.startswith("Caught ") and "Traceback" in message:
            last = message.rstrip().splitlines()[-1]
            message = last.partition("DataError: ")[2] or last
        super().__init__(message)


def _verify_hint(root: Path) -> str:
    return f"run `turbsim verify {root}`"


def _read_error(path: Path, root: Path, error: BaseException) -> DataError:
    """The one-line DataError of a shard that cannot be read (``error``: what the reader raised)."""
    text = str(error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    first = first.removeprefix(f"{path}: ")
    return DataError(f"{path}: cannot read the shard ({first}); {_verify_hint(root)}")


#: What reading a damaged shard raises (h5py: OSError "filter returned failure", KeyError,
#: ValueError; the reader: ShardError; a shard shorter than its manifest entry: IndexError).
_READ_ERRORS = (shards.ShardError, OSError, KeyError, ValueError, IndexError, RuntimeError)


def _manifest(root: Path) -> dict[str, Any]:
    if not root.exists():
        raise DataError(not_found(root, "shard folder"))
    if not (root / shards.MANIFEST_NAME).is_file():
        raise DataError(
            f"{root}: no {shards.MANIFEST_NAME} (not a turbsim shard folder, or generation "
            "not finished: run `turbsim generate ... --resume`)"
        )
    try:
        return shards.read_manifest(root)
    except shards.ShardError as error:
        raise DataError(str(error)) from None


def split_names(root: str | Path) -> list[str]:
    """The splits that the manifest of the shard folder ``root`` lists, sorted."""
    return sorted({s["split"] for s in _manifest(Path(root))["shards"]})


def split_shards(root: str | Path, split: str) -> list[dict[str, Any]]:
    """The manifest entries (file, samples, ...) of ``split``, in manifest order."""
    root = Path(root)
    entries = [s for s in _manifest(root)["shards"] if s["split"] == split]
    if not entries:
        known = split_names(root)
        raise DataError(
            f"{root}: no split {split!r} (the shards hold: {', '.join(known)})", key="split"
        )
    return entries


def resized_shape(
    stored: tuple[int, int], height: int | None, multiple: int = 16
) -> tuple[int, int]:
    """(H, W) [px] for a target height, keeping the aspect, W rounded to ``multiple``.

    ``height=None`` keeps the stored size.
    """
    h, w = stored
    if height is None:
        return h, w
    width = max(multiple, int(round(w * height / h / multiple)) * multiple)
    return int(height), width


class ShardDataset(Dataset):
    """(distorted, clean, label) samples of one split of a turbsim shard folder.

    Args:
        root: the shard folder (``manifest.json`` + ``{split}/shard-*.h5``).
        split: e.g. ``"train"``.
        height: resize on the fly to this height [px] (width keeps the aspect, rounded to a
            multiple of 16); None keeps the stored size.
        augment: random crop (``crop``) and horizontal flip, identical for the three arrays.
        crop: (h, w) [px] of the random crop after resizing (with ``augment``); None: no crop.
        seed: root of the per-sample augmentation RNG (with the epoch and the index).
        locking: h5py file locking (False on network filesystems that reject locks).
        num_classes: 19 (255 stays the ignore label) or 20 (the original layout: 255 becomes
            the void class 19).
        input: what the ``distorted`` item (the network input) holds: "distorted" (default)
            or "clean" (the clean image, for a network trained or evaluated without
            turbulence); ``clean`` (the restoration target) is the clean image either way.
        return_flow: also return the stored displacement (``flow``, see :meth:`flow`),
            resized with the images and cropped and flipped with them (a horizontal flip
            mirrors the field and negates its column component). Shards written without
            ``turbsim generate --store-flow`` make reading a sample a one-line
            :class:`DataError` (a ValueError) saying so; :attr:`has_flow` checks beforehand.
        return_params: also return the sample's physics as the shard records it (``params``:
            a dict of float, ``wave`` a str; e.g. ``cn2`` [m^(-2/3)], ``path_length_m``,
            ``r0_m`` with blur), and its ``variant`` (int).

    Items: ``distorted``, ``clean`` float32 (3, H, W) in [0, 1]; ``label`` int64 (H, W);
    ``name`` str; ``index`` int; with ``return_flow`` ``flow`` float32 (2, H, W) [px]; with
    ``return_params`` ``params`` dict and ``variant`` int (the default collate makes a batch's
    numbers tensors of shape (B,) and its strings lists).
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        height: int | None = None,
        augment: bool = False,
        crop: tuple[int, int] | None = None,
        seed: int = 0,
        locking: bool | None = None,
        num_classes: int = 19,
        input: str = "distorted",
        return_flow: bool = False,
        return_params: bool = False,
    ) -> None:
        if input not in INPUTS:
            raise ValueError(f"input must be one of {', '.join(INPUTS)}, got {input!r}")
        self.input = input
        self.return_flow = bool(return_flow)
        self.return_params = bool(return_params)
        self.root = Path(root)
        self.split = split
        self.entries = split_shards(self.root, split)
        try:
            self.layout = label_layout(num_classes)
        except ValueError as error:
            raise ValueError(f"num_classes {error}") from None
        self.num_classes = num_classes
        self.augment = bool(augment)
        self.crop = None if crop is None else (int(crop[0]), int(crop[1]))
        self.seed = int(seed)
        self.locking = locking
        self.epoch = 0
        self._offsets = [0]
        for entry in self.entries:
            self._offsets.append(self._offsets[-1] + int(entry["samples"]))
        self._readers: dict[int, shards.ShardReader] = {}
        self._check_counts()
        stored = self._stored_shape()
        self.stored_size = stored
        self.image_size = resized_shape(stored, height)
        self.height = height
        if self.crop is not None:
            if not self.augment:
                raise ValueError("crop needs augment=True")
            if self.crop[0] > self.image_size[0] or self.crop[1] > self.image_size[1]:
                h, w = self.image_size
                raise DataError(
                    f"crop {self.crop[0]}x{self.crop[1]} is larger than the images of {root} "
                    f"split {split!r} at this height ({h}x{w} px); use a smaller crop or a "
                    "larger height"
                )

    def _check_counts(self) -> None:
        """Open every shard once and compare its ``samples`` attribute (its length for files
        without one) with the manifest entry, so that a missing, truncated or foreign shard
        stops the run here rather than mid-epoch.

        Raises:
            DataError: one line naming the shard and ``turbsim verify``.
        """
        for number, entry in enumerate(self.entries):
            path = self.root / entry["file"]
            reader = self._reader(number)
            try:
                stored = reader.attrs.get("samples")
                count = int(stored) if stored is not None else len(reader)
            except _READ_ERRORS as error:
                raise _read_error(path, self.root, error) from None
            finally:
                reader.close()
            if count != int(entry["samples"]):
                raise DataError(
                    f"{path}: holds {count} samples, the manifest lists {entry['samples']}; "
                    f"{_verify_hint(self.root)}"
                )

    def _stored_shape(self) -> tuple[int, int]:
        manifest = _manifest(self.root)
        size = manifest.get("stored_sizes", {}).get(self.split)
        if size:
            return int(size[0]), int(size[1])
        try:
            attrs = self._reader(0).attrs
            return int(attrs["height"]), int(attrs["width"])
        except _READ_ERRORS as error:
            raise _read_error(self.root / self.entries[0]["file"], self.root, error) from None

    def _reader(self, shard: int) -> shards.ShardReader:
        reader = self._readers.get(shard)
        if reader is None:
            path = self.root / self.entries[shard]["file"]
            if not path.is_file():
                raise DataError(
                    f"{path}: shard listed in the manifest is missing; {_verify_hint(self.root)}"
                )
            reader = shards.ShardReader(path, locking=self.locking)
            self._readers[shard] = reader
        return reader

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_readers"] = {}
        return state

    def set_epoch(self, epoch: int) -> None:
        """Epoch number for the augmentation RNG (call before each epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self._offsets[-1]

    def locate(self, index: int) -> tuple[int, int]:
        """(shard number, index in the shard) of a dataset index."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        shard = bisect.bisect_right(self._offsets, index) - 1
        return shard, index - self._offsets[shard]

    def _resize(self, item: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        distorted, clean, label = item["distorted"], item["clean"], item["label"]
        h, w = self.image_size
        if distorted.shape[:2] != (h, w):
            distorted = cv2.resize(distorted, (w, h), interpolation=cv2.INTER_LINEAR)
            clean = cv2.resize(clean, (w, h), interpolation=cv2.INTER_LINEAR)
            label = cv2.resize(label, (w, h), interpolation=cv2.INTER_NEAREST)
        return distorted, clean, label

    def _augment(self, arrays: list[np.ndarray], index: int) -> tuple[list[np.ndarray], bool]:
        """The arrays (H, W, ...) cropped and flipped alike; and whether they were flipped."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.crop is not None:
            h, w = arrays[0].shape[:2]
            ch, cw = self.crop
            top = int(rng.integers(0, h - ch + 1))
            left = int(rng.integers(0, w - cw + 1))
            arrays = [a[top : top + ch, left : left + cw] for a in arrays]
        flipped = bool(rng.random() < 0.5)
        if flipped:
            arrays = [a[:, ::-1] for a in arrays]
        return arrays, flipped

    def __getitem__(self, index: int) -> dict[str, Any]:
        shard, local = self.locate(int(index))
        reader = self._reader(shard)
        try:
            item = reader[local]
        except _READ_ERRORS as error:
            raise _read_error(reader.path, self.root, error) from None
        distorted, clean, label = self._resize(item)
        if self.input == "clean":
            distorted = clean
        arrays = [distorted, clean, label]
        if self.return_flow:
            if "flow" not in item:
                raise self._no_flow_error()
            arrays.append(self._resized_flow(item["flow"]).transpose(1, 2, 0))  # (H, W, 2)
        flipped = False
        if self.augment:
            arrays, flipped = self._augment(arrays, int(index))
        distorted, clean, label = arrays[:3]
        label = self.layout.training_labels(label.astype(np.int64))
        sample = {
            "distorted": _to_chw(distorted),
            "clean": _to_chw(clean),
            "label": torch.from_numpy(np.ascontiguousarray(label)),
            "name": str(item["name"]),
            "index": int(index),
        }
        if self.return_flow:
            flow = np.ascontiguousarray(arrays[3].transpose(2, 0, 1), dtype=np.float32)
            if flipped:
                flow[1] *= -1.0  # a mirrored field points the other way along the columns
            sample["flow"] = torch.from_numpy(flow)
        if self.return_params:
            sample["params"] = dict(item["params"])
            sample["variant"] = int(item["variant"])
        return sample

    def _resized_flow(self, flow: np.ndarray) -> np.ndarray:
        """A stored flow (2, h, w) [px] at :attr:`image_size`: bilinear, scaled per axis."""
        h, w = self.image_size
        sh, sw = flow.shape[-2:]
        if (sh, sw) != (h, w):
            rows = cv2.resize(flow[0], (w, h), interpolation=cv2.INTER_LINEAR) * (h / sh)
            cols = cv2.resize(flow[1], (w, h), interpolation=cv2.INTER_LINEAR) * (w / sw)
            flow = np.stack([rows, cols])
        return np.ascontiguousarray(flow, dtype=np.float32)

    @property
    def flow_resample(self) -> str | None:
        """How the stored flow was brought to the stored size ("nearest", "area"), or None
        without one (:attr:`turbsim.shards.ShardReader.flow_resample`)."""
        try:
            return self._reader(0).flow_resample
        except _READ_ERRORS as error:
            raise _read_error(self.root / self.entries[0]["file"], self.root, error) from None

    @property
    def has_flow(self) -> bool:
        """Whether the shards store the true displacement field (``flow``)."""
        try:
            self._reader(0).read("flow", 0)
        except KeyError:
            return False
        except _READ_ERRORS as error:
            raise _read_error(self.root / self.entries[0]["file"], self.root, error) from None
        return True

    def flow(self, index: int) -> np.ndarray:
        """The stored displacement field F of sample ``index`` at :attr:`image_size`.

        Convention (turbsim README "Conventions"): ``distorted(r, c) = clean(r + F_row(r, c),
        c + F_col(r, c))``, (row, col) [px]. Resized bilinearly from the stored size, each
        component scaled by the size ratio of its axis; not augmented (call it on datasets
        without ``augment``).

        Returns:
            float32 (2, H, W) [px].

        Raises:
            DataError: the shards store no flow, or the shard cannot be read.
        """
        shard, local = self.locate(int(index))
        reader = self._reader(shard)
        try:
            flow = reader.read("flow", local)
        except KeyError:
            raise self._no_flow_error() from None
        except _READ_ERRORS as error:
            raise _read_error(reader.path, self.root, error) from None
        return self._resized_flow(flow)

    def _no_flow_error(self) -> DataError:
        """The one-line error of a flow asked of shards written without ``--store-flow``."""
        return DataError(
            f"{self.root}: the {self.split!r} shards store no flow (return_flow needs it); "
            "regenerate them with `turbsim generate ... --store-flow`"
        )

    def close(self) -> None:
        """Close the open shard files of this process."""
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()


def _to_chw(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 (3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)


def _label_maps(reader: shards.ShardReader) -> Iterator[np.ndarray]:
    """The uint8 (H, W) label maps of a shard, one at a time, without the RGB images.

    Reads only the ``label`` dataset; the reader opens and checks the file first.
    """
    for i in range(len(reader)):
        yield reader.read("label", i)


def pixel_counts(
    root: str | Path, split: str, num_classes: int = 19, locking: bool | None = None
) -> torch.Tensor:
    """Pixels per class in the stored labels of ``split``: int64 (num_classes,).

    Counts at the stored resolution (class frequencies barely depend on it); 255 is not counted
    (with ``num_classes=20`` it is counted as the void class 19). Only the label maps are read.

    Args:
        root: the shard folder.
        split: e.g. ``"train"``.
        num_classes: 19 or 20 (the original layout).
        locking: h5py file locking (False on network filesystems that reject locks).

    Raises:
        DataError: a missing or unreadable shard (one line naming it and ``turbsim verify``).
    """
    root = Path(root)
    layout = label_layout(num_classes)
    counts = np.zeros(num_classes, np.int64)
    for entry in split_shards(root, split):
        path = root / entry["file"]
        if not path.is_file():
            raise DataError(
                f"{path}: shard listed in the manifest is missing; {_verify_hint(root)}"
            )
        try:
            with shards.ShardReader(path, locking=locking) as reader:
                for label in _label_maps(reader):
                    label = layout.training_labels(label.ravel().astype(np.int64))
                    valid = label[label < num_classes]
                    counts += np.bincount(valid, minlength=num_classes)[:num_classes]
        except _READ_ERRORS as error:
            raise _read_error(path, root, error) from None
    return torch.from_numpy(counts)


def steps_per_epoch(n_samples: int, batch_size: int, world_size: int = 1) -> int:
    """Optimiser steps per epoch with ``drop_last=False`` and a distributed sampler."""
    per_rank = math.ceil(n_samples / max(1, world_size))
    return max(1, math.ceil(per_rank / batch_size))
