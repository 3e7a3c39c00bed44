"""The training modes in one table: what each is made of, how it trains and what it reports
(no torch at import).

=============  ===========  =========  ========  =======  ==============================
mode           restorer R   segmenter  feedback  size     reports
=============  ===========  =========  ========  =======  ==============================
erfnet         no           ERFNet     no        8 px     mIoU
restore-seg    U-Net        ERFNet     no        16 px    mIoU, R's restoration
feedback       U-Net (+S)   ERFNet     yes (T)   16 px    mIoU per iteration, restoration
restore        U-Net        (none)     no        16 px    R's restoration (PSNR gain)
=============  ===========  =========  ========  =======  ==============================

"size" is the multiple the training height must be (ERFNet's encoder divides by 8, R's U-Net by
16). The network of a mode is :func:`feedbackseg.models.build_model` (which builds from these
flags) and its optimiser step :data:`feedbackseg.models.TRAIN_STEPS` ``[name]`` (torch; the
table below has none, so that the config and the CLI read it without torch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["MODE_TABLE", "MODES", "Mode", "mode_of"]


@dataclass(frozen=True)
class Mode:
    """One training mode.

    Attributes:
        name: the ``--mode`` value.
        restorer: whether it has a restorer R (trained on L1 against the clean image).
        segmenter: whether it has a segmenter S (trained on the segmentation loss; reports mIoU).
        feedback: whether R sees S's output, for ``iterations`` rounds.
        size_multiple: the multiple of 8 or 16 [px] the network input must be.
    """

    name: str
    restorer: bool
    segmenter: bool
    feedback: bool
    size_multiple: int

    @property
    def reports(self) -> tuple[str, ...]:
        """What an evaluation of the mode reports: ``"miou"`` and/or ``"restoration"``."""
        return ("miou",) * self.segmenter + ("restoration",) * self.restorer

    def step_inputs(self, clean: Any) -> Any:
        """The clean image a step trains R against: None without a restorer."""
        return clean if self.restorer else None


#: The modes in the order ``--mode`` lists them.
MODE_TABLE: dict[str, Mode] = {
    mode.name: mode
    for mode in (
        Mode("erfnet", restorer=False, segmenter=True, feedback=False, size_multiple=8),
        Mode("restore-seg", restorer=True, segmenter=True, feedback=False, size_multiple=16),
        Mode("feedback", restorer=True, segmenter=True, feedback=True, size_multiple=16),
        Mode("restore", restorer=True, segmenter=False, feedback=False, size_multiple=16),
    )
}
#: Mode names (SPEC 2.4): ERFNet alone, restorer then segmenter, the feedback loop, and the
#: restorer alone (trained on L1, evaluated by its restoration; beyond the paper).
MODES: tuple[str, ...] = tuple(MODE_TABLE)


def mode_of(name: str) -> Mode:
    """The :class:`Mode` named ``name``.

    Raises:
        ValueError: an unknown mode (the message lists the known ones).
    """
    try:
        return MODE_TABLE[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown mode {name!r}; expected one of {', '.join(MODES)}") from None
