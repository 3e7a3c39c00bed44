"""The label layouts of the networks: 19 Cityscapes classes with 255 ignored, or the original
code's 20 with a void class (no torch).

The shards store trainIds 0 .. 18 and 255 (ignore; turbsim.shards.schema). A network predicts
either the 19 classes (``LAYOUT_19``: 255 stays ignored everywhere) or, as the original BMVC 2020
code, 20 (``LAYOUT_20``): 255 becomes the void class 19, which is trained with weight 0 under
CB-iFL, ignored by an unweighted loss, never evaluated and never predicted. Every place that
needs those numbers asks a :class:`LabelLayout` (:func:`label_layout` of ``num_classes``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from turbsim.shards.schema import IGNORE_LABEL, NUM_CLASSES

__all__ = ["LAYOUT_19", "LAYOUT_20", "LAYOUTS", "LabelLayout", "label_layout"]


@dataclass(frozen=True)
class LabelLayout:
    """How a network's ``num_classes`` outputs relate to the stored trainIds.

    Attributes:
        num_classes: the network's output classes C (19 or 20).
    """

    num_classes: int

    @property
    def evaluated(self) -> int:
        """Classes scored by mIoU: the 19 Cityscapes trainIds, in every layout."""
        return NUM_CLASSES

    @property
    def void_class(self) -> int | None:
        """The class the stored 255 becomes (19 in the 20-class layout), or None."""
        return NUM_CLASSES if self.num_classes == NUM_CLASSES + 1 else None

    @property
    def eval_ignore(self) -> int:
        """The label value the confusion matrix leaves out: the void class, else 255."""
        return IGNORE_LABEL if self.void_class is None else self.void_class

    def loss_ignore(self, weighted: bool) -> int:
        """The ``ignore_index`` of the segmentation loss: 255, or the void class for an
        unweighted loss of the 20-class layout (a weighted one gives it weight 0 instead)."""
        return IGNORE_LABEL if weighted or self.void_class is None else self.void_class

    def training_labels(self, label: np.ndarray) -> np.ndarray:
        """Stored trainIds (255 = ignore) -> the layout's labels: 255 -> the void class when
        there is one (in place for an int64 array; returned either way)."""
        if self.void_class is not None:
            label[label == IGNORE_LABEL] = self.void_class
        return label


LAYOUT_19 = LabelLayout(NUM_CLASSES)
LAYOUT_20 = LabelLayout(NUM_CLASSES + 1)
#: The layouts by ``num_classes``.
LAYOUTS: dict[int, LabelLayout] = {layout.num_classes: layout for layout in (LAYOUT_19, LAYOUT_20)}


def label_layout(num_classes: int) -> LabelLayout:
    """The layout of ``num_classes`` outputs.

    Raises:
        ValueError: ``num_classes`` is neither 19 nor 20 (the message lists both).
    """
    try:
        return LAYOUTS[num_classes]
    except (KeyError, TypeError):
        known = " or ".join(str(n) for n in LAYOUTS)
        raise ValueError(f"must be {known}, got {num_classes!r}") from None
