"""Networks, one module per family, and the model registry.

- :mod:`.erfnet`: the segmenter S (ERFNet, Romera et al. 2017);
- :mod:`.restorer`: the restorer R (U-Net flow predictor + warp) and the feedback block;
- :mod:`.feedback`: R + S with and without spatial feedback, and the training steps.

:func:`build_model` is the one factory of the network of each training mode (SPEC-feedbackseg
section 2.4); the trainer, :func:`feedbackseg.checkpoints.model_from_checkpoint` and the
benchmarks build through it. :func:`model_parts` names the restorer and segmenter of a model
(what the optimisers and the pretrained-encoder import take).

One inference signature for the three model kinds, :func:`infer`::

    infer(model, distorted, iterations=T) -> FeedbackOutput
    # distorted (B, 3, H, W) in [0, 1]; out.logits: iterations_run(model, T) tensors
    # (B, C, H, W), the last one the prediction; out.restored (B, 3, H, W) and out.flows
    # (B, 2, H, W) [px] in the same order, empty for ERFNet

:class:`FeedbackSegmenter` and :class:`RestoreSegmenter` have that very signature as their
``forward(distorted, iterations)`` (the restore-seg baseline runs once whatever T); ERFNet keeps
``forward(x) -> logits (B, C, H, W)``, as it is also the segmenter S inside the other two and
what the training steps call.
"""

from __future__ import annotations

from torch import nn

from feedbackseg.config import MODES
from feedbackseg.models.erfnet import ERFNet
from feedbackseg.models.feedback import (
    ITERATIONS,
    TRAIN_STEPS,
    FeedbackOutput,
    FeedbackSegmenter,
    NonFiniteError,
    RestoreSegmenter,
    erfnet_train_step,
    feedback_train_step,
    infer,
    iterations_run,
    predict_logits,
    restore_seg_train_step,
)
from feedbackseg.models.restorer import Restorer

#: Restorer widths: the original (64 .. 1024 channels, ~31.0 M parameters) and a narrow one
#: for CPU work (8 .. 128 channels).
RESTORER_CONFIGS = {
    False: {"base_width": 64, "depth": 5},
    True: {"base_width": 8, "depth": 5},
}


def build_model(mode: str, num_classes: int = 19, small: bool = False) -> nn.Module:
    """A freshly initialised network for a training mode.

    The segmenter is built (and its weights drawn from torch's global RNG) before the restorer.

    Args:
        mode: "erfnet" (:class:`ERFNet`), "restore-seg" (:class:`RestoreSegmenter`) or
            "feedback" (:class:`FeedbackSegmenter`); see :data:`feedbackseg.config.MODES`.
        num_classes: output classes C (19; 20 for the original's layout with a void class).
        small: a narrow restorer (``base_width=8``) for CPU work; ERFNet is always the original.

    Raises:
        ValueError: an unknown mode.
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


def model_parts(model: nn.Module) -> tuple[Restorer | None, nn.Module]:
    """(restorer R, segmenter S) of a model of :func:`build_model`; R is None for ERFNet alone
    (or any plain segmenter)."""
    if isinstance(model, (FeedbackSegmenter, RestoreSegmenter)):
        return model.restorer, model.segmenter
    return None, model


__all__ = [
    "ITERATIONS",
    "MODES",
    "RESTORER_CONFIGS",
    "TRAIN_STEPS",
    "ERFNet",
    "FeedbackOutput",
    "FeedbackSegmenter",
    "NonFiniteError",
    "RestoreSegmenter",
    "Restorer",
    "build_model",
    "erfnet_train_step",
    "feedback_train_step",
    "infer",
    "iterations_run",
    "model_parts",
    "predict_logits",
    "restore_seg_train_step",
]
