"""Cityscapes evaluation classes (trainIds 0..18): names, colour palette, official labelIds.

The table itself lives in ``turbsim.shards.schema`` (the one light turbsim module feedbackseg
imports); this module re-exports it and colours trainId maps.
"""

from __future__ import annotations

import numpy as np

from turbsim.shards.schema import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, CITYSCAPES_TABLE

__all__ = [
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_PALETTE",
    "TRAIN_ID_TO_LABEL_ID",
    "colorize_train_ids",
    "train_ids_to_label_ids",
]

#: uint8 (256,): the official Cityscapes labelId of each trainId 0..18 (road 7 ... bicycle 33);
#: every other value (255 = ignore) -> 0, 'unlabeled' (what the benchmark scripts skip).
TRAIN_ID_TO_LABEL_ID: np.ndarray = np.zeros(256, np.uint8)
for _name, _label_id, _train_id, _ in CITYSCAPES_TABLE:
    TRAIN_ID_TO_LABEL_ID[_train_id] = _label_id
TRAIN_ID_TO_LABEL_ID.flags.writeable = False


def train_ids_to_label_ids(labels: np.ndarray) -> np.ndarray:
    """Map a trainId map (H, W) to the official labelIds (H, W) uint8 of Cityscapes'
    ``*_labelIds.png`` (the format the benchmark's evaluation scripts read); values outside
    0..18 become 0 ('unlabeled')."""
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be integer trainIds, got dtype {labels.dtype}")
    inside = (labels >= 0) & (labels < 256)
    return TRAIN_ID_TO_LABEL_ID[np.where(inside, labels, 255).astype(np.intp)]


def colorize_train_ids(
    labels: np.ndarray, ignore_color: tuple[int, int, int] = (0, 0, 0)
) -> np.ndarray:
    """Colour a trainId map with the Cityscapes palette.

    Args:
        labels: (H, W) integer trainIds in 0..18; any other value (255 = ignore, the void class
            19 of the 20-class layout) gets ``ignore_color``.
        ignore_color: RGB colour of non-evaluated pixels.

    Returns:
        (H, W, 3) uint8 RGB image.
    """
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be integer trainIds, got dtype {labels.dtype}")
    lut = np.empty((256, 3), np.uint8)
    lut[:] = ignore_color
    lut[: len(CITYSCAPES_PALETTE)] = CITYSCAPES_PALETTE
    inside = (labels >= 0) & (labels < 256)
    return lut[np.where(inside, labels, 255).astype(np.intp)]
