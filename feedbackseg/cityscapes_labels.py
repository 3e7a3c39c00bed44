"""Cityscapes evaluation classes (trainIds 0..18): names and colour palette.

Same facts as ``turbsim.cityscapes`` (which feedbackseg may not import: only ``turbsim.shards``).
Source: cityscapesScripts ``helpers/labels.py`` (MIT licence), the 19 labels with a trainId
other than 255, in trainId order. Copied as constants so that the ~100 MB ``cityscapesscripts``
package stays out of the runtime (NOTES-ecosystem.md).
"""

from __future__ import annotations

import numpy as np

__all__ = ["CITYSCAPES_CLASSES", "CITYSCAPES_PALETTE", "colorize_train_ids"]

#: Names of trainIds 0..18.
CITYSCAPES_CLASSES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)  # fmt: skip

#: (19, 3) uint8 RGB colour of trainIds 0..18 (read-only).
CITYSCAPES_PALETTE: np.ndarray = np.array(
    [
        (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
        (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
        (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
        (0, 80, 100), (0, 0, 230), (119, 11, 32),
    ],
    dtype=np.uint8,
)  # fmt: skip
CITYSCAPES_PALETTE.setflags(write=False)


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
