"""Cityscapes evaluation classes (trainIds 0..18): names and colour palette.

The table itself lives in ``turbsim.shards.schema`` (the one light turbsim module feedbackseg
imports); this module re-exports it and colours trainId maps.
"""

from __future__ import annotations

import numpy as np

from turbsim.shards.schema import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE

__all__ = ["CITYSCAPES_CLASSES", "CITYSCAPES_PALETTE", "colorize_train_ids"]


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
