"""Networks, one module per family, and the model registry.

- :mod:`.erfnet`: the segmenter S (ERFNet, Romera et al. 2017);
- :mod:`.restorer`: the restorer R (U-Net flow predictor + warp) and the feedback block;
- :mod:`.feedback`: R + S with and without spatial feedback, and the training steps.

:func:`build_model` builds the network of each training mode (SPEC-feedbackseg section 2.4).
"""

from __future__ import annotations

from torch import nn

from feedbackseg.models.erfnet import ERFNet
from feedbackseg.models.feedback import (
    TRAIN_STEPS,
    FeedbackOutput,
    FeedbackSegmenter,
    RestoreSegmenter,
    erfnet_train_step,
    feedback_train_step,
    predict_logits,
    restore_seg_train_step,
)
from feedbackseg.models.restorer import Restorer

#: Training modes (SPEC 2.4): ERFNet alone, R then S, R + S with spatial feedback.
MODES = ("erfnet", "restore-seg", "feedback")

#: Restorer widths: the original (64 .. 1024 channels, ~31.0 M parameters) and a narrow one
#: for CPU work (8 .. 128 channels).
RESTORER_CONFIGS = {
    False: {"base_width": 64, "depth": 5},
    True: {"base_width": 8, "depth": 5},
}


def build_model(mode: str, num_classes: int = 19, small: bool = False) -> nn.Module:
    """A freshly initialised network for a training mode.

    Args:
        mode: "erfnet" (:class:`ERFNet`), "restore-seg" (:class:`RestoreSegmenter`) or
            "feedback" (:class:`FeedbackSegmenter`).
        num_classes: output classes C (19; 20 for the original's layout with a void class).
        small: a narrow restorer (``base_width=8``) for CPU work; ERFNet is always the original.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    segmenter = ERFNet(num_classes)
    if mode == "erfnet":
        return segmenter
    feedback = mode == "feedback"
    restorer = Restorer(num_classes=num_classes, feedback=feedback, **RESTORER_CONFIGS[small])
    if feedback:
        return FeedbackSegmenter(restorer, segmenter)
    return RestoreSegmenter(restorer, segmenter)


__all__ = [
    "MODES",
    "TRAIN_STEPS",
    "ERFNet",
    "FeedbackOutput",
    "FeedbackSegmenter",
    "RestoreSegmenter",
    "Restorer",
    "build_model",
    "erfnet_train_step",
    "feedback_train_step",
    "predict_logits",
    "restore_seg_train_step",
]
